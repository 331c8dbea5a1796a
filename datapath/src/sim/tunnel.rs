//! VXLAN (SPEC §7): frames for ports on other hosts, VTEPs and remote gateways leave through a
//! tunnel by the underlay; VXLAN from the underlay is checked against the local VTEPs and
//! decapsulated into its network.

use super::*;

impl Sim<'_> {
    /// Tunnel a frame of network `net` to host `h` (§7.1): from the underlay, to its tunnel IP,
    /// with the network's VNI.
    pub(super) fn tunnel_to_host(&mut self, net: NetRef, h: HostRef, f: Frame) {
        let Some(vni) = self.topo.network(net).vni else {
            return self.drop(DropReason::NoTunnelVni);
        };
        self.tunnel_out(Tunnel { local: LocalVtep::Host, remote: self.topo.host(h).tunnel_ip, vni }, f)
    }

    /// Encapsulate into tunnel `t` (SPEC §7): from the host underlay, or from a router VTEP,
    /// whose outer packet the router routes.
    pub(super) fn tunnel_out(&mut self, t: Tunnel, f: Frame) {
        note!(self, "tunnel: {t}");
        match t.local {
            LocalVtep::Host => self.underlay_out(t.remote, t.vni, f),
            LocalVtep::Router { router, addr } => self.router_vtep_out(router, addr, t.remote, t.vni, f),
        }
    }

    /// Encapsulate toward `dst` from the host underlay (§7.1).
    pub(super) fn underlay_out(&mut self, dst: Ipv4Addr, vni: u32, f: Frame) {
        let Some(ul) = self.ifs.underlay else {
            return self.drop(DropReason::NoTunnelVni);
        };
        let host = self.topo.host(self.ifs.host);
        let next_hop = host.underlay_gateway.unwrap_or(dst);
        let src_mac = self.ifs.get(ul).mac.0;
        let sport = vxlan::source_port(&f.h);
        match self.learned_arp(ArpScope::Underlay, next_hop) {
            Some(mac) => {
                let t = vxlan::EncapTemplate::new(src_mac, mac.0, host.tunnel_ip, dst, sport, vni);
                self.output(ul, f, Some(t));
            }
            None => {
                let t = vxlan::EncapTemplate::new(src_mac, [0; 6], host.tunnel_ip, dst, sport, vni);
                let request = arp::request(src_mac, host.tunnel_ip, next_hop);
                self.queue(ArpScope::Underlay, next_hop, t.encapsulate(&f.buf), Egress::Iface(ul), request);
            }
        }
    }

    /// Encapsulate at router `r`'s VTEP address `addr` toward `dst` (§7.2): the outer packet is
    /// originated by the router (TTL 64, no NAT) and routed like any other, out of its uplink or
    /// gateway port, its next hop resolved by ARP.
    pub(super) fn router_vtep_out(&mut self, r: RouterRef, addr: Ipv4Addr, dst: Ipv4Addr, vni: u32, f: Frame) {
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
    pub(super) fn decapsulate(&mut self, local: LocalVtep, f: &Frame, hdr: vxlan::Vxlan, inner_off: usize) {
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
    pub(super) fn underlay_in(&mut self, i: IfIdx, f: Frame) {
        let my_ip = self.host_ip();
        if let L3::Arp(a) = f.h.l3 {
            self.uncacheable();
            if a.tpa != my_ip {
                // The merge rule (RFC 826), as at router ports: a known neighbour's announcement
                // updates its entry.
                if self.tables.learned().arp(ArpScope::Underlay, a.spa.into()).is_some() {
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
}
