//! Who talks VXLAN with which VNI (SPEC §7): the tunnel endpoints of every network, and the
//! table that maps a received VNI to its network.
//!
//! A [`Tunnel`] is one direction of one VXLAN relation: the local VTEP that encapsulates (the host
//! underlay, or a router made a VTEP by a `router_vtep` device), the remote address, and the VNI.
//! Per network:
//! - **hosts** (§7.1) are reached from the underlay at their `tunnel_ip` with the network's VNI
//!   (kept in [`crate::compile::Network::hosts`], as before);
//! - **hardware VTEPs** (§7.3) of an l2 gateway connected to the network are reached from the
//!   underlay at `tunnel_ips[0]` with the connection's VNI (else the device's); they flood;
//! - **router VTEPs** (§7.2): a MAC in a `router_vtep` device's `remote_mac_entries` is reached
//!   from that router at the entry's `vtep_address` with the entry's VNI, for the networks whose
//!   connection to the device carries that VNI (all networks joined to it when none does);
//! - **remote gateways** (§7.4): a remote gateway connection reaches `ipaddr` with its VNI (else
//!   the network's), from the l2 gateway's router VTEP if it has one, else from the underlay; its
//!   remote MACs are unicast there, and it floods only with `flood: true`.
//!
//! Peered devices (§7) are one logical VTEP: their tunnels form one [`TunnelGroup`], and a frame
//! goes to exactly one member, chosen by a hash of the inner flow.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;

use super::{NetRef, RouterRef, Topology};
use crate::model::{GatewayDeviceType, Mac, Snapshot};
use crate::validate::SnapshotError;

/// The VTEP that encapsulates and decapsulates on this side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LocalVtep {
    /// The host's underlay interface, at the host's `tunnel_ip`.
    Host,
    /// A router made a VTEP by a `router_vtep` device, at the device's `tunnel_ips[0]`; its
    /// VXLAN is routed by the router.
    Router { router: RouterRef, addr: Ipv4Addr },
}

/// One tunnel: from a local VTEP to a remote address, with a VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tunnel {
    pub local: LocalVtep,
    pub remote: Ipv4Addr,
    pub vni: u32,
}

impl fmt::Display for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.local {
            LocalVtep::Host => write!(f, "VXLAN {} VNI {} from the underlay", self.remote, self.vni),
            LocalVtep::Router { router, addr } => {
                write!(f, "VXLAN {} VNI {} from router #{}'s VTEP {addr}", self.remote, self.vni, router.0)
            }
        }
    }
}

/// What put a tunnel in the snapshot, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Host { host: String },
    HwVtep { device: String, connection: String },
    RemoteMacEntry { device: String, entry: String },
    RemoteGateway { gateway: String, connection: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Host { host } => write!(f, "hosts/{host}"),
            Origin::HwVtep { device, connection } => write!(f, "hw_vtep gateway_devices/{device} via l2_gateway_connections/{connection}"),
            Origin::RemoteMacEntry { device, entry } => write!(f, "router_vtep gateway_devices/{device} remote_mac_entries/{entry}"),
            Origin::RemoteGateway { gateway, connection } => {
                write!(f, "remote_gateways/{gateway} via remote_gateway_connections/{connection}")
            }
        }
    }
}

/// Tunnels that act as one logical VTEP: one member, or the two of a peering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelGroup {
    pub members: Vec<Tunnel>,
    /// Which device each member belongs to (peering is decided by device).
    devices: Vec<Option<String>>,
}

impl TunnelGroup {
    fn one(t: Tunnel, device: Option<String>) -> Self {
        TunnelGroup { members: vec![t], devices: vec![device] }
    }

    /// The member a flow with inner-flow `hash` uses.
    pub fn pick(&self, hash: u32) -> Tunnel {
        self.members[(hash as usize) % self.members.len()]
    }
}

/// The VXLAN side of one network.
#[derive(Debug, Clone, Default)]
pub struct NetTunnels {
    /// Where broadcast and unknown unicast also go (hosts are in `Network::hosts`).
    pub flood: Vec<TunnelGroup>,
    /// Remote MACs and where they live.
    pub remote_macs: HashMap<Mac, TunnelGroup>,
}

/// Every VXLAN relation of the snapshot.
#[derive(Debug, Clone, Default)]
pub struct VxlanTables {
    /// By network.
    pub nets: Vec<NetTunnels>,
    /// A received VNI at a local VTEP → its network.
    pub vni_in: HashMap<(LocalVtep, u32), NetRef>,
    /// Addresses VXLAN is accepted from (hosts, hardware VTEPs, remote MAC entries' VTEPs,
    /// remote gateways, gateway devices' tunnel IPs).
    pub known_sources: Vec<Ipv4Addr>,
    /// The router VTEPs: their address, by router.
    pub router_vteps: HashMap<RouterRef, Vec<Ipv4Addr>>,
    /// For operators: every tunnel, its network and origin.
    pub listing: Vec<(Tunnel, NetRef, Origin)>,
}

impl VxlanTables {
    /// Whether `addr` is a VTEP address of router `r`.
    pub fn is_router_vtep(&self, r: RouterRef, addr: Ipv4Addr) -> bool {
        self.router_vteps.get(&r).is_some_and(|a| a.contains(&addr))
    }
}

struct Builder<'a> {
    t: &'a Topology,
    s: &'a Snapshot,
    out: VxlanTables,
    /// device id → the id of its peer.
    peer: HashMap<&'a str, &'a str>,
}

pub(super) fn compile(t: &Topology, s: &Snapshot) -> Result<VxlanTables, SnapshotError> {
    let mut b = Builder {
        t,
        s,
        out: VxlanTables { nets: vec![NetTunnels::default(); t.networks.len()], ..Default::default() },
        peer: HashMap::new(),
    };
    for p in &s.gateway_device_peerings {
        b.peer.insert(p.device1_id.as_str(), p.device2_id.as_str());
        b.peer.insert(p.device2_id.as_str(), p.device1_id.as_str());
    }
    b.hosts()?;
    b.devices()?;
    b.remote_gateways()?;
    b.out.known_sources.sort();
    b.out.known_sources.dedup();
    Ok(b.out)
}

impl<'a> Builder<'a> {
    fn net(&self, id: &str) -> NetRef {
        NetRef(self.t.networks.iter().position(|n| n.id == id).unwrap_or(0) as u32)
    }

    fn router_of(&self, device_id: &str) -> Option<(RouterRef, Ipv4Addr)> {
        let d = self.s.gateway_devices.iter().find(|d| d.id == device_id)?;
        if d.device_type != GatewayDeviceType::RouterVtep {
            return None;
        }
        let r = d.resource_id.as_deref()?;
        let router = RouterRef(self.t.routers.iter().position(|x| x.id == r)? as u32);
        Some((router, *d.tunnel_ips.first()?))
    }

    /// A VNI received at `local` means `net`; two networks for one VNI at one VTEP is an error.
    fn vni_in(&mut self, local: LocalVtep, vni: u32, net: NetRef, collection: &'static str, id: &str) -> Result<(), SnapshotError> {
        match self.out.vni_in.insert((local, vni), net) {
            Some(other) if other != net => Err(SnapshotError::Resource {
                collection,
                id: id.to_string(),
                attribute: "segmentation_id".into(),
                message: format!("VNI {vni} already means network {} at this VTEP", self.t.network(other).id),
            }),
            _ => Ok(()),
        }
    }

    /// §7.1: every network's VNI at the host underlay; every host is a source, and a VTEP of the
    /// networks it has ports on.
    fn hosts(&mut self) -> Result<(), SnapshotError> {
        for (i, n) in self.t.networks.iter().enumerate() {
            if let Some(v) = n.vni {
                self.out.vni_in.insert((LocalVtep::Host, v), NetRef(i as u32));
                for &h in &n.hosts {
                    let host = self.t.host(h);
                    let t = Tunnel { local: LocalVtep::Host, remote: host.tunnel_ip, vni: v };
                    self.out.listing.push((t, NetRef(i as u32), Origin::Host { host: host.id.clone() }));
                }
            }
        }
        self.out.known_sources.extend(self.t.hosts.iter().map(|h| h.tunnel_ip));
        Ok(())
    }

    /// The connections of l2 gateway `g`: (connection id, network, VNI for device `d`).
    fn connections(&self, g: &str, device_seg: Option<u32>) -> Vec<(&'a str, NetRef, u32)> {
        self.s
            .l2_gateway_connections
            .iter()
            .filter(|c| c.l2_gateway_id == g)
            .filter_map(|c| {
                let vni = c.segmentation_id.map(|v| v.get()).or(device_seg)?;
                Some((c.id.as_str(), self.net(&c.network_id), vni))
            })
            .collect()
    }

    /// §7.2 and §7.3: hardware VTEPs and router VTEPs joined to networks by l2 gateways.
    fn devices(&mut self) -> Result<(), SnapshotError> {
        let s = self.s;
        for d in &s.gateway_devices {
            self.out.known_sources.extend(d.tunnel_ips.iter().copied());
            if let Some((router, addr)) = self.router_of(&d.id) {
                self.out.router_vteps.entry(router).or_default().push(addr);
            }
        }
        for g in &s.l2_gateways {
            for gd in &g.devices {
                let Some(d) = s.gateway_devices.iter().find(|d| d.id == gd.device_id) else { continue };
                let conns = self.connections(&g.id, gd.segmentation_id.map(|v| v.get()));
                match d.device_type {
                    GatewayDeviceType::HwVtep => {
                        let Some(&remote) = d.tunnel_ips.first() else { continue };
                        for (cid, net, vni) in conns {
                            self.vni_in(LocalVtep::Host, vni, net, "l2_gateway_connections", cid)?;
                            let t = Tunnel { local: LocalVtep::Host, remote, vni };
                            self.out.listing.push((t, net, Origin::HwVtep { device: d.id.clone(), connection: cid.to_string() }));
                            self.add_flood(net, t, &d.id);
                        }
                    }
                    GatewayDeviceType::RouterVtep => {
                        let Some((router, addr)) = self.router_of(&d.id) else { continue };
                        let local = LocalVtep::Router { router, addr };
                        for &(cid, net, vni) in &conns {
                            self.vni_in(local, vni, net, "l2_gateway_connections", cid)?;
                        }
                        for e in &d.remote_mac_entries {
                            self.out.known_sources.push(e.vtep_address);
                            let vni = e.segmentation_id.get();
                            let matching: Vec<NetRef> = conns.iter().filter(|c| c.2 == vni).map(|c| c.1).collect();
                            let nets = if matching.is_empty() { conns.iter().map(|c| c.1).collect() } else { matching };
                            for net in nets {
                                let t = Tunnel { local, remote: e.vtep_address, vni };
                                self.out.listing.push((t, net, Origin::RemoteMacEntry { device: d.id.clone(), entry: e.id.clone() }));
                                self.add_mac(net, e.mac_address, t, &d.id);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// §7.4: remote gateway connections, from the l2 gateway's router VTEP or the underlay.
    fn remote_gateways(&mut self) -> Result<(), SnapshotError> {
        let s = self.s;
        for c in &s.remote_gateway_connections {
            let Some(rg) = s.remote_gateways.iter().find(|g| g.id == c.remote_gateway_id) else { continue };
            let net = self.net(&c.network_id);
            let Some(vni) = c.segmentation_id.map(|v| v.get()).or(self.t.network(net).vni) else { continue };
            let local = s
                .l2_gateways
                .iter()
                .find(|g| g.id == c.l2_gateway_id)
                .and_then(|g| g.devices.iter().find_map(|d| self.router_of(&d.device_id)))
                .map(|(router, addr)| LocalVtep::Router { router, addr })
                .unwrap_or(LocalVtep::Host);
            self.vni_in(local, vni, net, "remote_gateway_connections", &c.id)?;
            self.out.known_sources.push(rg.ipaddr);
            let t = Tunnel { local, remote: rg.ipaddr, vni };
            self.out.listing.push((t, net, Origin::RemoteGateway { gateway: rg.id.clone(), connection: c.id.clone() }));
            if c.flood {
                self.out.nets[net.idx()].flood.push(TunnelGroup::one(t, None));
            }
            for m in s.remote_macs.iter().filter(|m| m.rgw_connection == c.id) {
                self.out.nets[net.idx()].remote_macs.insert(m.mac, TunnelGroup::one(t, None));
            }
        }
        Ok(())
    }

    /// Add a flooding tunnel of `device`, joining its peer's group when the peer is there.
    fn add_flood(&mut self, net: NetRef, t: Tunnel, device: &str) {
        let peer = self.peer.get(device).copied();
        let groups = &mut self.out.nets[net.idx()].flood;
        join(groups, t, device, peer);
    }

    fn add_mac(&mut self, net: NetRef, mac: Mac, t: Tunnel, device: &str) {
        let peer = self.peer.get(device).copied();
        let map = &mut self.out.nets[net.idx()].remote_macs;
        match map.get_mut(&mac) {
            Some(g) if peer.is_some_and(|p| g.devices.iter().any(|d| d.as_deref() == Some(p))) => {
                g.members.push(t);
                g.devices.push(Some(device.to_string()));
            }
            Some(_) => {}
            None => {
                map.insert(mac, TunnelGroup::one(t, Some(device.to_string())));
            }
        }
    }
}

/// Put `t` of `device` into the group of its peer, or into a new group.
fn join(groups: &mut Vec<TunnelGroup>, t: Tunnel, device: &str, peer: Option<&str>) {
    if let Some(g) = groups.iter_mut().find(|g| peer.is_some_and(|p| g.devices.iter().any(|d| d.as_deref() == Some(p)))) {
        g.members.push(t);
        g.devices.push(Some(device.to_string()));
    } else {
        groups.push(TunnelGroup::one(t, Some(device.to_string())));
    }
}
