//! The rules of SPEC §3, one function per group of collections: every id unique ([`ids`]),
//! then networks and hosts, subnets, ports, routers with QoS and floating IPs, firewalls, and
//! gateways. Each returns the first problem as the one line [`SnapshotError`] gives.

use super::*;

/// Every rule of SPEC §3.
pub(super) fn validate(s: &Snapshot) -> Result<(), SnapshotError> {
    let ids = ids(s)?;
    networks_and_hosts(s, &ids)?;
    subnets(s, &ids)?;
    ports(s, &ids)?;
    routers_and_floating_ips(s, &ids)?;
    firewalls(s, &ids)?;
    gateways(s, &ids)?;
    Ok(())
}

/// The ids of every collection and the resources by id, for the groups' references.
struct Ids<'a> {
    hosts: HashSet<&'a str>,
    networks: HashSet<&'a str>,
    routers: HashSet<&'a str>,
    qos: HashSet<&'a str>,
    fw_rules: HashSet<&'a str>,
    fw_policies: HashSet<&'a str>,
    firewalls: HashSet<&'a str>,
    devices: HashSet<&'a str>,
    l2gws: HashSet<&'a str>,
    rgws: HashSet<&'a str>,
    rgw_conns: HashSet<&'a str>,
    network_by_id: HashMap<&'a str, &'a Network>,
    subnet_by_id: HashMap<&'a str, &'a Subnet>,
    port_by_id: HashMap<&'a str, &'a Port>,
    /// Each network's subnets ([`Snapshot::subnets_on`]).
    subnets_on: HashMap<&'a str, Vec<&'a Subnet>>,
}

/// Every id unique within its collection; the sets and maps the groups look references up in.
fn ids(s: &Snapshot) -> Result<Ids<'_>, SnapshotError> {
    let hosts = unique_ids("hosts", s.hosts.iter().map(|x| x.id.as_str()))?;
    let networks = unique_ids("networks", s.networks.iter().map(|x| x.id.as_str()))?;
    unique_ids("subnets", s.subnets.iter().map(|x| x.id.as_str()))?;
    unique_ids("ports", s.ports.iter().map(|x| x.id.as_str()))?;
    let routers = unique_ids("routers", s.routers.iter().map(|x| x.id.as_str()))?;
    unique_ids("floatingips", s.floatingips.iter().map(|x| x.id.as_str()))?;
    let qos = unique_ids("qos_policies", s.qos_policies.iter().map(|x| x.id.as_str()))?;
    let fw_rules = unique_ids("firewall_rules", s.firewall_rules.iter().map(|x| x.id.as_str()))?;
    let fw_policies = unique_ids("firewall_policies", s.firewall_policies.iter().map(|x| x.id.as_str()))?;
    let firewalls = unique_ids("firewalls", s.firewalls.iter().map(|x| x.id.as_str()))?;
    unique_ids("logging_resources", s.logging_resources.iter().map(|x| x.id.as_str()))?;
    let devices = unique_ids("gateway_devices", s.gateway_devices.iter().map(|x| x.id.as_str()))?;
    unique_ids("gateway_device_peerings", s.gateway_device_peerings.iter().map(|x| x.id.as_str()))?;
    let l2gws = unique_ids("l2_gateways", s.l2_gateways.iter().map(|x| x.id.as_str()))?;
    unique_ids("l2_gateway_connections", s.l2_gateway_connections.iter().map(|x| x.id.as_str()))?;
    let rgws = unique_ids("remote_gateways", s.remote_gateways.iter().map(|x| x.id.as_str()))?;
    let rgw_conns = unique_ids("remote_gateway_connections", s.remote_gateway_connections.iter().map(|x| x.id.as_str()))?;
    unique_ids("remote_macs", s.remote_macs.iter().map(|x| x.id.as_str()))?;

    let network_by_id = s.networks.iter().map(|n| (n.id.as_str(), n)).collect();
    let subnet_by_id = s.subnets.iter().map(|n| (n.id.as_str(), n)).collect();
    let port_by_id = s.ports.iter().map(|n| (n.id.as_str(), n)).collect();
    let subnets_on = s.subnets_on();

    Ok(Ids {
        hosts,
        networks,
        routers,
        qos,
        fw_rules,
        fw_policies,
        firewalls,
        devices,
        l2gws,
        rgws,
        rgw_conns,
        network_by_id,
        subnet_by_id,
        port_by_id,
        subnets_on,
    })
}

/// Networks and hosts: a VNI names one network, a host has a unicast tunnel IP of its own.
fn networks_and_hosts(s: &Snapshot, ids: &Ids) -> Result<(), SnapshotError> {
    let Ids { qos, .. } = ids;
    // Networks: uplinks carry no segmentation id; a VNI names one network only.
    let mut vnis: HashMap<u32, &str> = HashMap::new();
    for n in &s.networks {
        if let Some(q) = &n.qos_policy_id {
            must_exist(qos, q, "networks", &n.id, "qos_policy_id", "qos policy")?;
        }
        match (n.network_type, n.segmentation_id) {
            (NetworkType::Local, Some(_)) => {
                return Err(SnapshotError::new(
                    "networks",
                    &n.id,
                    "provider:segmentation_id",
                    "a local (uplink) network has no segmentation id",
                ))
            }
            (_, Some(vni)) => {
                if let Some(other) = vnis.insert(vni.get(), &n.id) {
                    return Err(SnapshotError::new(
                        "networks",
                        &n.id,
                        "provider:segmentation_id",
                        format!("VNI {vni} is already the VNI of network {other}"),
                    ));
                }
            }
            _ => {}
        }
    }

    // Hosts: a unicast tunnel IP of their own.
    let mut tunnel_ips: HashMap<std::net::Ipv4Addr, &str> = HashMap::new();
    for h in &s.hosts {
        let ip = h.tunnel_ip;
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
            return Err(SnapshotError::new("hosts", &h.id, "tunnel_ip", format!("{ip} is not a unicast address")));
        }
        if let Some(other) = tunnel_ips.insert(ip, &h.id) {
            return Err(SnapshotError::new("hosts", &h.id, "tunnel_ip", format!("{ip} is already the tunnel IP of host {other}")));
        }
    }
    Ok(())
}

/// Subnets: on a network that exists, of the family `ip_version` says, not overlapping another
/// of it, the gateway inside, IPv6 modes only on IPv6 subnets and equal when both are given.
fn subnets(s: &Snapshot, ids: &Ids) -> Result<(), SnapshotError> {
    let Ids { networks, .. } = ids;
    let mut cidrs: HashMap<&str, Vec<(&str, ipnet::IpNet)>> = HashMap::new();
    for sn in &s.subnets {
        must_exist(networks, &sn.network_id, "subnets", &sn.id, "network_id", "network")?;
        let family = if sn.cidr6().is_some() { 6 } else { 4 };
        match sn.ip_version {
            None | Some(4 | 6) if sn.ip_version.unwrap_or(4) == family => {}
            Some(v @ (4 | 6)) => {
                return Err(SnapshotError::new("subnets", &sn.id, "ip_version", format!("{v}, but cidr {} is IPv{family}", sn.cidr)))
            }
            None => return Err(SnapshotError::new("subnets", &sn.id, "cidr", format!("{} is IPv6, but ip_version is not 6", sn.cidr))),
            Some(v) => return Err(SnapshotError::new("subnets", &sn.id, "ip_version", format!("{v} is neither 4 nor 6"))),
        }
        for (attr, mode) in [("ipv6_ra_mode", sn.ipv6_ra_mode), ("ipv6_address_mode", sn.ipv6_address_mode)] {
            if let (Some(mode), 4) = (mode, family) {
                return Err(SnapshotError::new("subnets", &sn.id, attr, format!("{mode} on the IPv4 subnet {}", sn.cidr)));
            }
        }
        if let (Some(ra), Some(addr)) = (sn.ipv6_ra_mode, sn.ipv6_address_mode) {
            if ra != addr {
                return Err(SnapshotError::new("subnets", &sn.id, "ipv6_ra_mode", format!("{ra} differs from ipv6_address_mode {addr}")));
            }
        }
        let net = sn.cidr.trunc();
        let others = cidrs.entry(sn.network_id.as_str()).or_default();
        if let Some((o, oc)) = others.iter().find(|(_, c)| c.contains(&net.network()) || net.contains(&c.network())) {
            return Err(SnapshotError::new(
                "subnets",
                &sn.id,
                "cidr",
                format!("{net} overlaps subnet {o} ({oc}) on network {}", sn.network_id),
            ));
        }
        others.push((&sn.id, net));
        if let Some(gw) = sn.gateway_ip {
            if !sn.cidr.trunc().contains(&gw) {
                return Err(SnapshotError::new("subnets", &sn.id, "gateway_ip", format!("{gw} is not in {}", sn.cidr.trunc())));
            }
        }
    }
    Ok(())
}

/// Ports: references, fixed IPs inside their subnets, one interface each, no interface twice.
fn ports(s: &Snapshot, ids: &Ids) -> Result<(), SnapshotError> {
    let Ids { hosts, networks, routers, qos, subnet_by_id, subnets_on, .. } = ids;
    let on_network = |net: &str| subnets_on.get(net).map_or(&[][..], Vec::as_slice);
    // Ports: references, fixed IPs inside their subnets, one interface each, no interface twice.
    let mut bound: HashMap<(&str, &str), String> = HashMap::new();
    for h in &s.hosts {
        if let Some(ifn) = &h.underlay_interface {
            if let Some(why) = interface_name_problem(ifn) {
                return Err(SnapshotError::new("hosts", &h.id, "underlay_interface", format!("interface name {ifn:?} {why}")));
            }
            bound.insert((h.id.as_str(), ifn.as_str()), format!("the underlay of host {}", h.id));
        }
    }
    let mut macs: HashMap<(&str, Mac), &str> = HashMap::new();
    let mut fixed: HashMap<(&str, std::net::IpAddr), &str> = HashMap::new();
    for p in &s.ports {
        must_exist(networks, &p.network_id, "ports", &p.id, "network_id", "network")?;
        if p.mac_address.is_multicast() || p.mac_address.0 == [0; 6] {
            return Err(SnapshotError::new("ports", &p.id, "mac_address", format!("{} is not a unicast MAC address", p.mac_address)));
        }
        for (i, fip) in p.fixed_ips.iter().enumerate() {
            if let Some(prev) = fixed.insert((p.network_id.as_str(), fip.ip_address), &p.id) {
                return Err(SnapshotError::new(
                    "ports",
                    &p.id,
                    format!("fixed_ips[{i}].ip_address"),
                    format!("{} is already a fixed IP of port {prev} on network {}", fip.ip_address, p.network_id),
                ));
            }
            // A subnet's network and broadcast addresses are no host's (below /31); IPv6 has no
            // broadcast, and its all-zeros host is the subnet-router anycast (RFC 4291 §2.6.1).
            let on = on_network(&p.network_id).iter().map(|sn| (sn, sn.cidr.trunc())).find(|(_, c)| c.contains(&fip.ip_address));
            if let Some((sn, c)) = on.filter(|(_, c)| c.prefix_len() < c.max_prefix_len() - 1) {
                let which = if fip.ip_address == c.network() {
                    Some("network")
                } else if fip.ip_address == c.broadcast() && fip.ipv4().is_some() {
                    Some("broadcast")
                } else {
                    None
                };
                if let Some(which) = which {
                    return Err(SnapshotError::new(
                        "ports",
                        &p.id,
                        format!("fixed_ips[{i}].ip_address"),
                        format!("{} is the {which} address of subnet {} ({c})", fip.ip_address, sn.id),
                    ));
                }
            }
        }
        if let Some(prev) = macs.insert((p.network_id.as_str(), p.mac_address), &p.id) {
            return Err(SnapshotError::new(
                "ports",
                &p.id,
                "mac_address",
                format!("{} is already the MAC of port {prev} on network {}", p.mac_address, p.network_id),
            ));
        }
        for (i, fip) in p.fixed_ips.iter().enumerate() {
            let attr = format!("fixed_ips[{i}].ip_address");
            match &fip.subnet_id {
                Some(sid) => {
                    let Some(sn) = subnet_by_id.get(sid.as_str()) else {
                        return Err(SnapshotError::new("ports", &p.id, format!("fixed_ips[{i}].subnet_id"), format!("no subnet {sid:?}")));
                    };
                    if sn.network_id != p.network_id {
                        return Err(SnapshotError::new(
                            "ports",
                            &p.id,
                            format!("fixed_ips[{i}].subnet_id"),
                            format!("subnet {sid} is on network {}, not {}", sn.network_id, p.network_id),
                        ));
                    }
                    if !sn.cidr.trunc().contains(&fip.ip_address) {
                        return Err(SnapshotError::new(
                            "ports",
                            &p.id,
                            attr,
                            format!("{} is not in subnet {sid} ({})", fip.ip_address, sn.cidr.trunc()),
                        ));
                    }
                }
                None => {
                    let inside = on_network(&p.network_id).iter().any(|sn| sn.cidr.trunc().contains(&fip.ip_address));
                    if !inside {
                        return Err(SnapshotError::new(
                            "ports",
                            &p.id,
                            attr,
                            format!("{} is not in any subnet of network {}", fip.ip_address, p.network_id),
                        ));
                    }
                }
            }
        }
        if let Some(q) = &p.qos_policy_id {
            must_exist(qos, q, "ports", &p.id, "qos_policy_id", "qos policy")?;
        }
        if p.is_router_port() {
            must_exist(routers, &p.device_id, "ports", &p.id, "device_id", "router")?;
        }
        if let Some(h) = &p.binding_host_id {
            if !h.is_empty() {
                must_exist(hosts, h, "ports", &p.id, "binding:host_id", "host")?;
            }
        }
        if let Some(ifn) = bound_interface(p)? {
            let Some(h) = p.binding_host_id.as_deref().filter(|h| !h.is_empty()) else {
                return Err(SnapshotError::new("ports", &p.id, "binding:host_id", format!("port names interface {ifn:?} but no host")));
            };
            if let Some(prev) = bound.insert((h, ifn), format!("port {}", p.id)) {
                return Err(SnapshotError::new(
                    "ports",
                    &p.id,
                    "binding:profile",
                    format!("interface {ifn:?} on host {h} is already bound to {prev}"),
                ));
            }
        }
    }
    Ok(())
}

/// Routers, QoS policies and floating IPs.
fn routers_and_floating_ips(s: &Snapshot, ids: &Ids) -> Result<(), SnapshotError> {
    let Ids { networks, routers, port_by_id, subnets_on, .. } = ids;
    // The networks each router has a port on, found in one pass (not a scan of every port per
    // floating IP).
    let router_nets: std::collections::HashSet<(&str, &str)> =
        s.ports.iter().filter(|p| p.is_router_port()).map(|p| (p.device_id.as_str(), p.network_id.as_str())).collect();
    for r in &s.routers {
        if let Some(gw) = &r.external_gateway_info {
            must_exist(networks, &gw.network_id, "routers", &r.id, "external_gateway_info.network_id", "network")?;
        }
        // §10.2: one route is of one family.
        for (i, rt) in r.routes.iter().enumerate() {
            let v6 = matches!(rt.destination, ipnet::IpNet::V6(_));
            if rt.nexthop.is_ipv6() != v6 {
                let msg = format!("{} for destination {}: a route's next hop is of its destination's family", rt.nexthop, rt.destination);
                return Err(SnapshotError::new("routers", &r.id, format!("routes[{i}].nexthop"), msg));
            }
            if let Some(src) = rt.source.filter(|src| matches!(src, ipnet::IpNet::V6(_)) != v6) {
                let msg = format!("{src} for destination {}: a route's source is of its destination's family", rt.destination);
                return Err(SnapshotError::new("routers", &r.id, format!("routes[{i}].source"), msg));
            }
        }
    }

    // Floating IPs: the address lies in a subnet of the floating network, and the router has a
    // port on that network (its gateway port or a router interface).
    let mut fip_addrs: HashMap<std::net::IpAddr, &str> = HashMap::new();
    for q in &s.qos_policies {
        for (i, r) in q.rules.iter().enumerate() {
            if let crate::model::QosRule::BandwidthLimit { max_kbps: 0, .. } = r {
                return Err(SnapshotError::new(
                    "qos_policies",
                    &q.id,
                    format!("rules[{i}].max_kbps"),
                    "0 is not a rate: a bandwidth limit is at least 1 kbit/s",
                ));
            }
        }
    }
    for f in &s.floatingips {
        must_exist(networks, &f.floating_network_id, "floatingips", &f.id, "floating_network_id", "network")?;
        if let Some(other) = fip_addrs.insert(f.floating_ip_address, &f.id) {
            return Err(SnapshotError::new(
                "floatingips",
                &f.id,
                "floating_ip_address",
                format!("{} is already floating IP {other}", f.floating_ip_address),
            ));
        }
        let on = subnets_on.get(f.floating_network_id.as_str()).map_or(&[][..], Vec::as_slice);
        let inside = on.iter().any(|sn| sn.cidr.trunc().contains(&f.floating_ip_address));
        if !inside {
            return Err(SnapshotError::new(
                "floatingips",
                &f.id,
                "floating_ip_address",
                format!("{} is not in any subnet of network {}", f.floating_ip_address, f.floating_network_id),
            ));
        }
        if let Some(pid) = &f.port_id {
            let Some(port) = port_by_id.get(pid.as_str()) else {
                return Err(SnapshotError::new("floatingips", &f.id, "port_id", format!("no port {pid:?}")));
            };
            if port.fixed_ips.is_empty() {
                return Err(SnapshotError::new("floatingips", &f.id, "port_id", format!("port {pid} has no fixed IP")));
            }
            if let Some(fixed) = f.fixed_ip_address {
                if !port.fixed_ips.iter().any(|x| x.ip_address == fixed) {
                    return Err(SnapshotError::new(
                        "floatingips",
                        &f.id,
                        "fixed_ip_address",
                        format!("{fixed} is not a fixed IP of port {pid}"),
                    ));
                }
            }
        }
        if let Some(rid) = &f.router_id {
            must_exist(routers, rid, "floatingips", &f.id, "router_id", "router")?;
            let has_port = router_nets.contains(&(rid.as_str(), f.floating_network_id.as_str()));
            if !has_port {
                return Err(SnapshotError::new(
                    "floatingips",
                    &f.id,
                    "router_id",
                    format!("router {rid} has no port on floating network {}", f.floating_network_id),
                ));
            }
        } else if f.port_id.is_some() {
            return Err(SnapshotError::new("floatingips", &f.id, "router_id", "an associated floating IP names its router"));
        }
    }
    Ok(())
}

/// Firewalls, their policies and rules, and logging.
fn firewalls(s: &Snapshot, ids: &Ids) -> Result<(), SnapshotError> {
    let Ids { routers, fw_rules, fw_policies, firewalls, .. } = ids;
    for r in &s.firewall_rules {
        let v6 = match r.ip_version {
            None | Some(4) => false,
            Some(6) => true,
            Some(v) => return Err(SnapshotError::new("firewall_rules", &r.id, "ip_version", format!("{v} is neither 4 nor 6"))),
        };
        for (attr, a) in [("source_ip_address", &r.source_ip_address), ("destination_ip_address", &r.destination_ip_address)] {
            if let Some(a) = a.filter(|a| a.is_v6() != v6) {
                let family = if v6 { 6 } else { 4 };
                return Err(SnapshotError::new("firewall_rules", &r.id, attr, format!("{} in a rule of ip_version {family}", a.0)));
            }
        }
    }
    for pol in &s.firewall_policies {
        for (i, r) in pol.firewall_rules.iter().enumerate() {
            must_exist(fw_rules, r, "firewall_policies", &pol.id, &format!("firewall_rules[{i}]"), "firewall rule")?;
        }
    }
    for fw in &s.firewalls {
        must_exist(fw_policies, &fw.firewall_policy_id, "firewalls", &fw.id, "firewall_policy_id", "firewall policy")?;
        for (i, r) in fw.router_ids.iter().enumerate() {
            must_exist(routers, r, "firewalls", &fw.id, &format!("router_ids[{i}]"), "router")?;
        }
    }
    let mut log_ids = HashSet::new();
    for lr in &s.logging_resources {
        for (i, fl) in lr.firewall_logs.iter().enumerate() {
            if let Some(why) = file_name_problem(&fl.id) {
                return Err(SnapshotError::new(
                    "logging_resources",
                    &lr.id,
                    format!("firewall_logs[{i}].id"),
                    format!("{:?} {why}: it names the log file fw-<id>.log", fl.id),
                ));
            }
            if !log_ids.insert(fl.id.as_str()) {
                return Err(SnapshotError::new(
                    "logging_resources",
                    &lr.id,
                    format!("firewall_logs[{i}].id"),
                    format!("duplicate firewall log id {}", fl.id),
                ));
            }
            must_exist(firewalls, &fl.firewall_id, "logging_resources", &lr.id, &format!("firewall_logs[{i}].firewall_id"), "firewall")?;
        }
    }
    Ok(())
}

/// Gateway devices, their peerings, L2 and remote gateways.
fn gateways(s: &Snapshot, ids: &Ids) -> Result<(), SnapshotError> {
    let Ids { networks, routers, devices, l2gws, rgws, rgw_conns, network_by_id, .. } = ids;
    // Gateway devices (004 §8.1.4, §8.2.3).
    for d in &s.gateway_devices {
        match d.device_type {
            GatewayDeviceType::RouterVtep => {
                let Some(rid) = &d.resource_id else {
                    return Err(SnapshotError::new("gateway_devices", &d.id, "resource_id", "a router_vtep names its router"));
                };
                must_exist(routers, rid, "gateway_devices", &d.id, "resource_id", "router")?;
                if d.tunnel_ips.is_empty() {
                    return Err(SnapshotError::new("gateway_devices", &d.id, "tunnel_ips", "a router_vtep needs at least one tunnel IP"));
                }
            }
            GatewayDeviceType::HwVtep => {
                if d.management_ip.is_none() {
                    return Err(SnapshotError::new("gateway_devices", &d.id, "management_ip", "a hw_vtep needs its management IP"));
                }
                if d.management_port.is_none() {
                    return Err(SnapshotError::new("gateway_devices", &d.id, "management_port", "a hw_vtep needs its management port"));
                }
                if !d.remote_mac_entries.is_empty() {
                    return Err(SnapshotError::new(
                        "gateway_devices",
                        &d.id,
                        "remote_mac_entries",
                        "remote MAC entries are accepted for router_vtep devices only",
                    ));
                }
            }
        }
        unique_ids("gateway_devices", d.remote_mac_entries.iter().map(|e| e.id.as_str()))
            .map_err(|_| SnapshotError::new("gateway_devices", &d.id, "remote_mac_entries", "duplicate remote MAC entry id"))?;
    }
    for p in &s.gateway_device_peerings {
        must_exist(devices, &p.device1_id, "gateway_device_peerings", &p.id, "device1_id", "gateway device")?;
        must_exist(devices, &p.device2_id, "gateway_device_peerings", &p.id, "device2_id", "gateway device")?;
        if p.device1_id == p.device2_id {
            return Err(SnapshotError::new("gateway_device_peerings", &p.id, "device2_id", "a peering joins two distinct devices"));
        }
    }
    let l2gw_by_id: HashMap<&str, &L2Gateway> = s.l2_gateways.iter().map(|g| (g.id.as_str(), g)).collect();
    for g in &s.l2_gateways {
        for (i, d) in g.devices.iter().enumerate() {
            must_exist(devices, &d.device_id, "l2_gateways", &g.id, &format!("devices[{i}].device_id"), "gateway device")?;
        }
    }
    for c in &s.l2_gateway_connections {
        must_exist(l2gws, &c.l2_gateway_id, "l2_gateway_connections", &c.id, "l2_gateway_id", "l2 gateway")?;
        must_exist(networks, &c.network_id, "l2_gateway_connections", &c.id, "network_id", "network")?;
        if c.segmentation_id.is_none() {
            let gw = l2gw_by_id[c.l2_gateway_id.as_str()];
            if gw.devices.iter().any(|d| d.segmentation_id.is_none()) {
                return Err(SnapshotError::new(
                    "l2_gateway_connections",
                    &c.id,
                    "segmentation_id",
                    format!("neither the connection nor every device of l2 gateway {} gives a segmentation id", gw.id),
                ));
            }
        }
    }
    for c in &s.remote_gateway_connections {
        must_exist(l2gws, &c.l2_gateway_id, "remote_gateway_connections", &c.id, "l2_gateway_id", "l2 gateway")?;
        must_exist(networks, &c.network_id, "remote_gateway_connections", &c.id, "network_id", "network")?;
        must_exist(rgws, &c.remote_gateway_id, "remote_gateway_connections", &c.id, "remote_gateway_id", "remote gateway")?;
        if c.segmentation_id.is_none() && network_by_id[c.network_id.as_str()].segmentation_id.is_none() {
            return Err(SnapshotError::new(
                "remote_gateway_connections",
                &c.id,
                "segmentation_id",
                format!("absent, and network {} has no segmentation id either", c.network_id),
            ));
        }
    }
    for m in &s.remote_macs {
        must_exist(rgw_conns, &m.rgw_connection, "remote_macs", &m.id, "rgw_connection", "remote gateway connection")?;
    }
    Ok(())
}
