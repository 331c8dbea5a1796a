//! Simulation: the first packet of a flow walks the virtual topology (SPEC §5–§7).
//!
//! Read it top to bottom: [`Sim::ingress`] dispatches on what the interface is bound to;
//! a VM port goes through `Sim::port_in` (admin state, port security, learning) into
//! `Sim::bridge` (ARP suppression, forwarding by MAC, flooding); a frame for a router port
//! enters `Sim::router_in` → `Sim::route` (PREROUTING, local delivery, TTL, route lookup,
//! POSTROUTING) → `Sim::router_out` (next-hop MAC) → `Sim::router_send`; frames for other
//! hosts leave by `Sim::tunnel_out`; VXLAN from the underlay comes in by `Sim::underlay_in`.
//!
//! The simulation works on an owned copy of the packet and records every frame it sends in
//! [`SimResult::outputs`]; the caller turns a cacheable result into a flow (`flow.rs`). Anything
//! that makes a packet's fate depend on more than its headers and the tables — generated
//! replies, ARP, queueing — marks the result not cacheable.

mod bridge;
mod fip64;
pub mod firewall;
pub mod frame;
pub mod nat;
mod neigh;
mod router;
mod router6;
mod tunnel;

use std::net::Ipv4Addr;

use rules::compile::{HostRef, LocalVtep, NetRef, PortRef, RouterRef, Topology, Tunnel};
use rules::model::{Mac, NetworkType};

use crate::ct::ConnHandle;
use crate::drop::DropReason;
use crate::iface::{Binding, IfIdx, Ifaces};
use crate::learn::{ArpOwner, ArpScope, Egress, Entry, Location, MacLearn, MacSeen, Pending, ARP_RETRY, PENDING_MAX};
use crate::limits::Limits;
use crate::state::Tables;
use crate::time::Instant;
use crate::wire::{self, arp, icmp, icmpv6, vxlan, Arp, L3, L4};
use frame::Frame;

/// Devices a packet may pass before the loop guard drops it (SPEC §6.5).
pub const MAX_DEVICES: u8 = 16;

/// One frame the simulation sends.
#[derive(Debug, Clone)]
pub struct SimOut {
    pub iface: IfIdx,
    /// The bucket policing traffic to the port it leaves by (QoS ingress, SPEC §8).
    pub police: Option<crate::qos::BucketId>,
    /// The frame as it leaves, before encapsulation.
    pub frame: Vec<u8>,
    /// The outer header when it leaves through a VXLAN tunnel.
    pub encap: Option<vxlan::EncapTemplate>,
}

/// What simulating one packet did.
#[derive(Debug, Clone)]
pub struct SimResult {
    pub outputs: Vec<SimOut>,
    /// Whether the outcome may be cached as a flow.
    pub cacheable: bool,
    /// The first drop noted on the way; the packet's fate when nothing was sent.
    pub drop: Option<DropReason>,
    /// The packet was consumed by the datapath (ARP answered or learned, echo answered).
    pub handled: bool,
    /// The packet waits for an ARP answer; its fate is counted when it leaves or is dropped.
    pub queued: bool,
    /// Frames of earlier packets that an ARP answer released.
    pub released: u64,
    /// Frames sent that are the packet itself (not replies, errors or requests it caused).
    pub own_outputs: u32,
    /// The connection the packet belongs to (dynamic NAT).
    pub conn: Option<ConnHandle>,
    /// The fip64 binding the packet was translated by (§11).
    pub binding: Option<crate::ct::bindings::BindingRef>,
    /// The bucket policing traffic from the port it entered by (QoS egress, SPEC §8).
    pub police_in: Option<crate::qos::BucketId>,
    /// A NAT rule looked for a mapping and found none, in this generation of the NAT table:
    /// the flow depends on none appearing since.
    pub ct_absent: Option<u64>,
    /// The learned entries the simulation read, found or not, with their generations (§9:
    /// the flow is stale once one of them changes).
    pub learned: Vec<crate::learn::Dep>,
    /// The learned entry of the packet's source MAC, kept alive by the flow's hits.
    pub mac_seen: Option<MacSeen>,
    /// A timer was set (a next hop now waits for ARP, a MAC began to age): the deadline of the
    /// next timer may be nearer.
    pub new_timer: bool,
    /// The number [`crate::learn::Learned::new_input`] gave the packet when a copy of it was parked.
    pub input: Option<u64>,
    /// The firewall connection the packet passed by (router, entry).
    pub fw_conn: Option<(rules::compile::RouterRef, ConnHandle)>,
    /// A firewall looked for the packet's connection and found none (router, table generation).
    pub fw_absent: Option<(rules::compile::RouterRef, u64)>,
    /// Firewall events to log for this packet.
    pub fw_events: Vec<firewall::FwLog>,
    /// A deny decision a cached flow must log for every packet.
    pub fw_log_each_packet: Option<firewall::FwLog>,
    /// What the simulation did, step by step, when tracing.
    pub trace: Option<Vec<String>>,
    hops: u8,
}

impl SimResult {
    /// Why nothing of the packet left: the drop the simulation noted. One that noted none is a
    /// defect, counted as `unexplained` (and caught by debug builds) rather than under a
    /// reason it did not give.
    pub fn drop_reason(&self) -> DropReason {
        debug_assert!(self.drop.is_some(), "the simulation sent nothing and gave no reason: {:?}", self.trace);
        self.drop.unwrap_or(DropReason::Unexplained)
    }

    fn new(trace: bool) -> Self {
        SimResult {
            outputs: Vec::new(),
            cacheable: true,
            drop: None,
            handled: false,
            queued: false,
            released: 0,
            own_outputs: 0,
            conn: None,
            binding: None,
            police_in: None,
            ct_absent: None,
            learned: Vec::new(),
            mac_seen: None,
            new_timer: false,
            input: None,
            fw_conn: None,
            fw_absent: None,
            fw_events: Vec::new(),
            fw_log_each_packet: None,
            trace: trace.then(Vec::new),
            hops: 0,
        }
    }
}

/// Where a frame enters or leaves a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    Port(PortRef),
    /// A VXLAN tunnel (to another host, a VTEP, a remote gateway).
    Tunnel(Tunnel),
}

/// The simulation of one packet.
pub struct Sim<'a> {
    pub topo: &'a Topology,
    pub ifs: &'a Ifaces,
    /// Learned entries, NAT and firewall connections, fip64 bindings: each table is locked for
    /// the one lookup or change made of it, never across a device (`state.rs`).
    pub tables: &'a Tables,
    /// The worker's copy of the learned entries its misses read.
    cache: &'a mut crate::learn::LearnCache,
    /// QoS buckets, to name the ones a packet meets.
    pub qos: &'a crate::qos::QosBuckets,
    pub limits: Limits,
    pub now: Instant,
    pub res: SimResult,
    /// Above zero while sending frames the packet caused rather than the packet itself.
    generating: u32,
}

macro_rules! note {
    ($sim:expr, $($arg:tt)*) => {
        if let Some(t) = $sim.res.trace.as_mut() {
            t.push(format!($($arg)*));
        }
    };
}
pub(crate) use note;

impl<'a> Sim<'a> {
    pub fn new(
        topo: &'a Topology,
        ifs: &'a Ifaces,
        tables: &'a Tables,
        cache: &'a mut crate::learn::LearnCache,
        qos: &'a crate::qos::QosBuckets,
        now: Instant,
        trace: bool,
    ) -> Self {
        Sim { topo, ifs, tables, cache, qos, limits: tables.limits(), now, res: SimResult::new(trace), generating: 0 }
    }

    /// The packet passed a firewall by an accepted connection; a flow of it depends on that entry.
    fn depend_fw_conn(&mut self, r: rules::compile::RouterRef, h: ConnHandle) {
        match self.res.fw_conn {
            Some((pr, ph)) if (pr, ph) != (r, h) => self.res.cacheable = false,
            _ => self.res.fw_conn = Some((r, h)),
        }
    }

    /// A learned entry as the simulation read it decides the packet's way: a flow of it depends
    /// on the entry's generation (§9).
    fn depend(&mut self, d: crate::learn::Dep) {
        if !self.res.learned.contains(&d) {
            self.res.learned.push(d);
        }
    }

    /// Where `mac` was learned on `net`, if it was; the flow depends on that, found or not.
    /// From the worker's copy while it holds, else read with its generation under one lock, so
    /// a flow never holds a generation newer than what it read.
    fn learned_mac(&mut self, net: NetRef, mac: Mac) -> Option<Location> {
        let tables = self.tables;
        let (d, found) = self.cache.mac(tables.gens(), || tables.learned(), net, mac);
        let loc = found.map(|(loc, _)| *loc);
        self.depend(d);
        loc
    }

    /// The MAC ARP (ND) learned for `ip` in `scope`; the flow depends on that, found or not.
    fn learned_arp(&mut self, scope: ArpScope, ip: impl Into<std::net::IpAddr>) -> Option<Mac> {
        let tables = self.tables;
        let (d, mac) = self.cache.arp(tables.gens(), || tables.learned(), scope, ip.into());
        self.depend(d);
        mac
    }

    /// A NAT rule found no mapping: the flow depends on the NAT table's generation as it was
    /// before the lookup (`seen`), so a mapping made since by any worker makes it stale.
    fn depend_ct_absent(&mut self, seen: u64) {
        self.res.ct_absent = Some(self.res.ct_absent.map_or(seen, |g| g.min(seen)));
    }

    /// A firewall found no connection for the packet; a flow of it depends on none appearing.
    fn depend_fw_absent(&mut self, r: rules::compile::RouterRef, generation: u64) {
        match self.res.fw_absent {
            Some((pr, _)) if pr != r => self.res.cacheable = false,
            _ => self.res.fw_absent = Some((r, generation)),
        }
    }

    /// Whether router `r` may have one more connection (SPEC §9): under both bounds, or after
    /// an expired or never-answered connection made room — the router's own first, then, when
    /// only the total is reached, anyone's. Tables found full make the result not cacheable.
    ///
    /// `ct` is the NAT table, locked by the caller (which creates the connection under the same
    /// lock); the firewall tables are locked here, after it.
    fn room_for_conn(&mut self, r: RouterRef, ct: &mut crate::ct::ConnTable) -> bool {
        let tables = self.tables;
        loop {
            let (room, mine, all) = {
                let mut fw = tables.fw();
                let mine = crate::ct::of_router(ct, &fw, r);
                let all = crate::ct::total(ct, &fw);
                let router_full = mine >= self.limits.connections_per_router;
                if !router_full && all < self.limits.connections {
                    return true;
                }
                let now = self.now;
                let mut room = ct.make_room(Some(r), now).or_else(|| fw.get_mut(&r)?.make_room(None, now));
                if room.is_none() && !router_full {
                    room = ct.make_room(None, now).or_else(|| fw.values_mut().find_map(|t| t.make_room(None, now)));
                }
                (room, mine, all)
            };
            self.uncacheable();
            match room {
                Some(crate::ct::Room::EarlyDrop) => {
                    note!(self, "connection table full: the oldest unanswered connection goes");
                    tables.learned().refused.early_drops += 1;
                }
                Some(crate::ct::Room::Expired) => {}
                None => {
                    note!(self, "connection table full ({mine} of router, {all} in all)");
                    return false;
                }
            }
        }
    }

    fn drop(&mut self, r: DropReason) {
        note!(self, "drop: {}", r.name());
        if self.res.drop.is_none() {
            self.res.drop = Some(r);
        }
    }

    fn uncacheable(&mut self) {
        self.res.cacheable = false;
    }

    fn output(&mut self, iface: IfIdx, f: Frame, encap: Option<vxlan::EncapTemplate>) {
        self.output_policed(iface, f, encap, None)
    }

    fn output_policed(
        &mut self,
        iface: IfIdx,
        mut f: Frame,
        mut encap: Option<vxlan::EncapTemplate>,
        police: Option<crate::qos::BucketId>,
    ) {
        // A frame this simulation encapsulated (a router VTEP's) leaves as its outer header, as
        // routed, and the inner frame: a flow can cache that as a template.
        if f.encap_len == vxlan::ENCAP_LEN && encap.is_none() && f.buf.len() >= vxlan::ENCAP_LEN {
            encap = vxlan::EncapTemplate::from_outer(&f.buf[..vxlan::ENCAP_LEN]);
            if encap.is_some() {
                f.buf.drain(..vxlan::ENCAP_LEN);
            }
        }
        if !self.ifs.get(iface).present {
            // SPEC §2: the port's interface does not exist now.
            note!(self, "output {}: absent", self.ifs.get(iface).name);
            return self.drop(DropReason::PortAbsent);
        }
        note!(
            self,
            "output {}{}",
            self.ifs.get(iface).name,
            encap.map(|e| format!(" (VXLAN VNI {} to {})", e.vni(), e.dst())).unwrap_or_default()
        );
        if self.generating == 0 {
            self.res.own_outputs += 1;
        }
        self.res.outputs.push(SimOut { iface, police, frame: f.buf, encap });
    }

    /// Send frames the packet caused (a reply, an error, a request): they are not the packet,
    /// and a result that has them is not cached.
    fn generated(&mut self, send: impl FnOnce(&mut Self)) {
        self.uncacheable();
        self.generating += 1;
        send(self);
        self.generating -= 1;
    }

    /// Count a device on the walk; false when the loop guard trips.
    fn enter_device(&mut self) -> bool {
        self.res.hops += 1;
        if self.res.hops > MAX_DEVICES {
            self.drop(DropReason::LoopGuard);
            return false;
        }
        true
    }

    fn host_ip(&self) -> Ipv4Addr {
        self.topo.host(self.ifs.host).tunnel_ip
    }

    // ---- ingress ---------------------------------------------------------------------------

    /// A frame arrives on interface `i` (SPEC §2, §5.2).
    pub fn ingress(&mut self, i: IfIdx, f: Frame) {
        note!(self, "in {} ({} bytes)", self.ifs.get(i).name, f.buf.len());
        match self.ifs.get(i).binding {
            Binding::Underlay => self.underlay_in(i, f),
            Binding::Port(p) => self.port_in(p, f),
            Binding::RouterPort(p) => self.router_in(p, f),
            Binding::Released => self.drop(DropReason::PortUnbound),
        }
    }
}

/// The hash of a frame's inner flow that picks a member of a peered pair (§7) — the same fixed
/// hash as the VXLAN source port, so it is the same on every machine.
fn flow_hash(f: &Frame) -> u32 {
    vxlan::flow_hash(&f.h)
}
