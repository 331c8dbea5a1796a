//! What the datapath learns from traffic: MAC locations (SPEC §5.3), ARP entries of router
//! ports and of the underlay (§6.4, §7), and the packets waiting for an ARP answer.
//!
//! Invalidation by dependency (SPEC §9): every entry has a generation, bumped when the entry
//! is made, moves or goes ([`Generations`]). A simulation records the generation of each entry
//! it read — found or not — and its flow is fresh while none of them moved
//! ([`LearnedDeps`]), so a MAC learned on a busy uplink invalidates the flows that looked that
//! MAC up, not every flow of the host. Learning the same thing again changes nothing.
//!
//! Every table is bounded ([`Limits`], SPEC §9): a full table refuses the new entry and counts
//! it. A learned MAC ages out after [`Limits::mac_aging`] without a frame from it, as Linux
//! bridges and OVS age theirs; frames that take a cached flow keep their source's entry alive
//! through a shared stamp ([`MacSeen`]), so only the quiet ones age. Aging runs on the packet
//! clock, in deadline order.
//!
//! Accounting (SPEC §4): an input whose only copies wait for ARP is counted when the first of
//! them leaves (forwarded) or when the last is dropped; an input that was also sent elsewhere
//! was counted then, and its waiting copies count nothing more.

mod cache;
mod gens;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rules::compile::{NetRef, PortRef, RouterRef, Tunnel};
use rules::model::Mac;

use crate::iface::IfIdx;
use crate::limits::{Limits, Refusals};
use crate::time::Instant;
pub use cache::LearnCache;
pub use gens::{Dep, Entry, Generations, LearnedDeps};

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

/// Whose bound an ARP entry counts against: its router's, or the underlay's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArpOwner {
    Router(RouterRef),
    Underlay,
}

/// Whose ARP table: a router port's, or the host underlay's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArpScope {
    RouterPort(PortRef),
    Underlay,
}

/// How a frame released from the ARP queue leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Straight out of an interface (a router port on the wire, or the underlay).
    Iface(IfIdx),
    /// Out of a router port into its network, to be bridged there.
    RouterPort(PortRef),
}

/// One frame waiting for a next hop.
#[derive(Debug, Clone)]
pub struct Waiting {
    /// The complete frame; its destination MAC (bytes 0..6) is filled in on resolution.
    pub frame: Vec<u8>,
    /// The input it is a copy of, while that input is not counted yet.
    input: Option<u64>,
}

/// Packets waiting for one next hop.
#[derive(Debug, Clone)]
pub struct Pending {
    pub frames: Vec<Waiting>,
    pub egress: Egress,
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

/// When a learned MAC last sent a frame, shared with the flows of its frames: a cache hit keeps
/// it alive without the state lock. Written at most once per [`MacSeen::GRANULE`], so a busy
/// flow does not keep the line moving between workers.
#[derive(Debug, Clone)]
pub struct MacSeen(Arc<AtomicU64>);

impl MacSeen {
    const GRANULE: u64 = 1_000_000_000;

    #[inline]
    pub fn touch(&self, now: Instant) {
        if self.0.load(Ordering::Relaxed).saturating_add(Self::GRANULE) < now.0 {
            self.0.fetch_max(now.0, Ordering::Relaxed);
        }
    }

    /// Seen at `now` exactly (the slow path learning it again): written only when the stamp
    /// moves.
    #[inline]
    pub fn stamp(&self, now: Instant) {
        if self.0.load(Ordering::Relaxed) < now.0 {
            self.0.fetch_max(now.0, Ordering::Relaxed);
        }
    }

    fn get(&self) -> Instant {
        Instant(self.0.load(Ordering::Relaxed))
    }

    /// An unshared copy (for a scratch copy of the state).
    fn copy(&self) -> MacSeen {
        MacSeen(Arc::new(AtomicU64::new(self.0.load(Ordering::Relaxed))))
    }
}

#[derive(Debug)]
struct MacEntry {
    loc: Location,
    seen: MacSeen,
}

impl Clone for MacEntry {
    fn clone(&self) -> MacEntry {
        MacEntry { loc: self.loc, seen: self.seen.copy() }
    }
}

/// What [`Learned::learn_mac`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacLearn {
    /// A new entry, or one that moved: flows that read the old one are stale.
    News(MacSeen),
    /// Known there already; its stamp is refreshed.
    Known(MacSeen),
    /// The network's table is full.
    Refused,
}

impl PartialEq for MacSeen {
    fn eq(&self, o: &MacSeen) -> bool {
        Arc::ptr_eq(&self.0, &o.0)
    }
}
impl Eq for MacSeen {}

/// A new snapshot's positions for the resources learned entries name: `None` where one is gone.
/// `carry::Remap` answers it by id.
pub trait Renumber {
    fn net(&self, n: NetRef) -> Option<NetRef>;
    fn port(&self, p: PortRef) -> Option<PortRef>;
    fn router(&self, r: RouterRef) -> Option<RouterRef>;
    fn tunnel(&self, t: Tunnel) -> Option<Tunnel>;
}

#[derive(Debug, Default, Clone)]
pub struct Learned {
    /// Each entry's generation (see [`Generations`]).
    pub gens: Generations,
    macs: HashMap<(NetRef, Mac), MacEntry, ahash::RandomState>,
    macs_per_net: HashMap<NetRef, usize, ahash::RandomState>,
    /// `(stamp when queued, entry)`, in deadline order: an entry is looked at once its queued
    /// stamp is a whole aging time old, and goes, or is queued again under its newer stamp.
    aging: BTreeSet<(Instant, NetRef, Mac)>,
    arp: HashMap<(ArpScope, IpAddr), (Mac, ArpOwner), ahash::RandomState>,
    arps_per_owner: HashMap<ArpOwner, usize, ahash::RandomState>,
    /// Ordered, so retries fire in the same order on every run.
    pub pending: BTreeMap<(ArpScope, IpAddr), Pending>,
    /// Copies still waiting of inputs that are not counted yet.
    uncounted: HashMap<u64, u32, ahash::RandomState>,
    next_input: u64,
    pub refused: Refusals,
}

impl Learned {
    /// Learn that `mac` is at `loc` on `net`, seen at `now`.
    pub fn learn_mac(&mut self, net: NetRef, mac: Mac, loc: Location, now: Instant, limits: &Limits) -> MacLearn {
        if let Some(e) = self.macs.get_mut(&(net, mac)) {
            e.seen.stamp(now);
            if e.loc == loc {
                return MacLearn::Known(e.seen.clone());
            }
            e.loc = loc;
            self.gens.bump(Entry::Mac(net, mac));
            return MacLearn::News(e.seen.clone());
        }
        let n = self.macs_per_net.entry(net).or_default();
        if *n >= limits.macs_per_network {
            self.refused.macs += 1;
            return MacLearn::Refused;
        }
        *n += 1;
        let seen = MacSeen(Arc::new(AtomicU64::new(now.0)));
        self.macs.insert((net, mac), MacEntry { loc, seen: seen.clone() });
        self.aging.insert((now, net, mac));
        self.gens.bump(Entry::Mac(net, mac));
        MacLearn::News(seen)
    }

    pub fn mac(&self, net: NetRef, mac: Mac) -> Option<Location> {
        self.macs.get(&(net, mac)).map(|e| e.loc)
    }

    /// Where `mac` is on `net`, and its last-seen stamp.
    pub fn mac_entry(&self, net: NetRef, mac: Mac) -> Option<(Location, MacSeen)> {
        self.macs.get(&(net, mac)).map(|e| (e.loc, e.seen.clone()))
    }

    /// Learned MACs of one network.
    pub fn mac_count(&self, net: NetRef) -> usize {
        self.macs_per_net.get(&net).copied().unwrap_or(0)
    }

    /// When the next learned MAC may age out (`u64::MAX`: none).
    pub fn aging_due(&self, limits: &Limits) -> u64 {
        self.aging.first().map_or(u64::MAX, |(t, _, _)| t.saturating_add(limits.mac_aging).0)
    }

    /// Forget the MACs that sent nothing for the aging time (the flows that read them are stale);
    /// true if any went.
    pub fn age(&mut self, now: Instant, limits: &Limits) -> bool {
        let mut gone = false;
        while let Some(&(t, net, mac)) = self.aging.first() {
            if t.saturating_add(limits.mac_aging) > now {
                break;
            }
            self.aging.pop_first();
            let Some(e) = self.macs.get(&(net, mac)) else { continue };
            let seen = e.seen.get();
            if seen.saturating_add(limits.mac_aging) > now {
                self.aging.insert((seen, net, mac));
                continue;
            }
            self.macs.remove(&(net, mac));
            if let Some(n) = self.macs_per_net.get_mut(&net) {
                *n -= 1;
            }
            self.gens.bump(Entry::Mac(net, mac));
            self.gens.bump(Entry::Room(net));
            gone = true;
        }
        gone
    }

    /// Learn an ARP entry of `scope`, counted against `owner`'s bound; true if that is news.
    pub fn learn_arp(&mut self, scope: ArpScope, owner: ArpOwner, ip: IpAddr, mac: Mac, limits: &Limits) -> bool {
        if let Some(e) = self.arp.get_mut(&(scope, ip)) {
            let news = e.0 != mac;
            e.0 = mac;
            if news {
                self.gens.bump(Entry::Arp(scope, ip));
            }
            return news;
        }
        let n = self.arps_per_owner.entry(owner).or_default();
        if *n >= limits.arp_per_router {
            self.refused.arps += 1;
            return false;
        }
        *n += 1;
        self.arp.insert((scope, ip), (mac, owner));
        self.gens.bump(Entry::Arp(scope, ip));
        true
    }

    pub fn arp(&self, scope: ArpScope, ip: IpAddr) -> Option<Mac> {
        self.arp.get(&(scope, ip)).map(|e| e.0)
    }

    /// ARP entries counted against one owner.
    pub fn arp_count(&self, owner: ArpOwner) -> usize {
        self.arps_per_owner.get(&owner).copied().unwrap_or(0)
    }

    /// All learned MACs and ARP entries (for `stats`).
    pub fn sizes(&self) -> (usize, usize) {
        (self.macs.len(), self.arp.len())
    }

    /// The busiest network's and owner's fill (for `stats`).
    pub fn fullest(&self) -> (usize, usize) {
        (self.macs_per_net.values().copied().max().unwrap_or(0), self.arps_per_owner.values().copied().max().unwrap_or(0))
    }
}

/// A learned MAC as it is saved across a restart (`persist.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedMac {
    pub net: NetRef,
    pub mac: Mac,
    pub loc: Location,
    pub seen: Instant,
}

/// A learned ARP entry as it is saved across a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedArp {
    pub scope: ArpScope,
    pub owner: ArpOwner,
    pub ip: IpAddr,
    pub mac: Mac,
}

impl Learned {
    /// The learned MACs and ARP entries, for saving (waiting packets are not saved).
    pub fn export(&self) -> (Vec<SavedMac>, Vec<SavedArp>) {
        let mut macs: Vec<_> = self.macs.iter().map(|(&(net, mac), e)| SavedMac { net, mac, loc: e.loc, seen: e.seen.get() }).collect();
        macs.sort_by_key(|m| (m.net, m.mac));
        let mut arps: Vec<_> = self.arp.iter().map(|(&(scope, ip), &(mac, owner))| SavedArp { scope, owner, ip, mac }).collect();
        arps.sort_by_key(|a| (a.scope, a.ip));
        (macs, arps)
    }

    /// Put saved entries back, within the bounds.
    pub fn import(&mut self, macs: &[SavedMac], arps: &[SavedArp], limits: &Limits) {
        for m in macs {
            self.learn_mac(m.net, m.mac, m.loc, m.seen, limits);
        }
        for a in arps {
            self.learn_arp(a.scope, a.owner, a.ip, a.mac, limits);
        }
    }
}

/// Packets waiting, and how each input is counted exactly once.
impl Learned {
    /// A number for the input being simulated now, for the copies of it that wait.
    pub fn new_input(&mut self) -> u64 {
        self.next_input += 1;
        self.next_input
    }

    /// Park a frame for a next hop whose entry exists: a copy of `input`, or (`None`) a frame the
    /// datapath made.
    pub fn park(&mut self, key: (ArpScope, IpAddr), frame: Vec<u8>, input: Option<u64>) {
        if let Some(p) = self.pending.get_mut(&key) {
            p.frames.push(Waiting { frame, input });
            if let Some(i) = input {
                *self.uncounted.entry(i).or_default() += 1;
            }
        }
    }

    /// The input was counted (it was also sent, or dropped, when simulated): its waiting copies
    /// count nothing more.
    pub fn counted(&mut self, input: u64) {
        self.uncounted.remove(&input);
    }

    /// A copy leaves: true when that makes its input forwarded (its first copy to leave).
    pub fn leaves(&mut self, w: &Waiting) -> bool {
        w.input.is_some_and(|i| self.uncounted.remove(&i).is_some())
    }

    /// Copies are dropped: how many inputs that makes dropped (those whose last copy it was).
    pub fn let_go(&mut self, frames: &[Waiting]) -> u64 {
        let mut dropped = 0;
        for i in frames.iter().filter_map(|w| w.input) {
            if let Some(n) = self.uncounted.get_mut(&i) {
                *n -= 1;
                if *n == 0 {
                    self.uncounted.remove(&i);
                    dropped += 1;
                }
            }
        }
        dropped
    }

    /// Let go of every waiting packet (the end of a replay): how many inputs that drops.
    pub fn let_go_all(&mut self) -> u64 {
        let all: Vec<_> = std::mem::take(&mut self.pending).into_values().flat_map(|p| p.frames).collect();
        self.let_go(&all)
    }

    /// Let go of the packets waiting to leave by interfaces a new snapshot released (their slot
    /// may go to another interface); returns how many inputs that drops.
    pub fn release_ifaces(&mut self, released: &[IfIdx]) -> u64 {
        let (gone, kept): (BTreeMap<_, _>, BTreeMap<_, _>) =
            std::mem::take(&mut self.pending).into_iter().partition(|(_, p)| matches!(p.egress, Egress::Iface(i) if released.contains(&i)));
        self.pending = kept;
        let frames: Vec<_> = gone.into_values().flat_map(|p| p.frames).collect();
        self.let_go(&frames)
    }

    /// Carry the entries over to a new snapshot's numbering, letting go of those whose network,
    /// port or router is gone; returns how many inputs the waiting packets let go drop
    /// (`carry.rs` decides what remains; this applies it).
    pub fn remap(&mut self, m: &impl Renumber) -> u64 {
        let loc = |l: Location| match l {
            Location::Port(p) => m.port(p).map(Location::Port),
            Location::Tunnel(t) => m.tunnel(t).map(Location::Tunnel),
        };
        let scope = |s: ArpScope| match s {
            ArpScope::RouterPort(p) => m.port(p).map(ArpScope::RouterPort),
            ArpScope::Underlay => Some(ArpScope::Underlay),
        };
        let owner = |o: ArpOwner| match o {
            ArpOwner::Router(r) => m.router(r).map(ArpOwner::Router),
            ArpOwner::Underlay => Some(ArpOwner::Underlay),
        };
        self.macs = std::mem::take(&mut self.macs)
            .into_iter()
            .filter_map(|((n, mac), e)| Some(((m.net(n)?, mac), MacEntry { loc: loc(e.loc)?, seen: e.seen })))
            .collect();
        self.aging = std::mem::take(&mut self.aging)
            .into_iter()
            .filter_map(|(t, n, mac)| Some((t, m.net(n)?, mac)))
            .filter(|(_, n, mac)| self.macs.contains_key(&(*n, *mac)))
            .collect();
        self.arp =
            std::mem::take(&mut self.arp).into_iter().filter_map(|((s, ip), (mac, o))| Some(((scope(s)?, ip), (mac, owner(o)?)))).collect();
        self.macs_per_net.clear();
        for (n, _) in self.macs.keys() {
            *self.macs_per_net.entry(*n).or_default() += 1;
        }
        self.arps_per_owner.clear();
        for (_, o) in self.arp.values() {
            *self.arps_per_owner.entry(*o).or_default() += 1;
        }
        let mut gone = Vec::new();
        for ((s, ip), mut p) in std::mem::take(&mut self.pending) {
            let emit = match p.egress {
                Egress::Iface(i) => Some(Egress::Iface(i)),
                Egress::RouterPort(port) => m.port(port).map(Egress::RouterPort),
            };
            match (scope(s), emit) {
                (Some(s), Some(e)) => {
                    p.egress = e;
                    self.pending.insert((s, ip), p);
                }
                _ => gone.extend(p.frames),
            }
        }
        self.let_go(&gone)
    }
}
