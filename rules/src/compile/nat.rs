//! A router's NAT rules, in the order of SPEC §6.1 — read this file beside the spec.
//!
//! The rules are data: each variant names its SPEC item, and the lists are built in the order
//! the spec evaluates them. The datapath (`datapath/src/sim/nat.rs`) walks a list and applies
//! the first rule that matches. Per-FIP rules follow the snapshot's order of floating IPs.

use std::net::Ipv4Addr;

use super::{PortRef, RouterRef, Topology};

/// The metadata server address, never same-subnet SNATed (POSTROUTING 7).
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// PREROUTING, evaluated after the ingress router port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreRule {
    /// §6.1 PREROUTING 1: dst == fip → DNAT dst to the fixed IP; the packet is dst-rewritten.
    FloatDnat { fip: Ipv4Addr, fixed: Ipv4Addr },
    /// §6.1 PREROUTING 2: (default SNAT on) dst == gw-ip and a SNAT mapping exists → reverse SNAT.
    RevSnatGateway { gw_ip: Ipv4Addr },
    /// §6.1 PREROUTING 3: inport == rif and dst == rif's IP and a same-subnet mapping exists.
    RevSnatRif { rif: PortRef, ip: Ipv4Addr },
}

/// POSTROUTING, evaluated after the routing decision with inport and outport known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostRule {
    /// §6.1 POSTROUTING 1: outport == fip port and src == fixed IP → float SNAT.
    FloatSnatOutport { fip_port: PortRef, fixed: Ipv4Addr, fip: Ipv4Addr },
    /// §6.1 POSTROUTING 2: a FIP owned by the gateway port: src == fixed IP → float SNAT.
    FloatSnatGateway { fixed: Ipv4Addr, fip: Ipv4Addr },
    /// §6.1 POSTROUTING 3: a FIP owned by a router interface: src == fixed IP → float SNAT.
    FloatSnatRif { fixed: Ipv4Addr, fip: Ipv4Addr },
    /// §6.1 POSTROUTING 4: inport is a fip port, or (default SNAT on) the gateway port → accept
    /// untranslated: no default SNAT for traffic from external-like networks.
    AcceptFromExternal { ports: Vec<PortRef> },
    /// §6.1 POSTROUTING 5: (default SNAT on) outport == gateway port → SNAT to gw-ip.
    DefaultSnatOutGateway { gw_port: PortRef, gw_ip: Ipv4Addr },
    /// §6.1 POSTROUTING 6: (default SNAT on) dst-rewritten → SNAT to gw-ip (Neutron bug 1428887).
    DefaultSnatDstRewritten { gw_ip: Ipv4Addr },
    /// §6.1 POSTROUTING 7: inport == outport == rif and dst != 169.254.169.254 → SNAT to the
    /// RIF's IP.
    SameSubnet { rif: PortRef, ip: Ipv4Addr },
    // §6.1 POSTROUTING 8: otherwise untranslated — the end of the list.
}

/// One router's rule lists.
#[derive(Debug, Clone, Default)]
pub struct NatRules {
    pub prerouting: Vec<PreRule>,
    pub postrouting: Vec<PostRule>,
}

pub(super) fn compile(t: &Topology, me: RouterRef) -> NatRules {
    let router = t.router(me);
    let fips: Vec<_> = t.fips.iter().filter(|f| f.router == me).collect();
    let rifs: Vec<(PortRef, Ipv4Addr)> =
        router.ports.iter().filter(|&&p| Some(p) != router.gateway_port).filter_map(|&p| t.port(p).first_ip().map(|ip| (p, ip))).collect();
    let snat_gw = router.gw_ip.filter(|_| router.default_snat);

    let mut pre = Vec::new();
    for f in &fips {
        pre.push(PreRule::FloatDnat { fip: f.addr, fixed: f.fixed });
    }
    if let Some(gw_ip) = snat_gw {
        pre.push(PreRule::RevSnatGateway { gw_ip });
    }
    for &(rif, ip) in &rifs {
        pre.push(PreRule::RevSnatRif { rif, ip });
    }

    let mut post = Vec::new();
    for f in &fips {
        post.push(PostRule::FloatSnatOutport { fip_port: f.fip_port, fixed: f.fixed, fip: f.addr });
    }
    for f in fips.iter().filter(|f| f.on_gateway) {
        post.push(PostRule::FloatSnatGateway { fixed: f.fixed, fip: f.addr });
    }
    for f in fips.iter().filter(|f| !f.on_gateway) {
        post.push(PostRule::FloatSnatRif { fixed: f.fixed, fip: f.addr });
    }
    let mut external: Vec<PortRef> = Vec::new();
    for f in &fips {
        if !external.contains(&f.fip_port) {
            external.push(f.fip_port);
        }
    }
    if let (true, Some(gw)) = (router.default_snat, router.gateway_port) {
        if !external.contains(&gw) {
            external.push(gw);
        }
    }
    if !external.is_empty() {
        post.push(PostRule::AcceptFromExternal { ports: external });
    }
    if let (Some(gw_ip), Some(gw_port)) = (snat_gw, router.gateway_port) {
        post.push(PostRule::DefaultSnatOutGateway { gw_port, gw_ip });
        post.push(PostRule::DefaultSnatDstRewritten { gw_ip });
    }
    for &(rif, ip) in &rifs {
        post.push(PostRule::SameSubnet { rif, ip });
    }
    NatRules { prerouting: pre, postrouting: post }
}
