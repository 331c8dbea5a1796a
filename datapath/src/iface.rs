//! The interfaces one datapath instance owns (SPEC §2), and what each is bound to.

use std::collections::HashMap;

use rules::compile::{HostRef, PortRef, Topology};
use rules::model::Mac;

/// An interface's index in [`Ifaces`]; what flows and outputs name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfIdx(pub u16);

/// What frames arriving on an interface enter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// The host's underlay: VXLAN to and from other tunnel endpoints, and ARP for `tunnel_ip`.
    Underlay,
    /// A port of a network (a VM's tap, or a plain port on an uplink network).
    Port(PortRef),
    /// A router port on the wire (the uplink pattern of seeds 003/004 §8.1.9).
    RouterPort(PortRef),
}

#[derive(Debug, Clone)]
pub struct Iface {
    pub name: String,
    /// The interface's own MAC: the source of what the datapath sends on the underlay.
    pub mac: Mac,
    pub binding: Binding,
}

/// The MAC an interface has when none is given (SPEC §4).
pub const DEFAULT_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x01]);

/// Why a datapath cannot be built for a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IfaceError {
    #[error("host {0:?} is not in the snapshot's hosts")]
    UnknownHost(String),
    #[error("--mac names interface {0:?}, which no port of this host binds")]
    UnknownMacInterface(String),
    #[error("the new snapshot binds other interfaces on this host; restart to rebind")]
    InterfacesChanged,
}

/// The interfaces of one host, in name order (which is also the replay's tie-break order).
#[derive(Debug, Clone)]
pub struct Ifaces {
    pub host: HostRef,
    pub list: Vec<Iface>,
    by_name: HashMap<String, IfIdx>,
    /// Bound router ports and VM ports of this host, by port.
    by_port: HashMap<PortRef, IfIdx>,
    pub underlay: Option<IfIdx>,
}

impl Ifaces {
    /// Every interface of `host`, with MACs from `macs` (others get [`DEFAULT_MAC`]).
    pub fn for_host(topo: &Topology, host: &str, macs: &HashMap<String, Mac>) -> Result<Ifaces, IfaceError> {
        let h = *topo.host_by_id.get(host).ok_or_else(|| IfaceError::UnknownHost(host.to_string()))?;
        let mut named: Vec<(String, Binding)> = Vec::new();
        if let Some(u) = &topo.host(h).underlay_interface {
            named.push((u.clone(), Binding::Underlay));
        }
        for (i, p) in topo.ports.iter().enumerate() {
            if p.host != Some(h) {
                continue;
            }
            if let Some(ifn) = &p.interface {
                let r = PortRef(i as u32);
                let b = if p.router.is_some() { Binding::RouterPort(r) } else { Binding::Port(r) };
                named.push((ifn.clone(), b));
            }
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        for name in macs.keys() {
            if !named.iter().any(|(n, _)| n == name) {
                return Err(IfaceError::UnknownMacInterface(name.clone()));
            }
        }
        let mut ifs = Ifaces { host: h, list: Vec::new(), by_name: HashMap::new(), by_port: HashMap::new(), underlay: None };
        for (i, (name, binding)) in named.into_iter().enumerate() {
            let idx = IfIdx(i as u16);
            ifs.by_name.insert(name.clone(), idx);
            match binding {
                Binding::Underlay => ifs.underlay = Some(idx),
                Binding::Port(p) | Binding::RouterPort(p) => {
                    ifs.by_port.insert(p, idx);
                }
            }
            let mac = macs.get(&name).copied().unwrap_or(DEFAULT_MAC);
            ifs.list.push(Iface { name, mac, binding });
        }
        Ok(ifs)
    }

    pub fn by_name(&self, name: &str) -> Option<IfIdx> {
        self.by_name.get(name).copied()
    }

    /// The interface a port of this host is bound to.
    pub fn of_port(&self, p: PortRef) -> Option<IfIdx> {
        self.by_port.get(&p).copied()
    }

    pub fn get(&self, i: IfIdx) -> &Iface {
        &self.list[i.0 as usize]
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}
