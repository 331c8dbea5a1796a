//! Router route tables (SPEC §6.2, §10.2), one per address family: connected subnets of the
//! router's ports, then extra routes (with MidoNet's `source`), then the default route via the
//! external subnet's `gateway_ip` on the gateway port.
//!
//! Lookup order: longest destination prefix first; among equal destinations the longest
//! matching `source` (no source = the whole family); on a full tie, the earlier kind in the list
//! above.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{Port, PortRef, RouterRef, Topology};
use crate::model;
use crate::validate::SnapshotError;

/// An address family as the route tables need it: IPv4 ([`Ipv4Addr`]) or IPv6 ([`Ipv6Addr`]).
pub trait Family: Copy + Eq + fmt::Debug + fmt::Display + Sized {
    type Net: Copy + Eq + fmt::Debug + fmt::Display;
    /// The whole family (0.0.0.0/0, ::/0).
    const ANY: Self::Net;
    fn contains(net: &Self::Net, a: &Self) -> bool;
    fn prefix_len(net: &Self::Net) -> u8;
    fn net(n: IpNet) -> Option<Self::Net>;
    fn addr(a: IpAddr) -> Option<Self>;
    /// The subnets of a port's fixed IPs of this family.
    fn subnets(p: &Port) -> Vec<Self::Net>;
}

impl Family for Ipv4Addr {
    type Net = Ipv4Net;
    const ANY: Ipv4Net = match Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0) {
        Ok(n) => n,
        Err(_) => panic!("0.0.0.0/0"),
    };
    fn contains(net: &Ipv4Net, a: &Ipv4Addr) -> bool {
        net.contains(a)
    }
    fn prefix_len(net: &Ipv4Net) -> u8 {
        net.prefix_len()
    }
    fn net(n: IpNet) -> Option<Ipv4Net> {
        match n {
            IpNet::V4(n) => Some(n.trunc()),
            IpNet::V6(_) => None,
        }
    }
    fn addr(a: IpAddr) -> Option<Ipv4Addr> {
        match a {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
    fn subnets(p: &Port) -> Vec<Ipv4Net> {
        p.ips.iter().map(|i| i.subnet).collect()
    }
}

impl Family for Ipv6Addr {
    type Net = Ipv6Net;
    const ANY: Ipv6Net = match Ipv6Net::new(Ipv6Addr::UNSPECIFIED, 0) {
        Ok(n) => n,
        Err(_) => panic!("::/0"),
    };
    fn contains(net: &Ipv6Net, a: &Ipv6Addr) -> bool {
        net.contains(a)
    }
    fn prefix_len(net: &Ipv6Net) -> u8 {
        net.prefix_len()
    }
    fn net(n: IpNet) -> Option<Ipv6Net> {
        match n {
            IpNet::V6(n) => Some(n.trunc()),
            IpNet::V4(_) => None,
        }
    }
    fn addr(a: IpAddr) -> Option<Ipv6Addr> {
        match a {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
    fn subnets(p: &Port) -> Vec<Ipv6Net> {
        p.ips6.iter().map(|i| i.subnet).collect()
    }
}

/// One route of a router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<A: Family = Ipv4Addr> {
    pub destination: A::Net,
    pub source: A::Net,
    /// The router port the packet leaves by.
    pub port: PortRef,
    /// The next hop; `None` for a connected subnet (the destination itself is the next hop).
    pub via: Option<A>,
}

/// Routes sorted in lookup order; the first that matches wins.
#[derive(Debug, Clone)]
pub struct RouteTable<A: Family = Ipv4Addr> {
    pub routes: Vec<Route<A>>,
}

impl<A: Family> Default for RouteTable<A> {
    fn default() -> Self {
        RouteTable { routes: Vec::new() }
    }
}

impl<A: Family> RouteTable<A> {
    /// The route for a packet from `src` to `dst`.
    pub fn lookup(&self, src: A, dst: A) -> Option<&Route<A>> {
        self.routes.iter().find(|r| A::contains(&r.destination, &dst) && A::contains(&r.source, &src))
    }
}

/// Router `me`'s table of family `A`.
pub(super) fn compile<A: Family>(
    t: &Topology,
    me: RouterRef,
    snap: &model::Snapshot,
    subnets_on: &std::collections::HashMap<&str, Vec<&model::Subnet>>,
) -> Result<RouteTable<A>, SnapshotError> {
    let router = t.router(me);
    let r = &snap.routers[me.idx()];
    let mut routes = Vec::new();
    for &p in &router.ports {
        for subnet in A::subnets(t.port(p)) {
            routes.push(Route { destination: subnet, source: A::ANY, port: p, via: None });
        }
    }
    let connected = routes.clone();
    for (i, er) in r.routes.iter().enumerate() {
        // Validation made the three of one family.
        let (Some(destination), Some(nexthop)) = (A::net(er.destination), A::addr(er.nexthop)) else { continue };
        let Some(c) = connected.iter().find(|c| A::contains(&c.destination, &nexthop)) else {
            return Err(SnapshotError::Resource {
                collection: "routers",
                id: r.id.clone(),
                attribute: format!("routes[{i}].nexthop"),
                message: format!("{nexthop} is not on a subnet of one of the router's ports"),
            });
        };
        let source = er.source.and_then(A::net).unwrap_or(A::ANY);
        routes.push(Route { destination, source, port: c.port, via: Some(nexthop) });
    }
    if let Some(gw) = router.gateway_port {
        let port = t.port(gw);
        let net_id = &t.network(port.network).id;
        let first = A::subnets(port).first().copied();
        let gateway = first
            .and_then(|sub| subnets_on.get(net_id.as_str())?.iter().find(|s| A::net(s.cidr) == Some(sub)))
            .and_then(|s| s.gateway_ip.and_then(A::addr));
        if let Some(g) = gateway {
            routes.push(Route { destination: A::ANY, source: A::ANY, port: gw, via: Some(g) });
        }
    }
    // A stable sort keeps connected < extra < default among full ties.
    routes.sort_by_key(|r| (std::cmp::Reverse(A::prefix_len(&r.destination)), std::cmp::Reverse(A::prefix_len(&r.source))));
    Ok(RouteTable { routes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    const ANY: Ipv4Net = <Ipv4Addr as Family>::ANY;

    #[test]
    fn longest_destination_then_longest_source() {
        let t: RouteTable = RouteTable {
            routes: vec![
                Route { destination: net("10.0.0.0/24"), source: net("192.168.1.0/24"), port: PortRef(1), via: None },
                Route { destination: net("10.0.0.0/24"), source: net("192.168.0.0/16"), port: PortRef(2), via: None },
                Route { destination: net("10.0.0.0/16"), source: ANY, port: PortRef(3), via: None },
                Route { destination: ANY, source: ANY, port: PortRef(4), via: None },
            ],
        };
        let p = |s: &str, d: &str| t.lookup(s.parse().unwrap(), d.parse().unwrap()).map(|r| r.port.0);
        assert_eq!(p("192.168.1.5", "10.0.0.1"), Some(1));
        assert_eq!(p("192.168.2.5", "10.0.0.1"), Some(2));
        assert_eq!(p("172.16.0.1", "10.0.0.1"), Some(3));
        assert_eq!(p("172.16.0.1", "8.8.8.8"), Some(4));
    }
}
