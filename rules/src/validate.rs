//! Loading and validating a snapshot (SPEC §3).
//!
//! Everything is checked at load; the first error names the collection, the resource id and the
//! attribute, and nothing of a bad snapshot is kept. The checks run in the order of §3's list.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::*;

/// Where a snapshot error is: `collection/id: attribute`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The document is not JSON, or not an object of collections.
    #[error("{}", one_line(.0))]
    Document(String),
    /// A resource breaks a rule of SPEC §3.
    #[error("{collection}/{}: {}: {}", one_line(.id), one_line(.attribute), one_line(.message))]
    Resource { collection: &'static str, id: String, attribute: String, message: String },
}

/// `s` with control characters escaped (`\n`), so an error is one line whatever an id holds
/// (found by the snapshot fuzz target: an id with a newline).
pub fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        s.chars().map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() }).collect::<String>().into()
    } else {
        s.into()
    }
}

impl SnapshotError {
    pub(crate) fn new(collection: &'static str, id: &str, attribute: impl Into<String>, message: impl fmt::Display) -> Self {
        SnapshotError::Resource { collection, id: id.to_string(), attribute: attribute.into(), message: message.to_string() }
    }
}

/// A snapshot error with the file it came from, rendered as the one line operators see.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", one_line(.file))]
pub struct FileError {
    pub file: String,
    pub error: SnapshotError,
}

/// Read, parse and validate a snapshot file.
pub fn load_file(path: &std::path::Path) -> Result<Validated, FileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| FileError { file: file.clone(), error: SnapshotError::Document(format!("cannot read: {e}")) })?;
    load_str(&text).map_err(|error| FileError { file, error })
}

/// A snapshot that passed validation: every reference resolves, every id is unique, every
/// value is in range. Only [`load_str`] makes one, and [`crate::Topology::compile`] takes
/// nothing else, so compilation never looks up a map on the assumption that validation ran.
#[derive(Debug, Clone)]
pub struct Validated(Snapshot);

impl Validated {
    /// The snapshot itself, to keep beside what was compiled from it.
    pub fn into_snapshot(self) -> Snapshot {
        self.0
    }
}

impl std::ops::Deref for Validated {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.0
    }
}

/// Parse and validate a snapshot document.
pub fn load_str(text: &str) -> Result<Validated, SnapshotError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| SnapshotError::Document(format!("not JSON: {e}")))?;
    let Value::Object(obj) = &doc else {
        return Err(SnapshotError::Document("the snapshot is not a JSON object".into()));
    };
    let version = match obj.get("version") {
        None | Some(Value::Null) => {
            return Err(SnapshotError::Document(
                "version: missing; a snapshot carries an integer version that grows with every change".into(),
            ))
        }
        Some(v) => v.as_u64().ok_or_else(|| SnapshotError::Document(format!("version: {v} is not a non-negative integer")))?,
    };
    let snap = Snapshot {
        version,
        hosts: collection(obj, "hosts")?,
        networks: collection(obj, "networks")?,
        subnets: collection(obj, "subnets")?,
        ports: collection(obj, "ports")?,
        routers: collection(obj, "routers")?,
        floatingips: collection(obj, "floatingips")?,
        qos_policies: collection(obj, "qos_policies")?,
        firewall_rules: collection(obj, "firewall_rules")?,
        firewall_policies: collection(obj, "firewall_policies")?,
        firewalls: collection(obj, "firewalls")?,
        logging_resources: collection(obj, "logging_resources")?,
        gateway_devices: collection(obj, "gateway_devices")?,
        gateway_device_peerings: collection(obj, "gateway_device_peerings")?,
        l2_gateways: collection(obj, "l2_gateways")?,
        l2_gateway_connections: collection(obj, "l2_gateway_connections")?,
        remote_gateways: collection(obj, "remote_gateways")?,
        remote_gateway_connections: collection(obj, "remote_gateway_connections")?,
        remote_macs: collection(obj, "remote_macs")?,
    };
    validate(&snap)?;
    Ok(Validated(snap))
}

/// Deserialize one collection item by item, so that a bad value is reported with its resource
/// id and the path of the attribute (`fixed_ips[0].ip_address`).
fn collection<T: DeserializeOwned>(obj: &serde_json::Map<String, Value>, name: &'static str) -> Result<Vec<T>, SnapshotError> {
    let items = match obj.get(name) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(SnapshotError::Document(format!("{name}: not a list"))),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let id = match item.get("id") {
                Some(Value::String(s)) => s.clone(),
                _ => format!("#{i}"),
            };
            serde_path_to_error::deserialize(item).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner().to_string();
                // serde_json appends a position that means nothing inside a Value; drop it.
                let message = inner.split(" at line ").next().unwrap_or(&inner).to_string();
                let attribute = if path == "." { missing_field(&message).unwrap_or_else(|| ".".into()) } else { path };
                // Say what was found, when serde's message does not (`invalid IPv4 address syntax`).
                let message = match value_at(item, &attribute) {
                    Some(v)
                        if !matches!(v, Value::Object(_) | Value::Array(_)) && !message.contains(v.as_str().unwrap_or(&v.to_string())) =>
                    {
                        format!("{message} (found {v})")
                    }
                    _ => message,
                };
                SnapshotError::Resource { collection: name, id, attribute, message }
            })
        })
        .collect()
}

/// The value at an attribute path as serde_path_to_error writes it (`fixed_ips[0].ip_address`).
fn value_at<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = item;
    for part in path.split('.') {
        let (name, indexes) = part.split_once('[').map_or((part, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            v = v.get(name)?;
        }
        for ix in indexes.split('[').filter(|s| !s.is_empty()) {
            v = v.get(ix.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(v)
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

fn unique_ids<'a>(collection: &'static str, ids: impl Iterator<Item = &'a str>) -> Result<HashSet<&'a str>, SnapshotError> {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(SnapshotError::new(collection, id, "id", "duplicate id"));
        }
    }
    Ok(seen)
}

fn must_exist(
    set: &HashSet<&str>,
    target: &str,
    collection: &'static str,
    id: &str,
    attribute: &str,
    what: &str,
) -> Result<(), SnapshotError> {
    if set.contains(target) {
        Ok(())
    } else {
        Err(SnapshotError::new(collection, id, attribute, format!("no {what} {target:?}")))
    }
}

/// The interface a port's binding profile names, if any; both spellings are accepted.
pub fn bound_interface(port: &Port) -> Result<Option<&str>, SnapshotError> {
    let Some(p) = &port.binding_profile else {
        return Ok(None);
    };
    match (p.interface_name.as_deref(), p.if_name.as_deref()) {
        (Some(a), Some(b)) if a != b => Err(SnapshotError::new(
            "ports",
            &port.id,
            "binding:profile",
            format!("names two interfaces ({a:?} and {b:?}); a port is bound to exactly one"),
        )),
        (Some(a), _) | (_, Some(a)) => match interface_name_problem(a) {
            Some(why) => Err(SnapshotError::new("ports", &port.id, "binding:profile", format!("interface name {a:?} {why}"))),
            None => Ok(Some(a)),
        },
        (None, None) => Ok(None),
    }
}

/// Why `name` cannot be a Linux interface name, if it cannot: the kernel's own rule
/// (`dev_valid_name`) — 1 to 15 bytes, no `/`, no NUL, no white space, not `.` or `..`. It names a
/// replay's files too, so this is also what keeps `replay --out` inside its directory.
pub fn interface_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > 15 {
        Some("is longer than 15 bytes (Linux's IFNAMSIZ)")
    } else if name == "." || name == ".." {
        Some("is not a name")
    } else if name.contains('/') {
        Some("contains '/'")
    } else if name.chars().any(|c| c == '\0' || c.is_whitespace() || c == ':') {
        Some("contains NUL, white space or ':'")
    } else {
        None
    }
}

/// Why `id` cannot name a file in a directory, if it cannot (firewall log ids name
/// `fw-<id>.log`).
pub fn file_name_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("is empty")
    } else if id.len() > 240 {
        Some("is longer than 240 bytes")
    } else if id == "." || id == ".." {
        Some("is not a name")
    } else if id.contains('/') {
        Some("contains '/'")
    } else if id.contains('\0') {
        Some("contains NUL")
    } else {
        None
    }
}

/// Every rule of SPEC §3.
fn validate(s: &Snapshot) -> Result<(), SnapshotError> {
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

/// Subnets: on a network that exists, not overlapping another of it, the gateway inside.
fn subnets(s: &Snapshot, ids: &Ids) -> Result<(), SnapshotError> {
    let Ids { networks, .. } = ids;
    let mut cidrs: HashMap<&str, Vec<(&str, ipnet::Ipv4Net)>> = HashMap::new();
    for sn in &s.subnets {
        must_exist(networks, &sn.network_id, "subnets", &sn.id, "network_id", "network")?;
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
    let Ids { hosts, networks, routers, qos, subnet_by_id, .. } = ids;
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
    let mut fixed: HashMap<(&str, std::net::Ipv4Addr), &str> = HashMap::new();
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
            // A subnet's network and broadcast addresses are no host's (below /31).
            let on = s
                .subnets
                .iter()
                .filter(|sn| sn.network_id == p.network_id)
                .map(|sn| (sn, sn.cidr.trunc()))
                .find(|(_, c)| c.contains(&fip.ip_address));
            if let Some((sn, c)) = on.filter(|(_, c)| c.prefix_len() < 31) {
                let which = if fip.ip_address == c.network() {
                    Some("network")
                } else if fip.ip_address == c.broadcast() {
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
                    let inside = s.subnets.iter().any(|sn| sn.network_id == p.network_id && sn.cidr.trunc().contains(&fip.ip_address));
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
    let Ids { networks, routers, port_by_id, .. } = ids;
    for r in &s.routers {
        if let Some(gw) = &r.external_gateway_info {
            must_exist(networks, &gw.network_id, "routers", &r.id, "external_gateway_info.network_id", "network")?;
        }
    }

    // Floating IPs: the address lies in a subnet of the floating network, and the router has a
    // port on that network (its gateway port or a router interface).
    let mut fip_addrs: HashMap<std::net::Ipv4Addr, &str> = HashMap::new();
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
        let inside = s.subnets.iter().any(|sn| sn.network_id == f.floating_network_id && sn.cidr.trunc().contains(&f.floating_ip_address));
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
            let has_port = s.ports.iter().any(|p| p.is_router_port() && p.device_id == *rid && p.network_id == f.floating_network_id);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A snapshot with one of each gateway resource, valid as it stands.
    fn gateways() -> Value {
        json!({
            "version": 1,
            "networks": [{"id": "n1", "provider:segmentation_id": 10}],
            "routers": [{"id": "r1"}],
            "gateway_devices": [
                {"id": "rv", "type": "router_vtep", "resource_id": "r1", "tunnel_ips": ["192.0.2.1"],
                 "remote_mac_entries": [{"id": "e1", "mac_address": "02:00:00:00:00:09", "vtep_address": "192.0.2.9", "segmentation_id": 10}]},
                {"id": "hw", "management_ip": "192.0.2.20", "management_port": 6632, "tunnel_ips": ["192.0.2.21"]},
            ],
            "gateway_device_peerings": [{"id": "pp", "device1_id": "rv", "device2_id": "hw"}],
            "l2_gateways": [{"id": "g1", "devices": [{"device_id": "rv"}]}],
            "l2_gateway_connections": [{"id": "c1", "l2_gateway_id": "g1", "network_id": "n1", "segmentation_id": 10}],
            "remote_gateways": [{"id": "rg", "ipaddr": "198.51.100.7"}],
            "remote_gateway_connections": [{"id": "rc", "l2_gateway_id": "g1", "network_id": "n1", "remote_gateway_id": "rg"}],
            "remote_macs": [{"id": "m1", "mac": "02:00:00:00:00:0a", "ip": "10.0.0.10", "rgw_connection": "rc"}],
        })
    }

    fn error_of(edit: impl Fn(&mut Value)) -> String {
        let mut s = gateways();
        edit(&mut s);
        load_str(&s.to_string()).expect_err("invalid").to_string()
    }

    #[test]
    fn gateway_rules_of_section_3() {
        load_str(&gateways().to_string()).expect("the base is valid");
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|s| s["gateway_devices"][0]["resource_id"] = json!("nope")), "gateway_devices/rv: resource_id: no router \"nope\""),
            (Box::new(|s| s["gateway_devices"][0]["tunnel_ips"] = json!([])), "gateway_devices/rv: tunnel_ips: a router_vtep needs at least one tunnel IP"),
            (
                Box::new(|s| {
                    s["gateway_devices"][1].as_object_mut().map(|o| o.remove("management_port"));
                }),
                "gateway_devices/hw: management_port: a hw_vtep needs its management port",
            ),
            (
                Box::new(|s| s["gateway_devices"][1]["remote_mac_entries"] = s["gateway_devices"][0]["remote_mac_entries"].clone()),
                "gateway_devices/hw: remote_mac_entries: remote MAC entries are accepted for router_vtep devices only",
            ),
            (Box::new(|s| s["gateway_device_peerings"][0]["device2_id"] = json!("rv")), "gateway_device_peerings/pp: device2_id: a peering joins two distinct devices"),
            (Box::new(|s| s["l2_gateways"][0]["devices"][0]["device_id"] = json!("x")), "l2_gateways/g1: devices[0].device_id: no gateway device \"x\""),
            (
                Box::new(|s| {
                    s["l2_gateway_connections"][0].as_object_mut().map(|o| o.remove("segmentation_id"));
                }),
                "l2_gateway_connections/c1: segmentation_id: neither the connection nor every device of l2 gateway g1 gives a segmentation id",
            ),
            (
                Box::new(|s| {
                    s["networks"][0].as_object_mut().map(|o| o.remove("provider:segmentation_id"));
                }),
                "remote_gateway_connections/rc: segmentation_id: absent, and network n1 has no segmentation id either",
            ),
            (Box::new(|s| s["remote_macs"][0]["rgw_connection"] = json!("zz")), "remote_macs/m1: rgw_connection: no remote gateway connection \"zz\""),
            (
                Box::new(|s| s["gateway_devices"][0]["remote_mac_entries"][0]["segmentation_id"] = json!(0)),
                "gateway_devices/rv: remote_mac_entries[0].segmentation_id: 0 is not a VNI (1..=16777215)",
            ),
        ];
        for (edit, want) in cases {
            assert_eq!(error_of(edit), want);
        }
    }
}
