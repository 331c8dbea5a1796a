//! State kept across a restart (`edgepath run --state-dir`): on SIGTERM the datapath writes its
//! connections (NAT mappings and firewall state) and learned MAC and ARP entries; the next start
//! puts back those whose resources and rules still exist, by the same rules as a reload
//! ([`crate::carry`]). Packets waiting for ARP are not kept.
//!
//! The file is JSON, written to a temporary name and renamed, so a crash while writing leaves the
//! previous file or none. Entries name networks, ports and routers by their position in the
//! snapshot they were made under, whose ids the file carries; times are packet-clock
//! nanoseconds, which live mode reads from the wall clock, so the time spent stopped counts as
//! idle time. A start that puts the state back removes the file, so a later crash does not bring
//! back old state.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rules::compile::{LocalVtep, NetRef, PortRef, RouterRef, Topology, Tunnel};
use rules::model::Mac;
use serde::{Deserialize, Serialize};

use crate::carry::{carry_over, Ids, Remap};
use crate::ct::{CtKey, SavedConn, SnatKind};
use crate::learn::{ArpOwner, ArpScope, Location, SavedArp, SavedMac};
use crate::state::State;
use crate::time::Instant;

/// This file's format; another is refused.
const FORMAT: u32 = 1;

/// The file's name in the state directory.
pub fn file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

#[derive(Serialize, Deserialize)]
struct Saved {
    format: u32,
    /// The snapshot version the state was made under.
    version: u64,
    networks: Vec<String>,
    ports: Vec<String>,
    routers: Vec<String>,
    connections: Vec<Conn>,
    firewall_connections: Vec<Conn>,
    macs: Vec<MacEntry>,
    arp: Vec<ArpEntry>,
}

/// `(proto, src, sport, dst, dport)`.
type Key = (u8, std::net::IpAddr, u16, std::net::IpAddr, u16);

#[derive(Serialize, Deserialize)]
struct Conn {
    orig: Key,
    reply: Key,
    kind: String,
    router: u32,
    last_seen: u64,
    progress: u8,
}

#[derive(Serialize, Deserialize)]
struct MacEntry {
    network: u32,
    mac: [u8; 6],
    /// A port's position, or a tunnel.
    port: Option<u32>,
    tunnel: Option<SavedTunnel>,
    seen: u64,
}

#[derive(Serialize, Deserialize)]
struct SavedTunnel {
    /// The router VTEP's router and address; none for the host's underlay.
    router: Option<(u32, Ipv4Addr)>,
    remote: Ipv4Addr,
    vni: u32,
}

#[derive(Serialize, Deserialize)]
struct ArpEntry {
    /// A router port's position; none for the underlay.
    router_port: Option<u32>,
    /// The router it counts against; none for the underlay.
    router: Option<u32>,
    ip: std::net::IpAddr,
    mac: [u8; 6],
}

fn key(k: &CtKey) -> Key {
    (k.proto, k.src, k.sport, k.dst, k.dport)
}

fn ct_key(k: Key) -> CtKey {
    CtKey { proto: k.0, src: k.1, sport: k.2, dst: k.3, dport: k.4 }
}

fn kind_name(k: SnatKind) -> &'static str {
    match k {
        SnatKind::Default => "default",
        SnatKind::SameSubnet => "same_subnet",
        SnatKind::Untranslated => "untranslated",
    }
}

fn conn(c: &SavedConn) -> Conn {
    Conn {
        orig: key(&c.orig),
        reply: key(&c.reply),
        kind: kind_name(c.kind).into(),
        router: c.router.0,
        last_seen: c.last_seen.0,
        progress: c.progress,
    }
}

fn saved_conn(c: &Conn) -> Result<SavedConn, String> {
    let kind = match c.kind.as_str() {
        "default" => SnatKind::Default,
        "same_subnet" => SnatKind::SameSubnet,
        "untranslated" => SnatKind::Untranslated,
        k => return Err(format!("connection kind {k:?} is not known")),
    };
    Ok(SavedConn {
        orig: ct_key(c.orig),
        reply: ct_key(c.reply),
        kind,
        router: RouterRef(c.router),
        last_seen: Instant(c.last_seen),
        progress: c.progress,
    })
}

/// The state as the file holds it, made under `topo`.
pub fn save(state: &State, topo: &Topology) -> String {
    let ids = Ids::of(topo);
    let (macs, arps) = state.learned.export();
    let mut fw: Vec<_> = state.fw.iter().collect();
    fw.sort_by_key(|(r, _)| **r);
    let saved = Saved {
        format: FORMAT,
        version: topo.version,
        networks: ids.networks,
        ports: ids.ports,
        routers: ids.routers,
        connections: state.ct.export().iter().map(conn).collect(),
        firewall_connections: fw.iter().flat_map(|(_, t)| t.export()).map(|c| conn(&c)).collect(),
        macs: macs
            .iter()
            .map(|m| {
                let (port, tunnel) = match m.loc {
                    Location::Port(p) => (Some(p.0), None),
                    Location::Tunnel(t) => {
                        let router = match t.local {
                            LocalVtep::Host => None,
                            LocalVtep::Router { router, addr } => Some((router.0, addr)),
                        };
                        (None, Some(SavedTunnel { router, remote: t.remote, vni: t.vni }))
                    }
                };
                MacEntry { network: m.net.0, mac: m.mac.0, port, tunnel, seen: m.seen.0 }
            })
            .collect(),
        arp: arps
            .iter()
            .map(|a| ArpEntry {
                router_port: match a.scope {
                    ArpScope::RouterPort(p) => Some(p.0),
                    ArpScope::Underlay => None,
                },
                router: match a.owner {
                    ArpOwner::Router(r) => Some(r.0),
                    ArpOwner::Underlay => None,
                },
                ip: a.ip,
                mac: a.mac.0,
            })
            .collect(),
    };
    serde_json::to_string(&saved).unwrap_or_default()
}

/// What a restore put back, of what the file held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Restored {
    pub connections: (usize, usize),
    pub macs: (usize, usize),
    pub arp: (usize, usize),
}

/// Put the state of `text` into `state` (empty, with its bounds set), carried over to `topo`.
pub fn restore(text: &str, state: &mut State, topo: &Topology) -> Result<Restored, String> {
    let saved: Saved = serde_json::from_str(text).map_err(|e| format!("not a saved state: {e}"))?;
    if saved.format != FORMAT {
        return Err(format!("format {} is not {FORMAT}", saved.format));
    }
    let ids = Ids { networks: saved.networks, ports: saved.ports, routers: saved.routers };
    // Entries naming positions past the saved snapshot's are not entries of it.
    let (nn, np, nr) = (ids.networks.len() as u32, ids.ports.len() as u32, ids.routers.len() as u32);
    let mut old = State { limits: state.limits, ..State::default() };
    let mut saved_conns = 0;
    for c in &saved.connections {
        let c = saved_conn(c)?;
        saved_conns += 1;
        if c.router.0 < nr {
            old.ct.import(&c);
        }
    }
    for c in &saved.firewall_connections {
        let c = saved_conn(c)?;
        saved_conns += 1;
        if c.router.0 < nr {
            old.fw.entry(c.router).or_default().import(&c);
        }
    }
    let macs: Vec<SavedMac> = saved
        .macs
        .iter()
        .filter_map(|m| {
            let loc = match (&m.port, &m.tunnel) {
                (Some(p), None) if *p < np => Location::Port(PortRef(*p)),
                (None, Some(t)) => Location::Tunnel(Tunnel {
                    local: match t.router {
                        None => LocalVtep::Host,
                        Some((r, addr)) if r < nr => LocalVtep::Router { router: RouterRef(r), addr },
                        Some(_) => return None,
                    },
                    remote: t.remote,
                    vni: t.vni,
                }),
                _ => return None,
            };
            (m.network < nn).then_some(SavedMac { net: NetRef(m.network), mac: Mac(m.mac), loc, seen: Instant(m.seen) })
        })
        .collect();
    let arps: Vec<SavedArp> = saved
        .arp
        .iter()
        .filter_map(|a| {
            let (scope, owner) = match (a.router_port, a.router) {
                (Some(p), Some(r)) if p < np && r < nr => (ArpScope::RouterPort(PortRef(p)), ArpOwner::Router(RouterRef(r))),
                (None, None) => (ArpScope::Underlay, ArpOwner::Underlay),
                _ => return None,
            };
            Some(SavedArp { scope, owner, ip: a.ip, mac: Mac(a.mac) })
        })
        .collect();
    old.learned.import(&macs, &arps, &state.limits);
    carry_over(&mut old, &Remap::from_ids(&ids, topo), topo);
    let limits = state.limits;
    *state = old;
    state.limits = limits;
    let (m, a) = state.learned.sizes();
    let conns = crate::ct::total(&state.ct, &state.fw);
    Ok(Restored { connections: (conns, saved_conns), macs: (m, saved.macs.len()), arp: (a, saved.arp.len()) })
}

/// Write `text` to the state file of `dir`, through a temporary file and a rename.
pub fn write(dir: &Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, file(dir))
}
