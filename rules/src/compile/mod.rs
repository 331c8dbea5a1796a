//! Compilation of a validated snapshot into the tables the fast path reads.
//!
//! The [`Topology`] is immutable once built: resources are held in vectors and referenced by
//! small typed indices ([`PortRef`], [`NetRef`], …), names are resolved here once, and every
//! lookup the simulation makes per packet is a vector index or one hash lookup. It is shared
//! between workers behind an `Arc` and replaced whole when a new snapshot arrives.

pub mod firewall;
pub mod nat;
pub mod qos;
pub mod routes;
pub mod vxlan;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::model::{Mac, NetworkType, Snapshot};
use crate::validate::{bound_interface, SnapshotError};

pub use nat::{NatRules, PostRule, PreRule};
pub use routes::{Family, Route, RouteTable};
pub use vxlan::{LocalVtep, Tunnel, TunnelGroup, VxlanTables};

macro_rules! index_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);
        impl $name {
            /// The position in its table.
            #[inline]
            pub fn idx(self) -> usize {
                self.0 as usize
            }
        }
    };
}

index_type!(
    /// A port of the topology.
    PortRef
);
index_type!(
    /// A network of the topology.
    NetRef
);
index_type!(
    /// A router of the topology.
    RouterRef
);
index_type!(
    /// A floating IP of the topology.
    FipRef
);
index_type!(
    /// A host of the topology.
    HostRef
);

/// An address of a port, with the subnet it lies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortIp {
    pub addr: Ipv4Addr,
    /// The subnet, host bits cleared.
    pub subnet: Ipv4Net,
}

/// What a router port advertises (SPEC §10.3): its IPv6 subnets that have an `ipv6_ra_mode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// M: a `dhcpv6-stateful` subnet is advertised.
    pub managed: bool,
    /// O: a `dhcpv6-stateless` one is.
    pub other: bool,
    /// Each prefix, and whether hosts configure addresses from it (A: `slaac`,
    /// `dhcpv6-stateless`).
    pub prefixes: Vec<(Ipv6Net, bool)>,
}

/// An IPv6 address of a port, with the subnet it lies in (SPEC §10.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortIp6 {
    pub addr: Ipv6Addr,
    /// The subnet, host bits cleared.
    pub subnet: Ipv6Net,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub id: String,
    pub tunnel_ip: Ipv4Addr,
    pub underlay_interface: Option<String>,
    pub underlay_gateway: Option<Ipv4Addr>,
}

#[derive(Debug, Clone)]
pub struct Network {
    pub id: String,
    pub kind: NetworkType,
    pub vni: Option<u32>,
    pub admin_up: bool,
    /// Every port on the network, in snapshot order.
    pub ports: Vec<PortRef>,
    /// The MACs of its ports (SPEC §5.3: known from the snapshot).
    pub mac_to_port: HashMap<Mac, PortRef>,
    /// ARP suppression (§5.4): addresses the network answers for, and with which MAC.
    pub arp_answers: HashMap<Ipv4Addr, Mac>,
    /// ND suppression (§10.1): IPv6 addresses the network answers Neighbor Solicitations for —
    /// its ports' fixed IPv6 and link-local addresses — and with which MAC.
    pub nd_answers: HashMap<Ipv6Addr, Mac>,
    /// Hosts with a bound port on the network: where its floods are tunnelled (§5.3).
    pub hosts: Vec<HostRef>,
}

#[derive(Debug, Clone)]
pub struct Port {
    pub id: String,
    pub network: NetRef,
    pub mac: Mac,
    /// Its IPv4 fixed IPs.
    pub ips: Vec<PortIp>,
    /// Its IPv6 fixed IPs (SPEC §10.2).
    pub ips6: Vec<PortIp6>,
    /// Its link-local address: fe80::/64 with the modified EUI-64 of its MAC (RFC 4291 app. A).
    pub link_local: Ipv6Addr,
    /// The router, for router ports.
    pub router: Option<RouterRef>,
    pub host: Option<HostRef>,
    /// The interface named by `binding:profile`, when the port is bound to one.
    pub interface: Option<String>,
    pub admin_up: bool,
    /// The effective setting: the port's, else its network's.
    pub port_security: bool,
    pub allowed_pairs: Vec<(Ipv4Net, Option<Mac>)>,
    pub allowed_pairs6: Vec<(Ipv6Net, Option<Mac>)>,
    /// Router ports: the router advertisements they send, when a subnet of theirs asks for them.
    pub advert: Option<Advert>,
    /// Floating IPs this router port owns (answers ARP for).
    pub owned_fips: Vec<FipRef>,
}

impl Port {
    /// The first fixed IP, the address a router port speaks from.
    pub fn first_ip(&self) -> Option<Ipv4Addr> {
        self.ips.first().map(|i| i.addr)
    }

    pub fn has_ip(&self, ip: Ipv4Addr) -> bool {
        self.ips.iter().any(|i| i.addr == ip)
    }

    /// Whether `ip` is one of its IPv6 addresses, its link-local included.
    pub fn has_ip6(&self, ip: Ipv6Addr) -> bool {
        ip == self.link_local || self.ips6.iter().any(|i| i.addr == ip)
    }
}

/// The advertisement of a router port with IPv6 addresses `ips6` on a network whose subnets are
/// `subnets`: those that have an `ipv6_ra_mode`, in the port's order; none when no subnet has
/// one.
fn advert(subnets: &[&crate::model::Subnet], ips6: &[PortIp6]) -> Option<Advert> {
    use crate::model::Ipv6Mode;
    let mut a = Advert { managed: false, other: false, prefixes: Vec::new() };
    for ip in ips6 {
        let subnet = subnets.iter().find(|s| s.cidr6() == Some(ip.subnet));
        let Some(mode) = subnet.and_then(|s| s.ipv6_ra_mode) else { continue };
        if a.prefixes.iter().any(|(n, _)| *n == ip.subnet) {
            continue;
        }
        a.managed |= mode == Ipv6Mode::Dhcpv6Stateful;
        a.other |= mode == Ipv6Mode::Dhcpv6Stateless;
        a.prefixes.push((ip.subnet, mode != Ipv6Mode::Dhcpv6Stateful));
    }
    (!a.prefixes.is_empty()).then_some(a)
}

/// The modified EUI-64 link-local address of a MAC (RFC 4291 appendix A, RFC 4862 §5.3).
pub fn link_local(mac: Mac) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac.0;
    Ipv6Addr::from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, a ^ 0x02, b, c, 0xff, 0xfe, d, e, f])
}

#[derive(Debug, Clone)]
pub struct Router {
    pub id: String,
    pub ports: Vec<PortRef>,
    /// The port on `external_gateway_info.network_id`.
    pub gateway_port: Option<PortRef>,
    /// The gateway port's first fixed IP.
    pub gw_ip: Option<Ipv4Addr>,
    /// Default SNAT: a gateway and `enable_snat` not false.
    pub default_snat: bool,
    pub routes: RouteTable,
    /// The IPv6 routes (SPEC §10.2).
    pub routes6: RouteTable<Ipv6Addr>,
    pub nat: NatRules,
    /// Its fip64s, as indices into `Topology::fip64s`.
    pub fip64s: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct FloatingIp {
    pub id: String,
    pub addr: Ipv4Addr,
    pub fixed: Ipv4Addr,
    pub router: RouterRef,
    /// The router port on the floating network that owns the address.
    pub fip_port: PortRef,
    /// Whether `fip_port` is the router's gateway port (otherwise a router interface).
    pub on_gateway: bool,
}

/// A fip64 (SPEC §11): an IPv6 floating IP that stands for an IPv4 fixed IP, on its router's
/// gateway port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fip64 {
    pub id: String,
    pub addr: Ipv6Addr,
    pub fixed: Ipv4Addr,
    pub router: RouterRef,
    pub gw_port: PortRef,
}

/// The compiled snapshot.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub version: u64,
    pub hosts: Vec<Host>,
    pub networks: Vec<Network>,
    pub ports: Vec<Port>,
    pub routers: Vec<Router>,
    pub fips: Vec<FloatingIp>,
    pub fip64s: Vec<Fip64>,
    pub host_by_id: HashMap<String, HostRef>,
    pub port_by_id: HashMap<String, PortRef>,
    /// VTEPs, remote MACs and the VNI table (SPEC §7).
    pub vxlan: VxlanTables,
    /// Firewalls and the routers they apply to (SPEC §6.2), in snapshot order.
    pub firewalls: Vec<(RouterRef, firewall::Firewall)>,
    /// QoS by port (SPEC §8).
    pub qos: Vec<qos::PortQos>,
    /// The snapshot as loaded, for the collections later stages compile themselves.
    pub snapshot: Snapshot,
}

impl Topology {
    #[inline]
    pub fn port(&self, p: PortRef) -> &Port {
        &self.ports[p.idx()]
    }
    #[inline]
    pub fn network(&self, n: NetRef) -> &Network {
        &self.networks[n.idx()]
    }
    #[inline]
    pub fn router(&self, r: RouterRef) -> &Router {
        &self.routers[r.idx()]
    }
    #[inline]
    pub fn host(&self, h: HostRef) -> &Host {
        &self.hosts[h.idx()]
    }
    #[inline]
    pub fn fip(&self, f: FipRef) -> &FloatingIp {
        &self.fips[f.idx()]
    }

    /// Router `r`'s fip64 at `addr`.
    pub fn fip64_at(&self, r: RouterRef, addr: Ipv6Addr) -> Option<&Fip64> {
        self.router(r).fip64s.iter().map(|&i| &self.fip64s[i]).find(|f| f.addr == addr)
    }

    /// Router `r`'s fip64 for the fixed IP `fixed` (there is at most one).
    pub fn fip64_of(&self, r: RouterRef, fixed: Ipv4Addr) -> Option<&Fip64> {
        self.router(r).fip64s.iter().map(|&i| &self.fip64s[i]).find(|f| f.fixed == fixed)
    }

    /// Counts per collection, for `snapshot check` and the replay banner.
    pub fn summary(&self) -> String {
        let s = &self.snapshot;
        format!(
            "version {}: {} hosts, {} networks, {} subnets, {} ports, {} routers, {} floatingips, {} qos_policies, \
             {} firewall_rules, {} firewall_policies, {} firewalls, {} logging_resources, {} gateway_devices, \
             {} gateway_device_peerings, {} l2_gateways, {} l2_gateway_connections, {} remote_gateways, \
             {} remote_gateway_connections, {} remote_macs",
            s.version,
            s.hosts.len(),
            s.networks.len(),
            s.subnets.len(),
            s.ports.len(),
            s.routers.len(),
            s.floatingips.len(),
            s.qos_policies.len(),
            s.firewall_rules.len(),
            s.firewall_policies.len(),
            s.firewalls.len(),
            s.logging_resources.len(),
            s.gateway_devices.len(),
            s.gateway_device_peerings.len(),
            s.l2_gateways.len(),
            s.l2_gateway_connections.len(),
            s.remote_gateways.len(),
            s.remote_gateway_connections.len(),
            s.remote_macs.len(),
        )
    }

    /// Compile a validated snapshot.
    pub fn compile(snap: crate::validate::Validated) -> Result<Topology, SnapshotError> {
        let mut t = Topology { version: snap.version, ..Default::default() };

        for (i, h) in snap.hosts.iter().enumerate() {
            let r = HostRef(i as u32);
            t.host_by_id.insert(h.id.clone(), r);
            t.hosts.push(Host {
                id: h.id.clone(),
                tunnel_ip: h.tunnel_ip,
                underlay_interface: h.underlay_interface.clone(),
                underlay_gateway: h.underlay_gateway,
            });
        }

        let mut net_by_id = HashMap::new();
        for (i, n) in snap.networks.iter().enumerate() {
            let r = NetRef(i as u32);
            net_by_id.insert(n.id.as_str(), r);
            t.networks.push(Network {
                id: n.id.clone(),
                kind: n.network_type,
                vni: n.segmentation_id.map(|v| v.get()),
                admin_up: n.admin_state_up,
                ports: Vec::new(),
                mac_to_port: HashMap::new(),
                arp_answers: HashMap::new(),
                nd_answers: HashMap::new(),
                hosts: Vec::new(),
            });
        }
        let router_by_id: HashMap<&str, RouterRef> =
            snap.routers.iter().enumerate().map(|(i, r)| (r.id.as_str(), RouterRef(i as u32))).collect();
        let subnet_cidr: HashMap<&str, IpNet> = snap.subnets.iter().map(|s| (s.id.as_str(), s.cidr.trunc())).collect();
        let subnets_on = snap.subnets_on();
        let on_network = |net: &str| subnets_on.get(net).map_or(&[][..], Vec::as_slice);

        for (i, p) in snap.ports.iter().enumerate() {
            let r = PortRef(i as u32);
            let net = resolve(&net_by_id, &p.network_id, "ports", &p.id, "network_id")?;
            let net_security = snap.networks[net.idx()].port_security_enabled;
            // Each fixed IP with its subnet: the one it names, else the one of its network it
            // lies in (validation makes sure there is one).
            let with_subnet = |f: &crate::model::FixedIp| {
                let subnet = match &f.subnet_id {
                    Some(s) => subnet_cidr.get(s.as_str()).copied(),
                    None => on_network(&p.network_id).iter().map(|s| s.cidr.trunc()).find(|c| c.contains(&f.ip_address)),
                };
                (f.ip_address, subnet.unwrap_or_else(|| IpNet::from(f.ip_address)))
            };
            let mut ips = Vec::new();
            let mut ips6 = Vec::new();
            for (addr, subnet) in p.fixed_ips.iter().map(with_subnet) {
                match (addr, subnet) {
                    (std::net::IpAddr::V4(addr), IpNet::V4(subnet)) => ips.push(PortIp { addr, subnet }),
                    (std::net::IpAddr::V6(addr), IpNet::V6(subnet)) => ips6.push(PortIp6 { addr, subnet }),
                    _ => {}
                }
            }
            let host = p.binding_host_id.as_deref().and_then(|h| t.host_by_id.get(h).copied());
            t.port_by_id.insert(p.id.clone(), r);
            t.ports.push(Port {
                id: p.id.clone(),
                network: net,
                mac: p.mac_address,
                advert: if p.is_router_port() { advert(on_network(&p.network_id), &ips6) } else { None },
                ips,
                ips6,
                link_local: link_local(p.mac_address),
                router: if p.is_router_port() { Some(resolve(&router_by_id, &p.device_id, "ports", &p.id, "device_id")?) } else { None },
                host,
                interface: bound_interface(p)?.map(str::to_string),
                admin_up: p.admin_state_up,
                port_security: p.port_security_enabled.unwrap_or(net_security),
                allowed_pairs: p.allowed_address_pairs.iter().filter_map(|a| Some((a.ip_address.v4()?, a.mac_address))).collect(),
                allowed_pairs6: p.allowed_address_pairs.iter().filter_map(|a| Some((a.ip_address.v6()?, a.mac_address))).collect(),
                owned_fips: Vec::new(),
            });
            let n = &mut t.networks[net.idx()];
            n.ports.push(r);
            n.mac_to_port.insert(p.mac_address, r);
            if let Some(h) = host {
                if !n.hosts.contains(&h) {
                    n.hosts.push(h);
                }
            }
        }

        // Each router's ports, in the snapshot's order, found in one pass (a scan of every port per
        // router made compilation quadratic in the snapshot's size).
        let mut ports_of: Vec<Vec<PortRef>> = vec![Vec::new(); snap.routers.len()];
        for (j, p) in t.ports.iter().enumerate() {
            if let Some(list) = p.router.and_then(|r| ports_of.get_mut(r.idx())) {
                list.push(PortRef(j as u32));
            }
        }
        for (i, r) in snap.routers.iter().enumerate() {
            let ports = std::mem::take(&mut ports_of[i]);
            let gw_net = match &r.external_gateway_info {
                Some(gw) => Some(resolve(&net_by_id, &gw.network_id, "routers", &r.id, "external_gateway_info.network_id")?),
                None => None,
            };
            let gateway_port = gw_net.and_then(|net| ports.iter().copied().find(|p| t.ports[p.idx()].network == net));
            let gw_ip = gateway_port.and_then(|p| t.ports[p.idx()].first_ip());
            let default_snat = gateway_port.is_some() && r.external_gateway_info.as_ref().is_some_and(|g| g.enable_snat);
            t.routers.push(Router {
                id: r.id.clone(),
                ports,
                gateway_port,
                gw_ip,
                default_snat,
                routes: RouteTable::default(),
                routes6: RouteTable::default(),
                nat: NatRules::default(),
                fip64s: Vec::new(),
            });
        }

        // Floating IPs: only associated ones act. The fip port is the router's port on the
        // floating network (the gateway port or a router interface).
        for f in &snap.floatingips {
            let Some(port_id) = &f.port_id else { continue };
            let Some(router_id) = &f.router_id else {
                continue;
            };
            let router = resolve(&router_by_id, router_id, "floatingips", &f.id, "router_id")?;
            let fnet = resolve(&net_by_id, &f.floating_network_id, "floatingips", &f.id, "floating_network_id")?;
            let fixed_port = &snap.ports[resolve(&t.port_by_id, port_id, "floatingips", &f.id, "port_id")?.idx()];
            let fixed = match (f.fixed_ip_address, fixed_port.fixed_ips.iter().find_map(|x| x.ipv4())) {
                (Some(ip), _) => ip,
                (None, Some(first)) => first,
                (None, None) => {
                    return Err(SnapshotError::new("floatingips", &f.id, "port_id", format!("port {port_id} has no IPv4 fixed IP")))
                }
            };
            let fip_port = t.routers[router.idx()].ports.iter().copied().find(|p| t.ports[p.idx()].network == fnet).ok_or_else(|| {
                SnapshotError::Resource {
                    collection: "floatingips",
                    id: f.id.clone(),
                    attribute: "router_id".into(),
                    message: format!("router {router_id} has no port on {}", f.floating_network_id),
                }
            })?;
            let on_gateway = t.routers[router.idx()].gateway_port == Some(fip_port);
            match f.floating_ip_address {
                IpAddr::V4(addr) => {
                    let r = FipRef(t.fips.len() as u32);
                    t.fips.push(FloatingIp { id: f.id.clone(), addr, fixed, router, fip_port, on_gateway });
                    t.ports[fip_port.idx()].owned_fips.push(r);
                }
                IpAddr::V6(addr) => {
                    if !on_gateway {
                        let msg = format!("router {router_id} has no gateway port on {}, which a fip64 needs", f.floating_network_id);
                        return Err(SnapshotError::new("floatingips", &f.id, "router_id", msg));
                    }
                    if let Some(other) = t.routers[router.idx()].fip64s.iter().map(|&i| &t.fip64s[i]).find(|o| o.fixed == fixed) {
                        let msg = format!("{fixed} already has fip64 {}", other.id);
                        return Err(SnapshotError::new("floatingips", &f.id, "fixed_ip_address", msg));
                    }
                    t.routers[router.idx()].fip64s.push(t.fip64s.len());
                    t.fip64s.push(Fip64 { id: f.id.clone(), addr, fixed, router, gw_port: fip_port });
                }
            }
        }

        // ARP suppression answers (§5.4): fixed IPs of the network's ports, floating IPs owned by
        // its router ports, and remote MACs' addresses; ND's (§10.1): their IPv6 addresses.
        for n in 0..t.networks.len() {
            let mut answers = HashMap::new();
            let mut nd = HashMap::new();
            for p in &t.networks[n].ports {
                let port = &t.ports[p.idx()];
                for ip in &port.ips {
                    answers.entry(ip.addr).or_insert(port.mac);
                }
                for f in &port.owned_fips {
                    answers.entry(t.fips[f.idx()].addr).or_insert(port.mac);
                }
                nd.entry(port.link_local).or_insert(port.mac);
                for ip in &port.ips6 {
                    nd.entry(ip.addr).or_insert(port.mac);
                }
            }
            // §11: a fip64 is answered by its gateway port.
            for f in t.fip64s.iter().filter(|f| t.ports[f.gw_port.idx()].network.idx() == n) {
                nd.entry(f.addr).or_insert(t.ports[f.gw_port.idx()].mac);
            }
            t.networks[n].arp_answers = answers;
            t.networks[n].nd_answers = nd;
        }
        let rgw_conn_net: HashMap<&str, &str> =
            snap.remote_gateway_connections.iter().map(|c| (c.id.as_str(), c.network_id.as_str())).collect();
        for m in &snap.remote_macs {
            if let Some(ip) = m.ip {
                let conn_net = resolve(&rgw_conn_net, &m.rgw_connection, "remote_macs", &m.id, "rgw_connection")?;
                let net = resolve(&net_by_id, conn_net, "remote_macs", &m.id, "rgw_connection")?;
                t.networks[net.idx()].arp_answers.entry(ip).or_insert(m.mac);
            }
        }

        for i in 0..t.routers.len() {
            let routes = routes::compile(&t, RouterRef(i as u32), &snap, &subnets_on)?;
            t.routers[i].routes6 = routes::compile(&t, RouterRef(i as u32), &snap, &subnets_on)?;
            let nat = nat::compile(&t, RouterRef(i as u32));
            t.routers[i].routes = routes;
            t.routers[i].nat = nat;
        }

        t.vxlan = vxlan::compile(&t, &snap)?;
        t.firewalls = firewall::compile(&t, &snap);
        t.qos = qos::compile(&t, &snap);
        t.snapshot = snap.into_snapshot();
        Ok(t)
    }
}

/// A reference that validation resolved, looked up without panicking: a miss is a defect in
/// validation, reported as the one-line error validation would have given.
fn resolve<K: std::borrow::Borrow<str> + std::hash::Hash + Eq, V: Copy>(
    map: &HashMap<K, V>,
    target: &str,
    collection: &'static str,
    id: &str,
    attribute: &str,
) -> Result<V, SnapshotError> {
    map.get(target).copied().ok_or_else(|| SnapshotError::new(collection, id, attribute, format!("no such resource {target:?}")))
}

/// Load, validate and compile a snapshot file; errors are the one line operators see.
pub fn load_topology(path: &std::path::Path) -> Result<Topology, crate::validate::FileError> {
    let snap = crate::validate::load_file(path)?;
    Topology::compile(snap).map_err(|error| crate::validate::FileError { file: path.display().to_string(), error })
}

/// Validate and compile a snapshot document from `origin` (etcd's servers, prefix and
/// revision); errors are the one line operators see, naming the origin.
pub fn topology_of(doc: &serde_json::Value, origin: &str) -> Result<Topology, crate::validate::FileError> {
    let fail = |error| crate::validate::FileError { file: origin.to_string(), error };
    Topology::compile(crate::validate::load_value(doc).map_err(fail)?).map_err(fail)
}
