//! Router route tables (SPEC §6.2): connected subnets of the router's ports, then extra
//! routes (with MidoNet's `source`), then the default route via the external subnet's
//! `gateway_ip` on the gateway port.
//!
//! Lookup order: longest destination prefix first; among equal destinations the longest
//! matching `source` (no source = 0.0.0.0/0); on a full tie, the earlier kind in the list above.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{PortRef, RouterRef, Topology};
use crate::model;
use crate::validate::SnapshotError;

/// One route of a router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Ipv4Net,
    pub source: Ipv4Net,
    /// The router port the packet leaves by.
    pub port: PortRef,
    /// The next hop; `None` for a connected subnet (the destination itself is the next hop).
    pub via: Option<Ipv4Addr>,
}

/// Routes sorted in lookup order; the first that matches wins.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub routes: Vec<Route>,
}

impl RouteTable {
    /// The route for a packet from `src` to `dst`.
    pub fn lookup(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Option<&Route> {
        self.routes.iter().find(|r| r.destination.contains(&dst) && r.source.contains(&src))
    }
}

const ANY: Ipv4Net = match Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0) {
    Ok(n) => n,
    Err(_) => panic!("0.0.0.0/0"),
};

pub(super) fn compile(t: &Topology, me: RouterRef, snap: &model::Snapshot) -> Result<RouteTable, SnapshotError> {
    let router = t.router(me);
    let r = &snap.routers[me.idx()];
    let mut routes = Vec::new();
    for &p in &router.ports {
        for ip in &t.port(p).ips {
            routes.push(Route { destination: ip.subnet, source: ANY, port: p, via: None });
        }
    }
    let connected = routes.clone();
    for (i, er) in r.routes.iter().enumerate() {
        let Some(c) = connected.iter().find(|c| c.destination.contains(&er.nexthop)) else {
            return Err(SnapshotError::Resource {
                collection: "routers",
                id: r.id.clone(),
                attribute: format!("routes[{i}].nexthop"),
                message: format!("{} is not on a subnet of one of the router's ports", er.nexthop),
            });
        };
        routes.push(Route {
            destination: er.destination.trunc(),
            source: er.source.map(|s| s.trunc()).unwrap_or(ANY),
            port: c.port,
            via: Some(er.nexthop),
        });
    }
    if let Some(gw) = router.gateway_port {
        let port = t.port(gw);
        let net_id = &t.network(port.network).id;
        let gateway = port
            .ips
            .first()
            .and_then(|ip| snap.subnets.iter().find(|s| &s.network_id == net_id && s.cidr4() == Some(ip.subnet)))
            .and_then(|s| s.gateway4());
        if let Some(g) = gateway {
            routes.push(Route { destination: ANY, source: ANY, port: gw, via: Some(g) });
        }
    }
    // A stable sort keeps connected < extra < default among full ties.
    routes.sort_by_key(|r| (std::cmp::Reverse(r.destination.prefix_len()), std::cmp::Reverse(r.source.prefix_len())));
    Ok(RouteTable { routes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn longest_destination_then_longest_source() {
        let t = RouteTable {
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
