//! Evaluating a router's NAT rules (SPEC §6.1). The rule lists are compiled in the spec's order
//! by `rules/src/compile/nat.rs`; here each rule's match and translation, first match wins.
//!
//! Float NAT is stateless and 1:1: it keeps L4 ports and applies to every fragment. Default and
//! same-subnet SNAT are dynamic: a connection entry holds the mapping and return traffic finds it
//! through connection tracking. ICMP errors are translated together with the header they quote
//! (RFC 5508), their mapping found through the quoted packet.

use std::net::IpAddr;

use rules::compile::nat::METADATA_IP;
use rules::compile::{PortRef, PostRule, PreRule, RouterRef};

use super::{frame::Frame, note, Sim};
use crate::ct::{self, SnatKind};
use crate::drop::DropReason;
use crate::wire::{self, Frag, L4};

/// What PREROUTING did to a packet.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Pre {
    /// A floating IP rewrote the destination (the packet is "dst-rewritten").
    pub dst_rewritten: bool,
    /// A dynamic mapping was reversed: the packet is a reply of a tracked connection. Replies
    /// are never given a new dynamic mapping in POSTROUTING (as MidoNet's SNAT rules match
    /// forward flows only); stateless float SNAT still applies (§6.1's worked cases).
    pub reply: bool,
}

/// PREROUTING after ingress port `inport` of router `r`.
pub(super) fn prerouting(sim: &mut Sim, r: RouterRef, inport: PortRef, f: &mut Frame) -> Result<Pre, DropReason> {
    let router = sim.topo.router(r);
    let Some(ip) = f.ipv4().copied() else {
        return Ok(Pre::default());
    };
    for rule in &router.nat.prerouting {
        match *rule {
            // SPEC §6.1 PREROUTING 1: dst == fip → DNAT to the fixed IP.
            PreRule::FloatDnat { fip, fixed } if ip.dst == fip => {
                note!(sim, "PREROUTING 1 float DNAT {fip} → {fixed}");
                f.nat_dst(fixed, None);
                return Ok(Pre { dst_rewritten: true, reply: false });
            }
            // SPEC §6.1 PREROUTING 2: dst == gw-ip and a default SNAT mapping exists.
            PreRule::RevSnatGateway { gw_ip } if ip.dst == gw_ip && reverse_snat(sim, f, SnatKind::Default) => {
                note!(sim, "PREROUTING 2 reverse SNAT from {gw_ip}");
                return Ok(Pre { dst_rewritten: false, reply: true });
            }
            // SPEC §6.1 PREROUTING 3: inport == rif, dst == rif's IP, a same-subnet mapping.
            PreRule::RevSnatRif { rif, ip: rif_ip } if inport == rif && ip.dst == rif_ip && reverse_snat(sim, f, SnatKind::SameSubnet) => {
                note!(sim, "PREROUTING 3 reverse same-subnet SNAT from {rif_ip}");
                return Ok(Pre { dst_rewritten: false, reply: true });
            }
            _ => {}
        }
    }
    Ok(Pre::default())
}

/// Reverse a dynamic SNAT mapping of `kind` for a reply; false (and `f` untouched) when none exists.
fn reverse_snat(sim: &mut Sim, f: &mut Frame, kind: SnatKind) -> bool {
    let tables = sim.tables;
    let mut ct = tables.ct();
    let seen = ct.generation();
    let found = f.conn_key().and_then(|key| {
        let h = ct.lookup(&key, sim.now)?;
        let conn = ct.get(h).filter(|c| c.kind == kind && h.dir == ct::Dir::Reply)?;
        // NAT tables hold IPv4 connections only (§10.2).
        match (conn.orig.src, conn.orig.sport) {
            (IpAddr::V4(addr), port) => Some((h, addr, port)),
            _ => None,
        }
    });
    let Some((h, addr, port)) = found else {
        drop(ct);
        sim.depend_ct_absent(seen);
        return false;
    };
    if f.is_icmp_error() {
        sim.res.cacheable = false;
    } else {
        ct.touch(h, f.tcp_flags(), sim.now);
        sim.res.conn = Some(h);
    }
    drop(ct);
    f.nat_dst(addr, Some(port));
    true
}

/// POSTROUTING for a packet of router `r` from `inport` to `outport`.
pub(super) fn postrouting(
    sim: &mut Sim,
    r: RouterRef,
    inport: PortRef,
    outport: PortRef,
    pre: Pre,
    f: &mut Frame,
) -> Result<(), DropReason> {
    let router = sim.topo.router(r);
    let dst_rewritten = pre.dst_rewritten;
    let Some(ip) = f.ipv4().copied() else {
        return Ok(());
    };
    for rule in &router.nat.postrouting {
        match rule {
            // SPEC §6.1 POSTROUTING 1: outport == fip port and src == fixed IP → float SNAT.
            PostRule::FloatSnatOutport { fip_port, fixed, fip } if outport == *fip_port && ip.src == *fixed => {
                note!(sim, "POSTROUTING 1 float SNAT {fixed} → {fip}");
                f.nat_src(*fip, None);
                return Ok(());
            }
            // SPEC §6.1 POSTROUTING 2: a FIP of the gateway port, src == fixed IP.
            PostRule::FloatSnatGateway { fixed, fip } if ip.src == *fixed => {
                note!(sim, "POSTROUTING 2 float SNAT {fixed} → {fip}");
                f.nat_src(*fip, None);
                return Ok(());
            }
            // SPEC §6.1 POSTROUTING 3: a FIP of a router interface, src == fixed IP.
            PostRule::FloatSnatRif { fixed, fip } if ip.src == *fixed => {
                note!(sim, "POSTROUTING 3 float SNAT {fixed} → {fip}");
                f.nat_src(*fip, None);
                return Ok(());
            }
            // SPEC §6.1 POSTROUTING 4: from an external-like port → untranslated.
            PostRule::AcceptFromExternal { ports } if ports.contains(&inport) => {
                note!(sim, "POSTROUTING 4 from external-like port: untranslated");
                return Ok(());
            }
            // SPEC §6.1 POSTROUTING 5: out of the gateway port → SNAT to gw-ip.
            PostRule::DefaultSnatOutGateway { gw_port, gw_ip } if outport == *gw_port && !pre.reply => {
                note!(sim, "POSTROUTING 5 default SNAT to {gw_ip}");
                return dynamic_snat(sim, r, f, *gw_ip, SnatKind::Default, true);
            }
            // SPEC §6.1 POSTROUTING 6: dst-rewritten → SNAT to gw-ip.
            PostRule::DefaultSnatDstRewritten { gw_ip } if dst_rewritten && !pre.reply => {
                note!(sim, "POSTROUTING 6 dst-rewritten: default SNAT to {gw_ip}");
                let via_gateway = router.gateway_port == Some(outport);
                return dynamic_snat(sim, r, f, *gw_ip, SnatKind::Default, via_gateway);
            }
            // SPEC §6.1 POSTROUTING 7: in and out of the same RIF → SNAT to the RIF's IP.
            PostRule::SameSubnet { rif, ip: rif_ip } if inport == *rif && outport == *rif && ip.dst != METADATA_IP && !pre.reply => {
                note!(sim, "POSTROUTING 7 same-subnet SNAT to {rif_ip}");
                return dynamic_snat(sim, r, f, *rif_ip, SnatKind::SameSubnet, false);
            }
            _ => {}
        }
    }
    // SPEC §6.1 POSTROUTING 8: otherwise untranslated.
    Ok(())
}

/// Translate the source to `nat_ip` through a connection entry, creating it for a new
/// connection. What cannot be translated is dropped when it would leave by the gateway port
/// (`strict`), else sent untranslated.
fn dynamic_snat(
    sim: &mut Sim,
    r: RouterRef,
    f: &mut Frame,
    nat_ip: std::net::Ipv4Addr,
    kind: SnatKind,
    strict: bool,
) -> Result<(), DropReason> {
    let untranslatable = |sim: &mut Sim| {
        if strict {
            Err(DropReason::SnatUntranslatable)
        } else {
            note!(sim, "cannot translate: sent untranslated");
            Ok(())
        }
    };
    let Some(ip) = f.ipv4().copied() else {
        return untranslatable(sim);
    };
    if f.is_icmp_error() {
        // An error about a packet of a tracked connection, from its inside host.
        sim.res.cacheable = false;
        let tables = sim.tables;
        let nat_src = f.conn_key().and_then(|key| {
            let mut ct = tables.ct();
            let h = ct.lookup(&key, sim.now)?;
            ct.get(h).filter(|_| h.dir == ct::Dir::Orig).map(|conn| conn.nat_src())
        });
        let Some((IpAddr::V4(addr), port)) = nat_src else {
            return untranslatable(sim);
        };
        f.nat_src(addr, Some(port));
        return Ok(());
    }
    if ip.frag == Frag::Later {
        return untranslatable(sim);
    }
    let Some(key) = ct::CtKey::of(&ip) else {
        return untranslatable(sim);
    };
    let flags = f.tcp_flags();
    // Looked up and, for a new connection, made under one lock: two workers with the first
    // packets of one connection find or make the same mapping.
    let tables = sim.tables;
    let mut ct = tables.ct();
    let h = match ct.lookup(&key, sim.now) {
        Some(h) if h.dir == ct::Dir::Orig => {
            ct.touch(h, flags, sim.now);
            h
        }
        _ => {
            if !ct::can_originate(&ip) {
                drop(ct);
                return untranslatable(sim);
            }
            if !sim.room_for_conn(r, &mut ct) {
                return Err(DropReason::ConntrackFull);
            }
            match ct.create(key, nat_ip, kind, r, flags, sim.now) {
                Ok(h) => h,
                Err(ct::PortsExhausted) => {
                    // Ports free up as other connections expire: this drop is not a flow.
                    sim.res.cacheable = false;
                    return Err(DropReason::SnatPortsExhausted);
                }
            }
        }
    };
    let nat_src = ct.get(h).map(|conn| conn.nat_src());
    drop(ct);
    let Some((IpAddr::V4(addr), port)) = nat_src else {
        return untranslatable(sim);
    };
    let keeps_port = matches!(ip.l4, L4::Icmp { typ: wire::ICMP_ECHO_REQUEST, .. } | L4::Tcp { .. } | L4::Udp { .. });
    note!(sim, "mapping {}:{} → {addr}:{port}", key.src, key.sport);
    sim.res.conn = Some(h);
    f.nat_src(addr, keeps_port.then_some(port));
    Ok(())
}
