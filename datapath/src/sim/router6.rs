//! A router's IPv6 side (SPEC §10.2): a router port answers Neighbor Solicitations for its
//! addresses (link-local and fixed IPv6) and echo requests to them.

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
        if icmp == Some(icmpv6::NEIGHBOR_SOLICIT) {
            return self.router_ns(p, &f, &ip);
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
        // Forwarding IPv6 (§10.2 routing) is not built yet.
        self.drop(DropReason::NotForRouter)
    }

    /// A Neighbor Solicitation at router port `p`: answered (R=1) when its target is one of the
    /// port's addresses.
    fn router_ns(&mut self, p: PortRef, f: &Frame, ip: &Ipv6) {
        let port = self.topo.port(p);
        let target: Option<Ipv6Addr> = icmpv6::nd_target(&f.buf, ip);
        let Some(target) = target.filter(|t| port.has_ip6(*t)) else {
            return self.drop(DropReason::NdNotHandled);
        };
        note!(self, "NS for {target}: router port {} answers", port.id);
        self.uncacheable();
        self.res.handled = true;
        if let Some(Ok(na)) = icmpv6::na_for(&f.buf, ip, target, port.mac.0, true).map(Frame::parse) {
            self.generated(|s| s.router_send(p, na));
        }
    }
}
