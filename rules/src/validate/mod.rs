//! Loading and validating a snapshot (SPEC §3).
//!
//! Everything is checked at load; the first error names the collection, the resource id and the
//! attribute, and nothing of a bad snapshot is kept. The checks run in the order of §3's list.

mod groups;

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
    let doc = read_document(path)?;
    load_value(&doc).map_err(|error| FileError { file: path.display().to_string(), error })
}

/// Read and parse a snapshot file into its document, not yet validated (one line naming the
/// file where it cannot be read or is not JSON).
pub fn read_document(path: &std::path::Path) -> Result<Value, FileError> {
    let fail = |message: String| FileError { file: path.display().to_string(), error: SnapshotError::Document(message) };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))
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
    load_value(&doc)
}

/// Validate a snapshot document already parsed (one assembled from etcd's keys, SPEC §9.1).
pub fn load_value(doc: &Value) -> Result<Validated, SnapshotError> {
    let Value::Object(obj) = doc else {
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
            // Read plainly first (the common case, and about twice as fast); only a bad item is
            // read again to find the path of what is wrong in it.
            if let Ok(v) = T::deserialize(item) {
                return Ok(v);
            }
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

/// Every rule of SPEC §3, group by group (`groups.rs`).
fn validate(s: &Snapshot) -> Result<(), SnapshotError> {
    groups::validate(s)
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
