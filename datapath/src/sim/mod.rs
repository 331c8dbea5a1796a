//! Simulation: the first packet of a flow walks the virtual topology (SPEC §5–§7).
//!
//! Read it top to bottom: [`Sim::ingress`] dispatches on what the interface is bound to;
//! a VM port goes through `Sim::port_in` (admin state, port security, learning) into
//! `Sim::bridge` (ARP suppression, forwarding by MAC, flooding); a frame for a router port
//! enters `Sim::router_in` → `Sim::route` (PREROUTING, local delivery, TTL, route lookup,
//! POSTROUTING) → `Sim::router_out` (next-hop MAC) → `Sim::router_emit`; frames for other
//! hosts leave by `Sim::tunnel_out`; VXLAN from the underlay comes in by `Sim::underlay_in`.
//!
//! The simulation works on an owned copy of the packet and records every frame it sends in
//! [`SimResult::outputs`]; the caller turns a cacheable result into a flow (`flow.rs`). Anything
//! that makes a packet's fate depend on more than its headers and the tables — generated
//! replies, ARP, queueing — marks the result not cacheable.

pub mod firewall;
pub mod frame;
pub mod nat;

use std::net::Ipv4Addr;

use rules::compile::{HostRef, LocalVtep, NetRef, PortRef, RouterRef, Topology, Tunnel};
use rules::model::{Mac, NetworkType};

use crate::ct::{ConnHandle, ConnTable, FwConns};
use crate::drop::DropReason;
use crate::iface::{Binding, IfIdx, Ifaces};
use crate::learn::{ArpOwner, ArpScope, Emit, Learned, Location, MacLearn, MacSeen, Pending, ARP_RETRY, PENDING_MAX};
use crate::limits::Limits;
use crate::state::State;
use crate::time::Instant;
use crate::wire::{self, arp, icmp, vxlan, Arp, L3, L4};
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
    /// The bucket policing traffic from the port it entered by (QoS egress, SPEC §8).
    pub police_in: Option<crate::qos::BucketId>,
    /// A NAT rule looked for a mapping and found none: the flow depends on that.
    pub ct_absent: bool,
    /// A MAC or ARP entry was learned: cached flows are stale.
    pub learned: bool,
    /// The learned entry of the packet's source MAC, kept alive by the flow's hits.
    pub mac_seen: Option<MacSeen>,
    /// The number [`Learned::new_input`] gave the packet when a copy of it was parked.
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
            police_in: None,
            ct_absent: false,
            learned: false,
            mac_seen: None,
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
    pub learned: &'a mut Learned,
    pub ct: &'a mut ConnTable,
    /// Firewall connection state, per router.
    pub fw: &'a mut FwConns,
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
        state: &'a mut State,
        qos: &'a crate::qos::QosBuckets,
        now: Instant,
        trace: bool,
    ) -> Self {
        let State { learned, ct, fw, limits } = state;
        Sim { topo, ifs, learned, ct, fw, qos, limits: *limits, now, res: SimResult::new(trace), generating: 0 }
    }

    /// The packet passed a firewall by an accepted connection; a flow of it depends on that entry.
    fn depend_fw_conn(&mut self, r: rules::compile::RouterRef, h: ConnHandle) {
        match self.res.fw_conn {
            Some((pr, ph)) if (pr, ph) != (r, h) => self.res.cacheable = false,
            _ => self.res.fw_conn = Some((r, h)),
        }
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
    fn room_for_conn(&mut self, r: RouterRef) -> bool {
        loop {
            let mine = crate::ct::of_router(self.ct, self.fw, r);
            let all = crate::ct::total(self.ct, self.fw);
            let router_full = mine >= self.limits.connections_per_router;
            if !router_full && all < self.limits.connections {
                return true;
            }
            self.uncacheable();
            let now = self.now;
            let mut room = self.ct.make_room(Some(r), now).or_else(|| self.fw.get_mut(&r)?.make_room(None, now));
            if room.is_none() && !router_full {
                room = self.ct.make_room(None, now).or_else(|| self.fw.values_mut().find_map(|t| t.make_room(None, now)));
            }
            match room {
                Some(crate::ct::Room::EarlyDrop) => {
                    note!(self, "connection table full: the oldest unanswered connection goes");
                    self.learned.refused.early_drops += 1;
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

    /// A frame from a bound port enters its network (§5.2): admin state, port security, learning.
    fn port_in(&mut self, p: PortRef, f: Frame) {
        let port = self.topo.port(p);
        let net = port.network;
        note!(self, "port {} (network {})", port.id, self.topo.network(net).id);
        if !port.admin_up {
            return self.drop(DropReason::PortDown);
        }
        if port.port_security {
            let src_mac = Mac(f.h.eth_src);
            let mac_ok = src_mac == port.mac || port.allowed_pairs.iter().any(|(_, m)| *m == Some(src_mac));
            if !mac_ok {
                return self.drop(DropReason::SpoofedMac);
            }
            let src_ip = match &f.h.l3 {
                L3::Ipv4(ip) => ip.src,
                L3::Arp(a) => a.spa,
            };
            let ip_ok = (src_mac == port.mac && port.has_ip(src_ip))
                || port.allowed_pairs.iter().any(|(net, m)| net.contains(&src_ip) && m.unwrap_or(port.mac) == src_mac);
            if !ip_ok {
                return self.drop(DropReason::SpoofedIp);
            }
        }
        let src = Mac(f.h.eth_src);
        if !self.topo.network(net).mac_to_port.contains_key(&src) && !src.is_multicast() {
            self.learn_mac(net, src, Location::Port(p));
        }
        // SPEC §8 QoS of traffic leaving the VM: its bucket, and DSCP marking of IPv4.
        if self.generating == 0 {
            self.res.police_in = self.qos.bucket(p, crate::qos::Direction::Egress);
        }
        let mut f = f;
        if let (Some(dscp), Some(_)) = (self.topo.qos[p.idx()].dscp, f.ipv4()) {
            note!(self, "QoS: DSCP {dscp}");
            f.set_dscp(dscp);
        }
        self.bridge(net, Attach::Port(p), f);
    }

    fn learn_mac(&mut self, net: NetRef, mac: Mac, loc: Location) {
        let seen = match self.learned.learn_mac(net, mac, loc, self.now, &self.limits) {
            MacLearn::News(seen) => {
                note!(self, "learn MAC {mac} behind {loc}");
                self.res.learned = true;
                seen
            }
            MacLearn::Known(seen) => seen,
            MacLearn::Refused => {
                note!(self, "MAC table of network {} full: {mac} not learned", self.topo.network(net).id);
                return;
            }
        };
        if self.generating == 0 && self.res.mac_seen.is_none() {
            self.res.mac_seen = Some(seen);
        }
    }

    // ---- networks --------------------------------------------------------------------------

    /// Forward a frame within network `net`, arriving from `from` (§5.3, §5.4).
    fn bridge(&mut self, net: NetRef, from: Attach, f: Frame) {
        if !self.enter_device() {
            return;
        }
        let network = self.topo.network(net);
        note!(self, "network {}", network.id);
        if !network.admin_up {
            return self.drop(DropReason::NetworkDown);
        }
        // §5.4 ARP suppression: answer for addresses the network knows, on the ingress port.
        if let L3::Arp(a) = f.h.l3 {
            if a.op == wire::ARP_REQUEST && a.spa != a.tpa {
                if let Some(&mac) = network.arp_answers.get(&a.tpa) {
                    // A router port's own address is answered by the port itself, which learns
                    // the asker on the way (RFC 826): an upstream that asks for gw-ip is a
                    // neighbour the router sends to.
                    if let Some(&rp) = network.mac_to_port.get(&mac) {
                        if self.topo.port(rp).router.is_some() && Attach::Port(rp) != from {
                            return self.router_in(rp, f);
                        }
                    }
                    if mac != Mac(a.sha) {
                        note!(self, "ARP suppression: {} is at {mac}", a.tpa);
                        self.uncacheable();
                        self.res.handled = true;
                        if let Ok(reply) = Frame::parse(arp::reply(&a, mac.0, a.tpa)) {
                            self.generated(|s| s.deliver(net, from, reply));
                        }
                        return;
                    }
                }
            }
        }
        let dst = Mac(f.h.eth_dst);
        if dst.is_multicast() {
            return self.flood(net, from, f);
        }
        // Ports of the snapshot, then remote MACs (§7.2, §7.4), then what was learned.
        let to = match network.mac_to_port.get(&dst) {
            Some(&p) => Some(Attach::Port(p)),
            None => match self.topo.vxlan.nets[net.idx()].remote_macs.get(&dst) {
                Some(group) => Some(Attach::Tunnel(group.pick(flow_hash(&f)))),
                None => match self.learned.mac(net, dst) {
                    Some(Location::Port(p)) => Some(Attach::Port(p)),
                    Some(Location::Tunnel(t)) => Some(Attach::Tunnel(t)),
                    None => None,
                },
            },
        };
        match to {
            Some(to) if to == from => self.drop(DropReason::NoDestination),
            Some(to) => self.deliver(net, to, f),
            None => {
                note!(self, "unknown unicast {dst}: flood");
                self.flood(net, from, f)
            }
        }
    }

    /// Broadcast, multicast and unknown unicast go to every other port of the network and to
    /// every other host with a port on it, never back where they came from (§5.3). Frames from
    /// a tunnel are not sent to tunnels again (split horizon).
    fn flood(&mut self, net: NetRef, from: Attach, f: Frame) {
        let network = self.topo.network(net);
        let me = self.ifs.host;
        let mut sent = false;
        let from_tunnel = matches!(from, Attach::Tunnel(_));
        for &p in &network.ports {
            if Attach::Port(p) == from {
                continue;
            }
            let port = self.topo.port(p);
            if port.router.is_some() {
                // Routers take broadcast ARP only; they do not route broadcast IP.
                if matches!(f.h.l3, L3::Arp(_)) {
                    self.router_in(p, f.clone());
                    sent = true;
                }
                continue;
            }
            if port.host == Some(me) && self.ifs.of_port(p).is_some() {
                self.deliver(net, Attach::Port(p), f.clone());
                sent = true;
            }
        }
        if !from_tunnel {
            for &h in &network.hosts {
                if h == me {
                    continue;
                }
                self.tunnel_to_host(net, h, f.clone());
                sent = true;
            }
            // VTEPs that flood: hardware VTEPs, remote gateways with `flood` (§7); one member of
            // a peered pair, by flow hash.
            for group in &self.topo.vxlan.nets[net.idx()].flood {
                self.tunnel_out(group.pick(flow_hash(&f)), f.clone());
                sent = true;
            }
        }
        if !sent {
            self.drop(DropReason::NoDestination);
        }
    }

    /// Hand a frame to one attachment of network `net`.
    fn deliver(&mut self, net: NetRef, to: Attach, f: Frame) {
        let p = match to {
            Attach::Tunnel(t) => return self.tunnel_out(t, f),
            Attach::Port(p) => p,
        };
        let port = self.topo.port(p);
        if port.router.is_some() {
            return self.router_in(p, f);
        }
        if !port.admin_up {
            return self.drop(DropReason::PortDown);
        }
        match port.host {
            Some(h) if h == self.ifs.host => match self.ifs.of_port(p) {
                Some(i) => {
                    let police = self.qos.bucket(p, crate::qos::Direction::Ingress);
                    self.output_policed(i, f, None, police)
                }
                None => self.drop(DropReason::PortUnbound),
            },
            Some(h) => {
                note!(self, "port {} is on host {}", port.id, self.topo.host(h).id);
                self.tunnel_to_host(net, h, f)
            }
            None => self.drop(DropReason::PortUnbound),
        }
    }

    // ---- VXLAN -----------------------------------------------------------------------------

    /// Tunnel a frame of network `net` to host `h` (§7.1): from the underlay, to its tunnel IP,
    /// with the network's VNI.
    fn tunnel_to_host(&mut self, net: NetRef, h: HostRef, f: Frame) {
        let Some(vni) = self.topo.network(net).vni else {
            return self.drop(DropReason::NoTunnelVni);
        };
        self.tunnel_out(Tunnel { local: LocalVtep::Host, remote: self.topo.host(h).tunnel_ip, vni }, f)
    }

    /// Encapsulate into tunnel `t` (SPEC §7): from the host underlay, or from a router VTEP,
    /// whose outer packet the router routes.
    fn tunnel_out(&mut self, t: Tunnel, f: Frame) {
        note!(self, "tunnel: {t}");
        match t.local {
            LocalVtep::Host => self.underlay_out(t.remote, t.vni, f),
            LocalVtep::Router { router, addr } => self.router_vtep_out(router, addr, t.remote, t.vni, f),
        }
    }

    /// Encapsulate toward `dst` from the host underlay (§7.1).
    fn underlay_out(&mut self, dst: Ipv4Addr, vni: u32, f: Frame) {
        let Some(ul) = self.ifs.underlay else {
            return self.drop(DropReason::NoTunnelVni);
        };
        let host = self.topo.host(self.ifs.host);
        let next_hop = host.underlay_gateway.unwrap_or(dst);
        let src_mac = self.ifs.get(ul).mac.0;
        let sport = vxlan::source_port(&f.h);
        match self.learned.arp(ArpScope::Underlay, next_hop) {
            Some(mac) => {
                let t = vxlan::EncapTemplate::new(src_mac, mac.0, host.tunnel_ip, dst, sport, vni);
                self.output(ul, f, Some(t));
            }
            None => {
                let t = vxlan::EncapTemplate::new(src_mac, [0; 6], host.tunnel_ip, dst, sport, vni);
                let request = arp::request(src_mac, host.tunnel_ip, next_hop);
                self.queue(ArpScope::Underlay, next_hop, t.encapsulate(&f.buf), Emit::Iface(ul), request);
            }
        }
    }

    /// Encapsulate at router `r`'s VTEP address `addr` toward `dst` (§7.2): the outer packet is
    /// originated by the router (TTL 64, no NAT) and routed like any other, out of its uplink or
    /// gateway port, its next hop resolved by ARP.
    fn router_vtep_out(&mut self, r: RouterRef, addr: Ipv4Addr, dst: Ipv4Addr, vni: u32, f: Frame) {
        let t = vxlan::EncapTemplate::new([0; 6], [0; 6], addr, dst, vxlan::source_port(&f.h), vni);
        let outer = match Frame::parse(t.encapsulate(&f.buf)) {
            Ok(mut o) => {
                o.encap_len = vxlan::ENCAP_LEN;
                o
            }
            Err(reason) => return self.drop(reason),
        };
        let Some(route) = self.topo.router(r).routes.lookup(addr, dst) else {
            return self.drop(DropReason::NoRoute);
        };
        note!(self, "router {} routes VXLAN {addr} → {dst} via {}", self.topo.router(r).id, self.topo.port(route.port).id);
        let (port, next_hop) = (route.port, route.via.unwrap_or(dst));
        self.router_out(port, next_hop, outer);
    }

    /// Decapsulate VXLAN that reached local VTEP `local` (§7): the I flag, a known source and a
    /// VNI that names a network at this VTEP; the inner frame enters that network, its source
    /// MAC learned behind the tunnel.
    fn decapsulate(&mut self, local: LocalVtep, f: &Frame, hdr: vxlan::Vxlan, inner_off: usize) {
        let Some(ip) = f.ipv4().copied() else { return self.drop(DropReason::VxlanNotForUs) };
        if ip.frag != wire::Frag::Whole {
            return self.drop(DropReason::VxlanNotForUs);
        }
        if hdr.flags & vxlan::FLAG_I == 0 {
            return self.drop(DropReason::VxlanNoIFlag);
        }
        let me = self.host_ip();
        if ip.src == me || self.topo.vxlan.known_sources.binary_search(&ip.src).is_err() {
            return self.drop(DropReason::VxlanUnknownSource);
        }
        let Some(&net) = self.topo.vxlan.vni_in.get(&(local, hdr.vni)) else {
            return self.drop(DropReason::VxlanUnknownVni);
        };
        note!(self, "VXLAN from {} VNI {} → network {}", ip.src, hdr.vni, self.topo.network(net).id);
        let inner = match f.buf.get(inner_off..ip.end()).map(|b| Frame::parse(b.to_vec())) {
            Some(Ok(inner)) => inner,
            Some(Err(r)) => return self.drop(r),
            None => return self.drop(DropReason::TruncatedEthernet),
        };
        let tunnel = Tunnel { local, remote: ip.src, vni: hdr.vni };
        let src = Mac(inner.h.eth_src);
        if !self.topo.network(net).mac_to_port.contains_key(&src) && !src.is_multicast() {
            self.learn_mac(net, src, Location::Tunnel(tunnel));
        }
        self.bridge(net, Attach::Tunnel(tunnel), inner);
    }

    /// A frame on the underlay: ARP for the tunnel IP, or VXLAN to it (SPEC §2, §7).
    fn underlay_in(&mut self, i: IfIdx, f: Frame) {
        let my_ip = self.host_ip();
        if let L3::Arp(a) = f.h.l3 {
            self.uncacheable();
            if a.tpa != my_ip {
                // The merge rule (RFC 826), as at router ports: a known neighbour's announcement
                // updates its entry.
                if self.learned.arp(ArpScope::Underlay, a.spa).is_some() {
                    self.res.handled = true;
                    return self.learn_arp(ArpScope::Underlay, a.spa, Mac(a.sha));
                }
                return self.drop(DropReason::ArpNotForUnderlay);
            }
            self.res.handled = true;
            self.learn_arp(ArpScope::Underlay, a.spa, Mac(a.sha));
            if a.op == wire::ARP_REQUEST {
                let mac = self.ifs.get(i).mac.0;
                if let Ok(r) = Frame::parse(arp::reply(&a, mac, my_ip)) {
                    self.generated(|s| s.output(i, r, None));
                }
            }
            return;
        }
        match (f.ipv4(), vxlan::view(&f.buf, &f.h)) {
            (Some(ip), Some((hdr, off))) if ip.dst == my_ip => self.decapsulate(LocalVtep::Host, &f, hdr, off),
            _ => self.drop(DropReason::VxlanNotForUs),
        }
    }

    // ---- routers ---------------------------------------------------------------------------

    /// A frame reaches router port `p` (§6).
    fn router_in(&mut self, p: PortRef, f: Frame) {
        if !self.enter_device() {
            return;
        }
        let port = self.topo.port(p);
        let Some(r) = port.router else {
            return self.drop(DropReason::NotForRouter);
        };
        note!(self, "router {} in port {}", self.topo.router(r).id, port.id);
        if !port.admin_up {
            return self.drop(DropReason::PortDown);
        }
        match f.h.l3 {
            L3::Arp(a) => self.router_arp(p, a),
            L3::Ipv4(_) => {
                if f.h.eth_dst != port.mac.0 {
                    return self.drop(DropReason::NotForRouter);
                }
                self.route(r, p, f)
            }
        }
    }

    /// ARP at a router port (§6.1): answer for its IPs and the floating IPs it owns; learn
    /// senders on its subnets, which releases packets waiting for them.
    fn router_arp(&mut self, p: PortRef, a: Arp) {
        self.uncacheable();
        let port = self.topo.port(p);
        let on_link = port.ips.iter().any(|ip| ip.subnet.contains(&a.spa));
        // Its own IPs, the floating IPs it owns, and the router's VTEP addresses on its subnets.
        let vtep =
            port.router.is_some_and(|r| self.topo.vxlan.is_router_vtep(r, a.tpa)) && port.ips.iter().any(|i| i.subnet.contains(&a.tpa));
        let for_me = port.has_ip(a.tpa) || port.owned_fips.iter().any(|&fi| self.topo.fip(fi).addr == a.tpa) || vtep;
        // RFC 826's merge rule: a sender already in the table is updated by whatever it sends —
        // a gratuitous request or reply (sender IP = target IP) announcing a new MAC after a
        // failover included; a request for this port's addresses and a reply create the entry.
        let known = self.learned.arp(ArpScope::RouterPort(p), a.spa).is_some();
        let learns = on_link && (for_me || a.op == wire::ARP_REPLY || known);
        if learns {
            self.learn_arp(ArpScope::RouterPort(p), a.spa, Mac(a.sha));
        }
        if a.op == wire::ARP_REQUEST && for_me {
            note!(self, "ARP reply: {} is at {}", a.tpa, port.mac);
            self.res.handled = true;
            if let Ok(reply) = Frame::parse(arp::reply(&a, port.mac.0, a.tpa)) {
                self.generated(|s| s.router_emit(p, reply));
            }
        } else if learns {
            self.res.handled = true;
        } else {
            self.drop(DropReason::ArpNotHandled);
        }
    }

    /// Learn an ARP entry and send whatever waited for it.
    fn learn_arp(&mut self, scope: ArpScope, ip: Ipv4Addr, mac: Mac) {
        let owner = match scope {
            ArpScope::RouterPort(p) => self.topo.port(p).router.map_or(ArpOwner::Underlay, ArpOwner::Router),
            ArpScope::Underlay => ArpOwner::Underlay,
        };
        if self.learned.learn_arp(scope, owner, ip, mac, &self.limits) {
            note!(self, "learn ARP {ip} is at {mac}");
            self.res.learned = true;
        }
        if let Some(pending) = self.learned.pending.remove(&(scope, ip)) {
            note!(self, "release {} packets waiting for {ip}", pending.frames.len());
            for w in pending.frames {
                if self.learned.leaves(&w) {
                    self.res.released += 1;
                }
                let mut frame = w.frame;
                wire::write_bytes(&mut frame, 0, &mac.0);
                let Ok(f) = Frame::parse(frame) else { continue };
                self.generated(|s| match pending.emit {
                    Emit::Iface(i) => s.output(i, f, None),
                    Emit::RouterPort(rp) => s.bridge(s.topo.port(rp).network, Attach::Port(rp), f),
                });
            }
        }
    }

    /// Route an IPv4 packet that entered router `r` by port `inport` (§6.1–§6.3, §6.1 NAT).
    fn route(&mut self, r: RouterRef, inport: PortRef, mut f: Frame) {
        let orig = f.clone();
        // SPEC §6.1 PREROUTING
        let pre = match nat::prerouting(self, r, inport, &mut f) {
            Ok(pre) => pre,
            Err(reason) => return self.drop(reason),
        };
        let Some(ip) = f.ipv4().copied() else { return };
        let router = self.topo.router(r);
        // VXLAN to one of the router's VTEP addresses is decapsulated (§7.2).
        if self.topo.vxlan.is_router_vtep(r, ip.dst) {
            if let Some((hdr, off)) = vxlan::view(&f.buf, &f.h) {
                return self.decapsulate(LocalVtep::Router { router: r, addr: ip.dst }, &f, hdr, off);
            }
        }
        // Local delivery: the router answers echo requests to its own IPs (§6.1).
        if router.ports.iter().any(|&rp| self.topo.port(rp).has_ip(ip.dst)) {
            if let L4::Icmp { typ: wire::ICMP_ECHO_REQUEST, .. } = ip.l4 {
                if ip.frag == wire::Frag::Whole {
                    note!(self, "echo request to router IP {}: reply", ip.dst);
                    self.uncacheable();
                    self.res.handled = true;
                    let mac = self.topo.port(inport).mac.0;
                    if let Some(Ok(reply)) = icmp::echo_reply(&f.buf, &ip, ip.dst, mac).map(Frame::parse) {
                        self.generated(|s| s.router_emit(inport, reply));
                    }
                    return;
                }
            }
            return self.drop(DropReason::ToRouterUnhandled);
        }
        // §6.3 TTL
        if ip.ttl <= 1 {
            self.icmp_error(&orig, inport, wire::ICMP_TIME_EXCEEDED, 0);
            return self.drop(DropReason::TtlExceeded);
        }
        // §6.2 routing
        let Some(route) = router.routes.lookup(ip.src, ip.dst) else {
            self.icmp_error(&orig, inport, wire::ICMP_DEST_UNREACH, 0);
            return self.drop(DropReason::NoRoute);
        };
        let outport = route.port;
        let next_hop = route.via.unwrap_or(ip.dst);
        note!(self, "route {} via {} out port {}", route.destination, next_hop, self.topo.port(outport).id);
        // SPEC §6.2 firewall: after routing, before POSTROUTING (iptables' FORWARD chain).
        if let Err(reason) = firewall::filter(self, r, inport, &orig, &f) {
            return self.drop(reason);
        }
        // SPEC §6.1 POSTROUTING
        if let Err(reason) = nat::postrouting(self, r, inport, outport, pre, &mut f) {
            return self.drop(reason);
        }
        f.dec_ttl();
        self.router_out(outport, next_hop, f);
    }

    /// Send an ICMP error about `orig` from the ingress port's IP back the way it came (§6.3).
    /// Never about an ICMP error, a later fragment, or a broadcast.
    fn icmp_error(&mut self, orig: &Frame, inport: PortRef, typ: u8, code: u8) {
        let Some(ip) = orig.ipv4() else { return };
        let about_error = matches!(ip.l4, L4::Icmp { typ, .. } if wire::icmp_is_error(typ));
        if about_error || ip.frag == wire::Frag::Later || wire::is_multicast(orig.h.eth_src) {
            return;
        }
        let port = self.topo.port(inport);
        let Some(src) = port.first_ip() else { return };
        self.uncacheable();
        note!(self, "ICMP type {typ} code {code} from {src} to {}", ip.src);
        if let Some(Ok(err)) = icmp::error(&orig.buf, ip, typ, code, src, port.mac.0).map(Frame::parse) {
            self.generated(|s| s.router_emit(inport, err));
        }
    }

    /// Resolve the next hop's MAC and send out of `outport` (§6.4).
    fn router_out(&mut self, outport: PortRef, next_hop: Ipv4Addr, mut f: Frame) {
        let port = self.topo.port(outport);
        if !port.admin_up {
            return self.drop(DropReason::PortDown);
        }
        // A port of the snapshot or a floating IP's owning router port is known; anything
        // else is resolved by ARP out of the egress port.
        let known = self.topo.network(port.network).arp_answers.get(&next_hop).copied();
        let mac = known.or_else(|| self.learned.arp(ArpScope::RouterPort(outport), next_hop));
        match mac {
            Some(mac) => {
                f.set_eth(port.mac.0, mac.0);
                self.router_emit(outport, f);
            }
            None => {
                f.set_eth(port.mac.0, [0; 6]);
                let src_ip = port.ips.iter().find(|i| i.subnet.contains(&next_hop)).or(port.ips.first()).map(|i| i.addr);
                let Some(src_ip) = src_ip else {
                    return self.drop(DropReason::NoRoute);
                };
                let request = arp::request(port.mac.0, src_ip, next_hop);
                let emit = match self.ifs.of_port(outport) {
                    Some(i) if port.host == Some(self.ifs.host) => Emit::Iface(i),
                    _ => Emit::RouterPort(outport),
                };
                self.queue(ArpScope::RouterPort(outport), next_hop, f.buf, emit, request);
            }
        }
    }

    /// A frame leaves router port `p`: onto the wire if the port is bound to an interface of
    /// this host, else into the port's network.
    fn router_emit(&mut self, p: PortRef, f: Frame) {
        let port = self.topo.port(p);
        if port.interface.is_some() {
            return match (port.host == Some(self.ifs.host), self.ifs.of_port(p)) {
                (true, Some(i)) => self.output(i, f, None),
                // An uplink of another host: its network has no VNI to carry the frame.
                _ => self.drop(DropReason::NoTunnelVni),
            };
        }
        if self.topo.network(port.network).kind == NetworkType::Local && port.host.is_some_and(|h| h != self.ifs.host) {
            return self.drop(DropReason::NoTunnelVni);
        }
        self.bridge(port.network, Attach::Port(p), f)
    }

    /// Park a frame until `ip` answers ARP in `scope`; the first packet sends the request.
    fn queue(&mut self, scope: ArpScope, ip: Ipv4Addr, frame: Vec<u8>, emit: Emit, request: Vec<u8>) {
        self.uncacheable();
        let now = self.now;
        let first = !self.learned.pending.contains_key(&(scope, ip));
        if first && self.learned.pending.len() >= self.limits.arp_waiting {
            note!(self, "{} next hops wait for ARP already", self.learned.pending.len());
            return self.drop(DropReason::ArpWaitingFull);
        }
        let pending = self.learned.pending.entry((scope, ip)).or_insert_with(|| Pending {
            frames: Vec::new(),
            emit,
            request: request.clone(),
            tries: 1,
            next_try: now.saturating_add(ARP_RETRY),
        });
        if pending.frames.len() >= PENDING_MAX {
            return self.drop(DropReason::ArpQueueFull);
        }
        let waiting = pending.frames.len() + 1;
        // A frame the packet caused (an ICMP error, a reply) is not the packet: the packet's
        // own fate counts it, and the waiting frame counts nothing.
        let input = match (self.generating, self.res.input) {
            (0, Some(i)) => Some(i),
            (0, None) => Some(*self.res.input.insert(self.learned.new_input())),
            _ => None,
        };
        self.learned.park((scope, ip), frame, input);
        note!(self, "wait for ARP of {ip} ({waiting} waiting)");
        self.res.queued |= input.is_some();
        if first {
            self.send_arp_request(emit, request);
        }
    }

    /// Send an ARP request the way a waiting frame will go.
    pub fn send_arp_request(&mut self, emit: Emit, request: Vec<u8>) {
        let Ok(f) = Frame::parse(request) else { return };
        self.generated(|s| match emit {
            Emit::Iface(i) => s.output(i, f, None),
            Emit::RouterPort(p) => s.bridge(s.topo.port(p).network, Attach::Port(p), f),
        });
    }
}

/// The hash of a frame's inner flow that picks a member of a peered pair (§7) — the same fixed
/// hash as the VXLAN source port, so it is the same on every machine.
fn flow_hash(f: &Frame) -> u32 {
    vxlan::flow_hash(&f.h)
}
