//! fip64 (SPEC §11): IPv6 clients reach an IPv4 VM through an IPv6 floating IP. IPv6 to the
//! fip64 at the router's gateway port is translated to IPv4 (the client's source becomes its
//! pool address, the fip64 the fixed IP) and routed as IPv4, firewall included (a reject
//! answers the client in IPv6, from the packet as it arrived); IPv4 from the
//! VM to a pool address bound on its router is translated back and routed as IPv6. ICMP errors
//! are translated with the packet they quote (`wire/xlate.rs`), each by the binding of the
//! client that packet was to or from.

use std::net::Ipv6Addr;

use rules::compile::Fip64;

use super::*;
use crate::ct::bindings::{self, Binding};
use crate::wire::xlate::{self, Addrs};
use crate::wire::{Ipv4, Ipv6};

impl Sim<'_> {
    /// IPv6 to fip64 `fx` at its gateway port `p` of router `r` (6 → 4).
    pub(super) fn fip64_in(&mut self, r: RouterRef, p: PortRef, f: &Frame, ip: &Ipv6, fx: &Fip64) {
        // An error is about a packet the fip64 sent to a client: that client's binding, which it
        // does not make, and the error is not a flow. Anything else is from the client, bound now
        // if it was not.
        let pool = if f.is_icmp_error() {
            self.uncacheable();
            let client = quoted_dst6(f, ip);
            let Some(pool) = client.and_then(|c| self.live_binding(r, c)) else {
                return self.drop(DropReason::Fip64Unbound);
            };
            pool
        } else {
            let (pool, hold) = {
                let mut bindings = self.tables.fip64();
                let b: &Binding = bindings.bind(r, ip.src, self.limits.fip64(), self.now);
                (b.pool, b.hold())
            };
            self.res.binding = Some(hold);
            pool
        };
        note!(self, "fip64 {}: {} as {pool} → {}", fx.id, ip.src, fx.fixed);
        let addrs = Addrs { src: pool, dst: fx.fixed, quoted: Some((fx.fixed, pool)) };
        let v4 = match xlate::frame_to_ipv4(&f.buf, addrs).and_then(Frame::parse) {
            Ok(v4) => v4,
            Err(reason) => return self.drop(reason),
        };
        self.route_arrived(r, p, f, v4);
    }

    /// IPv4 from `inport` of router `r` to a pool address (4 → 6): the firewall, TTL, then
    /// translated and routed as IPv6 (`orig` is the packet as it arrived).
    pub(super) fn fip64_out(&mut self, r: RouterRef, inport: PortRef, orig: &Frame, mut f: Frame, ip: Ipv4) {
        // An error is about a packet a client sent the VM: the quoted source is the pool address.
        let (pool, fixed) = match f.is_icmp_error() {
            true => match f.conn_key() {
                // The error's key is the quoted packet's, reversed: its destination is the pool.
                Some(k) => match (k.dst, k.src) {
                    (std::net::IpAddr::V4(pool), std::net::IpAddr::V4(fixed)) => (pool, fixed),
                    _ => return self.drop(DropReason::Fip64IcmpUntranslatable),
                },
                None => return self.drop(DropReason::Fip64IcmpUntranslatable),
            },
            false => (ip.dst, ip.src),
        };
        let bound = self.tables.fip64().by_pool(r, pool, self.now).map(|b| (b.client, b.hold()));
        let Some((client, hold)) = bound else {
            // A binding may come with the next client: this drop is not a flow.
            self.uncacheable();
            return self.drop(DropReason::Fip64Unbound);
        };
        let Some(fx) = self.topo.fip64_of(r, fixed) else {
            return self.drop(DropReason::Fip64NotFip64);
        };
        hold.touch(self.now);
        self.res.binding = Some(hold);
        note!(self, "fip64 {}: {} → {pool} as {} → {client}", fx.id, ip.src, fx.addr);
        if let Err(reason) = firewall::filter(self, r, inport, orig, &f) {
            return self.drop(reason);
        }
        f.dec_ttl();
        let addrs = Addrs { src: fx.addr, dst: client, quoted: Some((client, fx.addr)) };
        let v6 = match xlate::frame_to_ipv6(&f.buf, addrs).and_then(Frame::parse) {
            Ok(v6) => v6,
            Err(reason) => return self.drop(reason),
        };
        let Some(route) = self.topo.router(r).routes6.lookup(fx.addr, client) else {
            return self.drop(DropReason::NoRoute);
        };
        let (outport, next_hop) = (route.port, route.via.unwrap_or(client));
        note!(self, "route {} via {} out port {}", route.destination, next_hop, self.topo.port(outport).id);
        self.router_out6(outport, next_hop, v6);
    }

    /// The pool address of router `r`'s live binding of `client`, its use recorded.
    fn live_binding(&mut self, r: RouterRef, client: Ipv6Addr) -> Option<std::net::Ipv4Addr> {
        let mut bindings = self.tables.fip64();
        let b = bindings.by_client(r, client, self.now)?;
        b.hold().touch(self.now);
        Some(b.pool)
    }
}

/// The destination of the IPv6 packet an ICMPv6 error quotes.
fn quoted_dst6(f: &Frame, ip: &Ipv6) -> Option<Ipv6Addr> {
    let q = ip.l4_off() + 8 + wire::ipv6::field::DST.start;
    let b: [u8; 16] = f.buf.get(q..q + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(b))
}

/// Whether IPv4 to `dst` at router `r` is for a fip64 client: in the pool, on a router with
/// fip64s, and not on a subnet of the router's own (a tenant network in 100.64.0.0/10 is
/// routed as it always was).
pub(super) fn to_pool(topo: &Topology, r: RouterRef, dst: std::net::Ipv4Addr) -> bool {
    let router = topo.router(r);
    bindings::in_pool(dst)
        && !router.fip64s.is_empty()
        && !router.ports.iter().any(|&p| topo.port(p).ips.iter().any(|i| i.subnet.contains(&dst)))
}
