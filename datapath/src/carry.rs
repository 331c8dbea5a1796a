//! What the running state keeps across a new snapshot (SPEC §9). Learned entries, packets waiting
//! for ARP and connections name networks, ports and routers by their position in the compiled
//! snapshot; a new snapshot may number them differently, so each is carried over by id and let go
//! when its resource is gone:
//!
//! - a learned MAC, when its network and its location (a port, or a router VTEP's tunnel) remain;
//! - an ARP entry or waiting packets of a router port, when the port remains (the underlay's
//!   always); waiting packets let go are dropped and counted (`snapshot_removed`);
//! - a NAT connection, when its rule remains (SPEC §9 "when their rules still exist"): default
//!   SNAT (§6.1 POSTROUTING 5, 6) while the router still has default SNAT to the same gw-ip;
//!   same-subnet SNAT (POSTROUTING 7) while the router still has a port with that address;
//! - a firewall connection, when its router remains and the router's firewalls still accept it
//!   (§6.2); a router that no longer has a firewall keeps its state unused.
//!
//! A reload carries the state from the old snapshot; a restart (`persist.rs`) from the ids the
//! saved state was made under, by the same rules.

use std::collections::HashMap;

use rules::compile::{LocalVtep, NetRef, PortRef, RouterRef, Topology, Tunnel};

use crate::ct::{ConnTable, SnatKind};
use crate::learn::Renumber;
use crate::state::State;

/// Old positions to new ones, by id; `None` where the resource is gone.
pub struct Remap {
    nets: Vec<Option<NetRef>>,
    ports: Vec<Option<PortRef>>,
    routers: Vec<Option<RouterRef>>,
}

fn by_id<'a, T: 'a, R>(old: impl Iterator<Item = &'a str>, new: &'a [T], id: impl Fn(&T) -> &str, mk: impl Fn(u32) -> R) -> Vec<Option<R>> {
    let index: HashMap<&str, u32> = new.iter().enumerate().map(|(k, t)| (id(t), k as u32)).collect();
    old.map(|i| index.get(i).map(|&k| mk(k))).collect()
}

/// The ids of a snapshot's networks, ports and routers, in their compiled order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    pub networks: Vec<String>,
    pub ports: Vec<String>,
    pub routers: Vec<String>,
}

impl Ids {
    pub fn of(t: &Topology) -> Ids {
        Ids {
            networks: t.networks.iter().map(|n| n.id.clone()).collect(),
            ports: t.ports.iter().map(|p| p.id.clone()).collect(),
            routers: t.routers.iter().map(|r| r.id.clone()).collect(),
        }
    }
}

impl Remap {
    pub fn between(old: &Topology, new: &Topology) -> Remap {
        Remap::from_ids(&Ids::of(old), new)
    }

    /// From the positions of `old` (a snapshot's ids) to those of `new`.
    pub fn from_ids(old: &Ids, new: &Topology) -> Remap {
        Remap {
            nets: by_id(old.networks.iter().map(String::as_str), &new.networks, |n| &n.id, NetRef),
            ports: by_id(old.ports.iter().map(String::as_str), &new.ports, |p| &p.id, PortRef),
            routers: by_id(old.routers.iter().map(String::as_str), &new.routers, |r| &r.id, RouterRef),
        }
    }
}

impl crate::learn::Renumber for Remap {
    fn net(&self, n: NetRef) -> Option<NetRef> {
        self.nets.get(n.idx()).copied().flatten()
    }

    fn port(&self, p: PortRef) -> Option<PortRef> {
        self.ports.get(p.idx()).copied().flatten()
    }

    fn router(&self, r: RouterRef) -> Option<RouterRef> {
        self.routers.get(r.idx()).copied().flatten()
    }

    fn tunnel(&self, t: Tunnel) -> Option<Tunnel> {
        let local = match t.local {
            LocalVtep::Host => LocalVtep::Host,
            LocalVtep::Router { router, addr } => LocalVtep::Router { router: self.router(router)?, addr },
        };
        Some(Tunnel { local, ..t })
    }
}

/// Carry `state` over to `new` through `m`; returns how many inputs the waiting packets let go
/// drop.
pub fn carry_over(state: &mut State, m: &Remap, new: &Topology) -> u64 {
    let dropped = state.learned.remap(m);
    carry_nat(&mut state.ct, m, new);
    // fip64 bindings stay while their router has a fip64 (§11).
    state.fip64.remap(|b| m.router(b.router).filter(|&r| !new.router(r).fip64s.is_empty()));
    let fw = std::mem::take(&mut state.fw);
    for (r, mut table) in fw {
        let Some(nr) = m.router(r) else { continue };
        table.remap(|c| m.router(c.router));
        carry_fw(&mut table, nr, new);
        state.fw.insert(nr, table);
    }
    dropped
}

/// Firewall connections the new rules of router `r` still accept (a router with no firewall
/// now accepts all: its state stays, unused).
fn carry_fw(table: &mut ConnTable, r: RouterRef, new: &Topology) {
    use rules::compile::firewall::{FwPacket, NO_PORT};
    let fws: Vec<_> = new.firewalls.iter().filter(|(fr, _)| *fr == r).map(|(_, f)| f).collect();
    table.retain(|c| {
        let ports = matches!(c.orig.proto, crate::wire::IPPROTO_TCP | crate::wire::IPPROTO_UDP);
        let p = FwPacket {
            proto: c.orig.proto,
            src: c.orig.src,
            dst: c.orig.dst,
            sport: if ports { c.orig.sport as u32 } else { NO_PORT },
            dport: if ports { c.orig.dport as u32 } else { NO_PORT },
        };
        fws.iter().all(|fw| fw.admin_up && fw.classify(&p).is_some_and(|i| fw.rules[i].action == rules::model::FirewallAction::Allow))
    });
}

/// NAT connections whose rule still exists, on their router's new position.
fn carry_nat(ct: &mut ConnTable, m: &Remap, new: &Topology) {
    ct.remap(|c| {
        let r = m.router(c.router)?;
        let router = new.router(r);
        let nat_ip = match c.reply.dst {
            std::net::IpAddr::V4(a) => Some(a),
            std::net::IpAddr::V6(_) => None,
        };
        let kept = match c.kind {
            SnatKind::Default => router.default_snat && router.gw_ip.is_some_and(|gw| Some(gw) == nat_ip),
            SnatKind::SameSubnet => router.ports.iter().any(|&p| nat_ip.is_some_and(|a| new.port(p).has_ip(a))),
            SnatKind::Untranslated => true,
        };
        kept.then_some(r)
    });
}
