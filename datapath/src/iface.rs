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
    /// A slot no interface of the running snapshot holds (its interface was released by a new
    /// snapshot); the next new interface takes it.
    Released,
}

#[derive(Debug, Clone)]
pub struct Iface {
    pub name: String,
    /// The interface's own MAC: the source of what the datapath sends on the underlay.
    pub mac: Mac,
    pub binding: Binding,
    /// Whether the interface exists on the machine now (SPEC §2): frames toward one that does
    /// not are dropped (`port_absent`). Replay's interfaces always exist; live mode follows the
    /// kernel's link notifications.
    pub present: bool,
    /// Which holder of this slot this is: it changes whenever the slot is given to another
    /// interface, so counters kept per slot start again from zero.
    pub gen: u64,
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
}

/// The interfaces of one host. Each has a slot, its [`IfIdx`], which it keeps for as long as
/// snapshots bind it: a new snapshot ([`Ifaces::rebind`]) keeps the slots of the interfaces that
/// stay, releases those of the interfaces that go and gives free slots to new ones, so flows,
/// sockets and learned state of the ports that stay are not renumbered. The first snapshot's
/// interfaces are numbered in name order (which is also the replay's tie-break order).
#[derive(Debug, Clone)]
pub struct Ifaces {
    pub host: HostRef,
    /// Indexed by [`IfIdx`]; released slots hold [`Binding::Released`].
    pub list: Vec<Iface>,
    by_name: HashMap<String, IfIdx>,
    /// Bound router ports and VM ports of this host, by port.
    by_port: HashMap<PortRef, IfIdx>,
    pub underlay: Option<IfIdx>,
    /// The next [`Iface::gen`].
    next_gen: u64,
}

/// The interfaces `host` binds in `topo`, in name order.
fn bound(topo: &Topology, host: &str) -> Result<(HostRef, Vec<(String, Binding)>), IfaceError> {
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
    Ok((h, named))
}

impl Ifaces {
    /// Every interface of `host`, present, with MACs from `macs` (others get [`DEFAULT_MAC`]).
    pub fn for_host(topo: &Topology, host: &str, macs: &HashMap<String, Mac>) -> Result<Ifaces, IfaceError> {
        let (h, named) = bound(topo, host)?;
        for name in macs.keys() {
            if !named.iter().any(|(n, _)| n == name) {
                return Err(IfaceError::UnknownMacInterface(name.clone()));
            }
        }
        let mut ifs = Ifaces { host: h, list: Vec::new(), by_name: HashMap::new(), by_port: HashMap::new(), underlay: None, next_gen: 0 };
        for (name, binding) in named {
            let mac = macs.get(&name).copied().unwrap_or(DEFAULT_MAC);
            ifs.take_slot(name, mac, binding, true);
        }
        ifs.index();
        Ok(ifs)
    }

    /// The interfaces of `host` in a new snapshot, numbered as in `self` where they stay (see
    /// [`Ifaces`]). Interfaces that stay keep their MAC and presence; new ones take their MAC
    /// from `macs` and start present or not as `present` says. Also returns the slots whose
    /// interface went or changed.
    pub fn rebind(
        &self,
        topo: &Topology,
        host: &str,
        macs: &HashMap<String, Mac>,
        present: bool,
    ) -> Result<(Ifaces, Vec<IfIdx>), IfaceError> {
        let (h, named) = bound(topo, host)?;
        let mut ifs = Ifaces { host: h, by_name: HashMap::new(), by_port: HashMap::new(), underlay: None, ..self.clone() };
        let wanted: HashMap<&str, Binding> = named.iter().map(|(n, b)| (n.as_str(), *b)).collect();
        let mut released = Vec::new();
        for (k, i) in ifs.list.iter_mut().enumerate() {
            match wanted.get(i.name.as_str()) {
                Some(&b) if i.binding != Binding::Released => i.binding = b,
                _ => {
                    if i.binding != Binding::Released {
                        released.push(IfIdx(k as u16));
                    }
                    *i = Iface { name: String::new(), mac: DEFAULT_MAC, binding: Binding::Released, present: false, gen: i.gen };
                }
            }
        }
        for (name, binding) in named {
            if self.by_name.contains_key(&name) {
                continue;
            }
            let mac = macs.get(&name).copied().unwrap_or(DEFAULT_MAC);
            ifs.take_slot(name, mac, binding, present);
        }
        while ifs.list.last().is_some_and(|i| i.binding == Binding::Released) {
            ifs.list.pop();
        }
        ifs.index();
        Ok((ifs, released))
    }

    /// Put an interface in the first released slot, or a new one.
    fn take_slot(&mut self, name: String, mac: Mac, binding: Binding, present: bool) {
        let gen = self.next_gen;
        self.next_gen += 1;
        let iface = Iface { name, mac, binding, present, gen };
        match self.list.iter_mut().find(|i| i.binding == Binding::Released) {
            Some(slot) => *slot = iface,
            None => self.list.push(iface),
        }
    }

    /// Rebuild the lookups from the slots.
    fn index(&mut self) {
        self.by_name.clear();
        self.by_port.clear();
        self.underlay = None;
        for (k, i) in self.list.iter().enumerate() {
            let idx = IfIdx(k as u16);
            match i.binding {
                Binding::Released => continue,
                Binding::Underlay => self.underlay = Some(idx),
                Binding::Port(p) | Binding::RouterPort(p) => {
                    self.by_port.insert(p, idx);
                }
            }
            self.by_name.insert(i.name.clone(), idx);
        }
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

    /// A slot's interface, if the slot exists.
    pub fn slot_mut(&mut self, i: IfIdx) -> Option<&mut Iface> {
        self.list.get_mut(i.0 as usize)
    }

    /// The interfaces the snapshot binds (released slots left out), by slot.
    pub fn bound(&self) -> impl Iterator<Item = (IfIdx, &Iface)> {
        self.list.iter().enumerate().filter(|(_, i)| i.binding != Binding::Released).map(|(k, i)| (IfIdx(k as u16), i))
    }

    /// Slots, released ones included.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}
