//! A router (SPEC §6): a frame for a router port is routed — PREROUTING, the firewall, local
//! delivery, TTL, the route lookup, POSTROUTING — and leaves by its next hop's MAC, waiting for
//! ARP when it is not known yet.

use super::*;

impl Sim<'_> {
    /// A frame reaches router port `p` (§6).
    pub(super) fn router_in(&mut self, p: PortRef, f: Frame) {
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
            L3::Ipv6(ip) => self.router_in6(r, p, f, ip),
            L3::Other(_) => self.drop(DropReason::UnsupportedEthertype),
        }
    }

    /// Route an IPv4 packet that entered router `r` by port `inport` (§6.1–§6.3, §6.1 NAT).
    pub(super) fn route(&mut self, r: RouterRef, inport: PortRef, f: Frame) {
        let orig = f.clone();
        self.route_arrived(r, inport, &orig, f)
    }

    /// Route `f`, which arrived at `inport` as `orig`: the same packet, or for fip64 (§11) the
    /// IPv6 packet it was translated from, so that what the router answers (a reject, an ICMP
    /// error) goes to the sender in the sender's family.
    pub(super) fn route_arrived(&mut self, r: RouterRef, inport: PortRef, orig: &Frame, mut f: Frame) {
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
                        self.generated(|s| s.router_send(inport, reply));
                    }
                    return;
                }
            }
            return self.drop(DropReason::ToRouterUnhandled);
        }
        // §6.3 TTL
        if ip.ttl <= 1 {
            self.icmp_error(orig, inport, wire::ICMP_TIME_EXCEEDED, 0);
            return self.drop(DropReason::TtlExceeded);
        }
        // §11: to a NAT64 pool address of a router with fip64s: back to the IPv6 client.
        if fip64::to_pool(self.topo, r, ip.dst) {
            return self.fip64_out(r, inport, orig, f, ip);
        }
        // §6.2 routing
        let Some(route) = router.routes.lookup(ip.src, ip.dst) else {
            self.icmp_error(orig, inport, wire::ICMP_DEST_UNREACH, 0);
            return self.drop(DropReason::NoRoute);
        };
        let outport = route.port;
        let next_hop = route.via.unwrap_or(ip.dst);
        note!(self, "route {} via {} out port {}", route.destination, next_hop, self.topo.port(outport).id);
        // SPEC §6.2 firewall: after routing, before POSTROUTING (iptables' FORWARD chain).
        if let Err(reason) = firewall::filter(self, r, inport, orig, &f) {
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
    pub(super) fn icmp_error(&mut self, orig: &Frame, inport: PortRef, typ: u8, code: u8) {
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
            self.generated(|s| s.router_send(inport, err));
        }
    }

    /// Resolve the next hop's MAC and send out of `outport` (§6.4).
    pub(super) fn router_out(&mut self, outport: PortRef, next_hop: Ipv4Addr, mut f: Frame) {
        let port = self.topo.port(outport);
        if !port.admin_up {
            return self.drop(DropReason::PortDown);
        }
        // A port of the snapshot or a floating IP's owning router port is known; anything
        // else is resolved by ARP out of the egress port.
        let known = self.topo.network(port.network).arp_answers.get(&next_hop).copied();
        let mac = known.or_else(|| self.learned_arp(ArpScope::RouterPort(outport), next_hop));
        match mac {
            Some(mac) => {
                f.set_eth(port.mac.0, mac.0);
                self.router_send(outport, f);
            }
            None => {
                f.set_eth(port.mac.0, [0; 6]);
                let src_ip = port.ips.iter().find(|i| i.subnet.contains(&next_hop)).or(port.ips.first()).map(|i| i.addr);
                let Some(src_ip) = src_ip else {
                    return self.drop(DropReason::NoRoute);
                };
                let request = arp::request(port.mac.0, src_ip, next_hop);
                let egress = match self.ifs.of_port(outport) {
                    Some(i) if port.host == Some(self.ifs.host) => Egress::Iface(i),
                    _ => Egress::RouterPort(outport),
                };
                self.queue(ArpScope::RouterPort(outport), next_hop, f.buf, egress, request);
            }
        }
    }

    /// A frame leaves router port `p`: onto the wire if the port is bound to an interface of
    /// this host, else into the port's network.
    pub(super) fn router_send(&mut self, p: PortRef, f: Frame) {
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
}
