//! A router's IPv6 side (SPEC §10.2): a router port answers Neighbor Solicitations for its
//! addresses (link-local and fixed IPv6) and echo requests to them, and learns its neighbours
//! from their NS and NA; other packets are routed untranslated — hop limit, the IPv6 route
//! table, ICMPv6 errors — and leave by a next hop resolved by NS the way ARP resolves IPv4's.
//! A port on a subnet with an RA mode answers Router Solicitations and advertises every 100 s.

use std::net::Ipv6Addr;

use super::*;
use crate::wire::Ipv6;

impl Sim<'_> {
    /// An IPv6 packet reaches router port `p` of router `r`.
    pub(super) fn router_in6(&mut self, r: RouterRef, p: PortRef, f: Frame, ip: Ipv6) {
        let port = self.topo.port(p);
        let icmp = match ip.l4 {
            L4::Icmp { typ, .. } if ip.proto == wire::ipv6::IPPROTO_ICMPV6 => Some(typ),
            _ => None,
        };
        match icmp {
            Some(icmpv6::NEIGHBOR_SOLICIT) => return self.router_ns(p, &f, &ip),
            Some(icmpv6::NEIGHBOR_ADVERT) => return self.router_na(p, &f, &ip),
            Some(icmpv6::ROUTER_SOLICIT) => return self.router_rs(p, &f, &ip),
            _ => {}
        }
        if f.h.eth_dst != port.mac.0 {
            return self.drop(DropReason::NotForRouter);
        }
        let router = self.topo.router(r);
        if router.ports.iter().any(|&rp| self.topo.port(rp).has_ip6(ip.dst)) {
            if icmp == Some(icmpv6::ECHO_REQUEST) && ip.frag == wire::Frag::Whole {
                note!(self, "echo request to router IP {}: reply", ip.dst);
                self.uncacheable();
                self.res.handled = true;
                if let Some(Ok(reply)) = icmpv6::echo_reply(&f.buf, &ip, ip.dst, port.mac.0).map(Frame::parse) {
                    self.generated(|s| s.router_send(p, reply));
                }
                return;
            }
            return self.drop(DropReason::ToRouterUnhandled);
        }
        // Link-local addresses are never forwarded (RFC 4291 §2.5.6).
        if is_link_local(ip.src) || is_link_local(ip.dst) || ip.dst.is_multicast() {
            return self.drop(DropReason::NotForRouter);
        }
        if ip.hop_limit <= 1 {
            self.icmpv6_error(&f, p, icmpv6::TIME_EXCEEDED, 0);
            return self.drop(DropReason::TtlExceeded);
        }
        // §11: a fip64 at its gateway port is translated to IPv4 and routed as such.
        if let Some(fx) = self.topo.fip64_at(r, ip.dst).filter(|fx| fx.gw_port == p) {
            return self.fip64_in(r, p, &f, &ip, fx);
        }
        let Some(route) = router.routes6.lookup(ip.src, ip.dst) else {
            self.icmpv6_error(&f, p, icmpv6::DEST_UNREACH, icmpv6::UNREACH_NO_ROUTE);
            return self.drop(DropReason::NoRoute);
        };
        let (outport, next_hop) = (route.port, route.via.unwrap_or(ip.dst));
        note!(self, "route {} via {} out port {}", route.destination, next_hop, self.topo.port(outport).id);
        // §10.2: the firewall, after routing (IPv6 has no NAT before it).
        if let Err(reason) = firewall::filter(self, r, p, &f, &f) {
            return self.drop(reason);
        }
        let mut f = f;
        f.dec_hop_limit();
        self.router_out6(outport, next_hop, f);
    }

    /// Resolve the next hop's MAC and send out of `outport`: a port of the snapshot is known,
    /// anything else is asked by NS, with ARP's queue, retries and give-up (§10.2, §6.4).
    pub(super) fn router_out6(&mut self, outport: PortRef, next_hop: Ipv6Addr, mut f: Frame) {
        let port = self.topo.port(outport);
        if !port.admin_up {
            return self.drop(DropReason::PortDown);
        }
        let known = self.topo.network(port.network).nd_answers.get(&next_hop).copied();
        match known.or_else(|| self.learned_arp(ArpScope::RouterPort(outport), next_hop)) {
            Some(mac) => {
                f.set_eth(port.mac.0, mac.0);
                self.router_send(outport, f);
            }
            None => {
                f.set_eth(port.mac.0, [0; 6]);
                let src = port.ips6.iter().find(|i| i.subnet.contains(&next_hop)).map_or(port.link_local, |i| i.addr);
                let request = icmpv6::ns(port.mac.0, src, next_hop);
                let egress = match self.ifs.of_port(outport) {
                    Some(i) if port.host == Some(self.ifs.host) => Egress::Iface(i),
                    _ => Egress::RouterPort(outport),
                };
                self.queue(ArpScope::RouterPort(outport), next_hop, f.buf, egress, request);
            }
        }
    }

    /// An ICMPv6 error about `orig` from the ingress port's first global IPv6 address, else its
    /// link-local, back the way it came. Never about an ICMPv6 error, a later fragment, or a
    /// packet from a multicast MAC or an unspecified source (RFC 4443 §2.4 (e)).
    pub(super) fn icmpv6_error(&mut self, orig: &Frame, inport: PortRef, typ: u8, code: u8) {
        let L3::Ipv6(ip) = &orig.h.l3 else { return };
        let about_error = ip.proto == wire::ipv6::IPPROTO_ICMPV6 && matches!(ip.l4, L4::Icmp { typ, .. } if icmpv6::is_error(typ));
        if about_error || ip.frag == wire::Frag::Later || wire::is_multicast(orig.h.eth_src) || ip.src.is_unspecified() {
            return;
        }
        let port = self.topo.port(inport);
        let src = port.ips6.first().map_or(port.link_local, |i| i.addr);
        self.uncacheable();
        note!(self, "ICMPv6 type {typ} code {code} from {src} to {}", ip.src);
        if let Some(Ok(err)) = icmpv6::error(&orig.buf, ip, typ, code, [0; 4], src, port.mac.0).map(Frame::parse) {
            self.generated(|s| s.router_send(inport, err));
        }
    }

    /// A Neighbor Solicitation at router port `p`: answered (R=1) when its target is one of the
    /// port's addresses; its sender, when on-link, is learned (RFC 4861 §7.2.3).
    fn router_ns(&mut self, p: PortRef, f: &Frame, ip: &Ipv6) {
        let port = self.topo.port(p);
        let target: Option<Ipv6Addr> = icmpv6::nd_target(&f.buf, ip);
        // The port's own addresses, and on a gateway port its router's fip64s (§11).
        let fip64 = |t: Ipv6Addr| port.router.and_then(|r| self.topo.fip64_at(r, t)).is_some_and(|fx| fx.gw_port == p);
        let Some(target) = target.filter(|t| port.has_ip6(*t) || fip64(*t)) else {
            return self.drop(DropReason::NdNotHandled);
        };
        self.uncacheable();
        self.res.handled = true;
        if !ip.src.is_unspecified() && self.on_link6(p, ip.src) {
            let mac = icmpv6::nd_option_mac(&f.buf, ip, icmpv6::OPT_SOURCE_LLADDR).unwrap_or(f.h.eth_src);
            self.learn_arp(ArpScope::RouterPort(p), ip.src, Mac(mac));
        }
        note!(self, "NS for {target}: router port {} answers", port.id);
        if let Some(Ok(na)) = icmpv6::na_for(&f.buf, ip, target, port.mac.0, true).map(Frame::parse) {
            self.generated(|s| s.router_send(p, na));
        }
    }

    /// A Neighbor Advertisement at router port `p`: its target, when on-link, is learned, which
    /// releases what waits for it.
    fn router_na(&mut self, p: PortRef, f: &Frame, ip: &Ipv6) {
        self.uncacheable();
        let target = icmpv6::nd_target(&f.buf, ip);
        let Some(target) = target.filter(|t| self.on_link6(p, *t)) else {
            return self.drop(DropReason::NdNotHandled);
        };
        self.res.handled = true;
        let mac = icmpv6::nd_option_mac(&f.buf, ip, icmpv6::OPT_TARGET_LLADDR).unwrap_or(f.h.eth_src);
        self.learn_arp(ArpScope::RouterPort(p), target, Mac(mac));
    }

    /// Whether `a` is a neighbour of router port `p`: link-local, or on one of its IPv6 subnets.
    fn on_link6(&self, p: PortRef, a: Ipv6Addr) -> bool {
        is_link_local(a) || self.topo.port(p).ips6.iter().any(|i| i.subnet.contains(&a))
    }
}

/// fe80::/10 (RFC 4291 §2.5.6).
fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// Router advertisements (SPEC §10.3).
impl Sim<'_> {
    /// A Router Solicitation at router port `p` from a local port: answered with a unicast RA
    /// when the port advertises.
    pub(super) fn router_rs(&mut self, p: PortRef, f: &Frame, ip: &Ipv6) {
        let port = self.topo.port(p);
        let Some(advert) = &port.advert else { return self.drop(DropReason::NotForRouter) };
        self.uncacheable();
        self.res.handled = true;
        let dst = if ip.src.is_unspecified() { icmpv6::ALL_NODES } else { ip.src };
        note!(self, "RS: router port {} advertises to {dst}", port.id);
        if let Ok(ra) = Frame::parse(icmpv6::ra(port.mac.0, port.link_local, f.h.eth_src, dst, advert)) {
            self.generated(|s| s.router_send(p, ra));
        }
    }

    /// The unsolicited advertisements (every 100 s): each advertising router port's RA to all
    /// nodes, on each port of its network bound on this host — never through a tunnel.
    pub fn router_adverts(&mut self) {
        let topo = self.topo;
        for (k, port) in topo.ports.iter().enumerate() {
            let Some(advert) = &port.advert else { continue };
            let Ok(ra) = Frame::parse(icmpv6::ra(port.mac.0, port.link_local, icmpv6::ALL_NODES_MAC, icmpv6::ALL_NODES, advert)) else {
                continue;
            };
            note!(self, "RA from router port {}", port.id);
            let me = PortRef(k as u32);
            for &vm in &topo.network(port.network).ports {
                let local = topo.port(vm).host == Some(self.ifs.host) && self.ifs.of_port(vm).is_some();
                if vm != me && topo.port(vm).router.is_none() && local {
                    self.generated(|s| s.deliver(port.network, Attach::Port(vm), ra.clone()));
                }
            }
        }
    }
}
