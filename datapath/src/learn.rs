//! What the datapath learns from traffic: MAC locations (SPEC §5.3), ARP entries of router
//! ports and of the underlay (§6.4, §7), and the packets waiting for an ARP answer.
//!
//! A change to either table bumps the datapath epoch, which invalidates every cached flow
//! (§9: a learned MAC or ARP entry invalidates the flows that depended on it before the next
//! packet uses them). Learning the same thing again changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use rules::compile::{NetRef, PortRef, Tunnel};
use rules::model::Mac;

use crate::iface::IfIdx;
use crate::time::Instant;

/// Where a learned MAC lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Behind a bound port of this host (an uplink or a port without port security).
    Port(PortRef),
    /// Behind a VXLAN tunnel.
    Tunnel(Tunnel),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Port(p) => write!(f, "port #{}", p.0),
            Location::Tunnel(t) => t.fmt(f),
        }
    }
}

/// Whose ARP table: a router port's, or the host underlay's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArpScope {
    RouterPort(PortRef),
    Underlay,
}

/// How a frame released from the ARP queue leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Straight out of an interface (a router port on the wire, or the underlay).
    Iface(IfIdx),
    /// Out of a router port into its network, to be bridged there.
    RouterPort(PortRef),
}

/// Packets waiting for one next hop.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Complete frames whose destination MAC (bytes 0..6) is filled in on resolution.
    pub frames: Vec<Vec<u8>>,
    pub emit: Emit,
    /// The request to send again.
    pub request: Vec<u8>,
    pub tries: u8,
    pub next_try: Instant,
}

/// At most this many packets wait per unresolved address (SPEC §6.4).
pub const PENDING_MAX: usize = 3;
/// Requests sent before waiting packets are dropped.
pub const ARP_TRIES: u8 = 3;
/// Between requests.
pub const ARP_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Clone)]
pub struct Learned {
    macs: HashMap<(NetRef, Mac), Location, ahash::RandomState>,
    arp: HashMap<(ArpScope, Ipv4Addr), Mac, ahash::RandomState>,
    /// Ordered, so retries fire in the same order on every run.
    pub pending: BTreeMap<(ArpScope, Ipv4Addr), Pending>,
}

impl Learned {
    /// Learn that `mac` is at `loc` on `net`; true if that is news.
    pub fn learn_mac(&mut self, net: NetRef, mac: Mac, loc: Location) -> bool {
        self.macs.insert((net, mac), loc) != Some(loc)
    }

    pub fn mac(&self, net: NetRef, mac: Mac) -> Option<Location> {
        self.macs.get(&(net, mac)).copied()
    }

    /// Learn an ARP entry; true if that is news.
    pub fn learn_arp(&mut self, scope: ArpScope, ip: Ipv4Addr, mac: Mac) -> bool {
        self.arp.insert((scope, ip), mac) != Some(mac)
    }

    pub fn arp(&self, scope: ArpScope, ip: Ipv4Addr) -> Option<Mac> {
        self.arp.get(&(scope, ip)).copied()
    }
}

impl Learned {
    /// Let go of the packets waiting to leave by interfaces a new snapshot released (their slot
    /// may go to another interface); returns how many.
    pub fn release_ifaces(&mut self, released: &[IfIdx]) -> u64 {
        let mut dropped = 0;
        self.pending.retain(|_, p| {
            let gone = matches!(p.emit, Emit::Iface(i) if released.contains(&i));
            if gone {
                dropped += p.frames.len() as u64;
            }
            !gone
        });
        dropped
    }

    /// Carry the entries over to a new snapshot's numbering, letting go of those whose network,
    /// port or router is gone; returns how many waiting packets were let go (`carry.rs`).
    pub fn remap(&mut self, m: &crate::carry::Remap) -> u64 {
        let loc = |l: Location| match l {
            Location::Port(p) => m.port(p).map(Location::Port),
            Location::Tunnel(t) => m.tunnel(t).map(Location::Tunnel),
        };
        let scope = |s: ArpScope| match s {
            ArpScope::RouterPort(p) => m.port(p).map(ArpScope::RouterPort),
            ArpScope::Underlay => Some(ArpScope::Underlay),
        };
        self.macs = std::mem::take(&mut self.macs).into_iter().filter_map(|((n, mac), l)| Some(((m.net(n)?, mac), loc(l)?))).collect();
        self.arp = std::mem::take(&mut self.arp).into_iter().filter_map(|((s, ip), mac)| Some(((scope(s)?, ip), mac))).collect();
        let mut dropped = 0;
        for ((s, ip), mut p) in std::mem::take(&mut self.pending) {
            let emit = match p.emit {
                Emit::Iface(i) => Some(Emit::Iface(i)),
                Emit::RouterPort(port) => m.port(port).map(Emit::RouterPort),
            };
            match (scope(s), emit) {
                (Some(s), Some(e)) => {
                    p.emit = e;
                    self.pending.insert((s, ip), p);
                }
                _ => dropped += p.frames.len() as u64,
            }
        }
        dropped
    }
}
