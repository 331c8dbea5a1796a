//! The firewall stage (SPEC §6.2): between PREROUTING and POSTROUTING, as iptables' FORWARD
//! chain, so rules name fixed IPs. A packet of a connection a firewall already accepted passes
//! without evaluation, in either direction; otherwise the compiled classifier finds the first
//! matching rule: `allow` accepts and tracks the connection, `deny` drops, `reject` drops and
//! answers (TCP RST, else ICMP port unreachable); no match drops. An administratively down
//! firewall drops everything. Explicit rules log (§8): ACCEPT once per new connection, DROP per
//! dropped packet. IPv6 is filtered the same way by the rules with `ip_version` 6 (§10.2): its
//! connections are tracked beside IPv4's, and a reject answers with ICMPv6 port unreachable.

use rules::compile::firewall::{FwPacket, NO_PORT};
use rules::compile::{PortRef, RouterRef};
use rules::model::FirewallAction;

use super::{frame::Frame, note, Sim};
use crate::ct::Dir;
use crate::drop::DropReason;
use crate::wire::{self, icmpv6, L3, L4};

/// A firewall decision to log: which firewall (index into `Topology::firewalls`) and rule,
/// the packet's tuple as the firewall saw it, and the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwLog {
    pub firewall: usize,
    pub rule: usize,
    pub router: RouterRef,
    pub packet: FwPacket,
    pub accept: bool,
}

impl FwLog {
    /// The log event of this decision at `now`, for the writer (`fwlog.rs`).
    pub fn event(&self, topo: &std::sync::Arc<rules::compile::Topology>, now: crate::time::Instant) -> crate::fwlog::Event {
        let port = |p: u32| if p == NO_PORT { 0 } else { p as u16 };
        crate::fwlog::Event {
            at: now,
            topo: topo.clone(),
            firewall: self.firewall,
            rule: self.rule,
            router: self.router,
            src: self.packet.src,
            dst: self.packet.dst,
            sport: port(self.packet.sport),
            dport: port(self.packet.dport),
            proto: self.packet.proto,
            accept: self.accept,
        }
    }
}

fn fw_packet(f: &Frame) -> Option<FwPacket> {
    let (proto, src, dst, l4) = match &f.h.l3 {
        L3::Ipv4(ip) => (ip.proto, ip.src.into(), ip.dst.into(), ip.l4),
        L3::Ipv6(ip) => (ip.proto, ip.src.into(), ip.dst.into(), ip.l4),
        _ => return None,
    };
    let (sport, dport) = match l4 {
        L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => (sport as u32, dport as u32),
        _ => (NO_PORT, NO_PORT),
    };
    Some(FwPacket { proto, src, dst, sport, dport })
}

/// Filter a packet routed by `r` from `inport`; `orig` is the packet as it arrived (for the
/// reject reply). `Err` is the drop.
pub(super) fn filter(sim: &mut Sim, r: RouterRef, inport: PortRef, orig: &Frame, f: &Frame) -> Result<(), DropReason> {
    let topo = sim.topo;
    let mut firewalls = topo.firewalls.iter().enumerate().filter(|(_, (fr, _))| *fr == r).peekable();
    if firewalls.peek().is_none() {
        return Ok(());
    }
    let Some(pkt) = fw_packet(f) else { return Ok(()) };
    // The connection key (an ICMP error's is what it quotes).
    let ck = f.conn_key();
    // A connection already accepted passes, both ways.
    if let Some(k) = ck {
        let found = {
            let mut fw = sim.tables.fw();
            let table = fw.entry(r).or_default();
            let generation = table.generation();
            let h = table.lookup(&k, sim.now);
            if let Some(h) = h {
                table.touch(h, f.tcp_flags(), sim.now);
            }
            h.ok_or(generation)
        };
        match found {
            Ok(h) => {
                note!(sim, "firewall: connection already accepted ({})", if h.dir == Dir::Orig { "original" } else { "reply" });
                sim.depend_fw_conn(r, h);
                return Ok(());
            }
            Err(generation) => sim.depend_fw_absent(r, generation),
        }
    }
    for (index, (_, fw)) in firewalls {
        if !fw.admin_up {
            note!(sim, "firewall {} is down: drop", fw.id);
            return Err(DropReason::FwDefaultDrop);
        }
        let Some(rule) = fw.classify(&pkt) else {
            note!(sim, "firewall {}: no rule matches: default drop", fw.id);
            return Err(DropReason::FwDefaultDrop);
        };
        let log = FwLog { firewall: index, rule, router: r, packet: pkt, accept: fw.rules[rule].action == FirewallAction::Allow };
        note!(sim, "firewall {} rule {}: {:?}", fw.id, fw.rules[rule].id, fw.rules[rule].action);
        match fw.rules[rule].action {
            FirewallAction::Allow => {
                sim.res.fw_events.push(log);
                if let Some(k) = ck {
                    let tables = sim.tables;
                    if !sim.room_for_conn(r, &mut tables.ct()) {
                        return Err(DropReason::ConntrackFull);
                    }
                    let h = tables.fw().entry(r).or_default().track(k, r, f.tcp_flags(), sim.now);
                    sim.depend_fw_conn(r, h);
                }
            }
            FirewallAction::Deny => {
                sim.res.fw_events.push(log);
                sim.res.fw_log_each_packet = Some(log);
                return Err(DropReason::FwDenied);
            }
            FirewallAction::Reject => {
                sim.res.fw_events.push(log);
                sim.reject(orig, inport);
                return Err(DropReason::FwRejected);
            }
        }
    }
    Ok(())
}

impl Sim<'_> {
    /// Answer a rejected packet: TCP with a RST from its destination, others with ICMP (ICMPv6)
    /// port unreachable from the ingress port.
    fn reject(&mut self, orig: &Frame, inport: PortRef) {
        self.res.cacheable = false;
        let mac = self.topo.port(inport).mac.0;
        let (rst, to) = match &orig.h.l3 {
            L3::Ipv4(ip) if matches!(ip.l4, L4::Tcp { .. }) => (wire::tcp::reset(&orig.buf, ip, mac), ip.src.into()),
            L3::Ipv6(ip) if matches!(ip.l4, L4::Tcp { .. }) => (wire::tcp::reset6(&orig.buf, ip, mac), std::net::IpAddr::from(ip.src)),
            L3::Ipv4(_) => return self.icmp_error(orig, inport, wire::ICMP_DEST_UNREACH, 3),
            L3::Ipv6(_) => return self.icmpv6_error(orig, inport, icmpv6::DEST_UNREACH, icmpv6::UNREACH_PORT),
            _ => return,
        };
        if let Some(Ok(rst)) = rst.map(Frame::parse) {
            note!(self, "reject: TCP RST to {to}");
            self.generated(|s| s.router_send(inport, rst));
        }
    }
}
