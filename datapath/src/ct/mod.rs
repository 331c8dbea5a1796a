//! Connection tracking for dynamic SNAT (SPEC §6.1: default SNAT and same-subnet SNAT) and for
//! the firewalls' accepted connections, IPv4 and IPv6 (§6.2, §10.2).
//!
//! One connection, two keys: the original direction's tuple and the reply direction's tuple
//! both find the same entry (as OVS `struct conn`). The translation is immutable once chosen;
//! what changes per packet (last seen, TCP state) is kept beside it. Entries live in a slab and
//! are named by a [`ConnHandle`] (index + generation), so a flow holding a handle to a freed or
//! expired entry sees it is stale. Freeing an entry removes its reply key, which is what holds
//! its SNAT port: ports cannot leak.
//!
//! Port choice is deterministic: the original port when free (port-preserving), else the next
//! free one upward in the pool, wrapping; [`ports`] finds it without probing the pool, so a full
//! pool costs a new connection as little as an empty one. A key holds either family's addresses
//! (as Linux's `nf_inet_addr` and OVS's `ct_addr` do), so one table serves both; only IPv4 is
//! ever translated (§10.2: no NAT for IPv6). Timeouts read the packet clock (`now` is an argument):
//! UDP 300 s (RFC 4787 REQ-5), ICMP query 60 s (RFC 5508), TCP established 2 h 4 min and TCP
//! opening or closing 4 min (RFC 5382). Expired entries are removed lazily when looked up, when
//! their port is wanted, and by a small sweep per packet; none of these changes what a packet
//! sees, so replay stays deterministic.
//!
//! Thread safety: the table lives in the datapath's shared state and is changed under its own
//! lock (`state.rs`), by the slow path. What the hit path needs without the lock is shared through `Arc`s of atomics:
//! a connection's per-packet state ([`ConnLive`], held by the flows of both directions, on any
//! worker) and the table's generation ([`Watch`]). A clone of the table (a trace's scratch copy)
//! copies those too, so touching the clone changes nothing of the original.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rules::compile::RouterRef;

use crate::time::Instant;
use crate::wire::ipv6::IPPROTO_ICMPV6;
use crate::wire::{tcp_flags, Ipv4, ICMP_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, L4};

pub const UDP_TIMEOUT: Duration = Duration::from_secs(300);
pub const ICMP_TIMEOUT: Duration = Duration::from_secs(60);
pub const TCP_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(2 * 3600 + 4 * 60);
pub const TCP_TRANSITORY_TIMEOUT: Duration = Duration::from_secs(4 * 60);

pub mod bindings;
mod conn;
mod key;
mod ports;
mod saved;
pub use conn::{Conn, ConnLive, ConnRef, Watch};
use conn::{CLOSING, ESTABLISHED, SEEN_REPLY};
pub use key::CtKey;
use ports::{PortKey, PortSets};
pub use saved::SavedConn;

/// Firewall connection state: one table per router with a firewall (SPEC §6.2).
pub type FwConns = HashMap<RouterRef, ConnTable>;

/// The SNAT port pool of SPEC §6.1.
pub const PORT_POOL: (u16, u16) = (1024, 65535);

/// Which rule made the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnatKind {
    /// §6.1 POSTROUTING 5 and 6: SNAT to gw-ip.
    Default,
    /// §6.1 POSTROUTING 7: SNAT to the router interface's IP.
    SameSubnet,
    /// Tracked without translation: a connection a firewall accepted (§6.2).
    Untranslated,
}

/// Which direction of a connection a packet travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Orig,
    Reply,
}

/// A reference to a connection from one direction, held by flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnHandle {
    idx: u32,
    gen: u32,
    pub dir: Dir,
}

#[derive(Debug, Default, Clone)]
struct Slot {
    gen: u32,
    conn: Option<Conn>,
}

/// Why a new mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortsExhausted;

/// Connections that were never answered, oldest first: what early drop takes when the table is
/// full (as Linux's `early_drop` takes a connection that is not assured). Entries are `(slot,
/// generation)`; those answered or gone since are skipped when met, and the queue is compacted
/// when it holds more than twice the router's connections, so it stays bounded.
type Unreplied = VecDeque<(u32, u32)>;

/// The connection table.
#[derive(Debug)]
pub struct ConnTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_key: HashMap<CtKey, (u32, Dir), ahash::RandomState>,
    pool: (u16, u16),
    /// SNAT ports taken, per remote end and translated address.
    ports: PortSets,
    /// Live connections per router, and the early-drop candidates of each (ordered maps, so a
    /// replay drops the same connection on every run).
    per_router: BTreeMap<RouterRef, (usize, Unreplied)>,
    sweep_at: usize,
    live: usize,
    /// Bumped whenever a connection is created: flows that saw a mapping missing depend on it.
    generation: Arc<AtomicU64>,
}

impl Clone for ConnTable {
    /// A scratch copy: connections and generation are its own.
    fn clone(&self) -> ConnTable {
        ConnTable {
            slots: self.slots.clone(),
            free: self.free.clone(),
            by_key: self.by_key.clone(),
            pool: self.pool,
            ports: self.ports.clone(),
            per_router: self.per_router.clone(),
            sweep_at: self.sweep_at,
            live: self.live,
            generation: Arc::new(AtomicU64::new(self.generation())),
        }
    }
}

impl Default for ConnTable {
    fn default() -> Self {
        Self::with_pool(PORT_POOL)
    }
}

impl ConnTable {
    /// A table allocating SNAT ports from `lo..=hi` (tests use small pools).
    pub fn with_pool(pool: (u16, u16)) -> Self {
        ConnTable {
            slots: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::default(),
            pool,
            ports: PortSets::new(pool),
            per_router: BTreeMap::new(),
            sweep_at: 0,
            live: 0,
            generation: Default::default(),
        }
    }

    /// Live connections.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Live connections of one router.
    pub fn count(&self, r: RouterRef) -> usize {
        self.per_router.get(&r).map_or(0, |(n, _)| *n)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The generation now, for a flow to depend on.
    pub fn watch(&self) -> Watch {
        self.watch_from(self.generation())
    }

    /// A watch of this table that saw generation `seen`.
    pub fn watch_from(&self, seen: u64) -> Watch {
        Watch { cell: self.generation.clone(), seen }
    }

    /// A flow's hold on the connection behind `h`, if it is still the same live entry.
    pub fn conn_ref(&self, h: ConnHandle) -> Option<ConnRef> {
        self.get(h).map(|c| ConnRef { live: c.live.clone(), dir: h.dir })
    }

    /// The live connection a packet with `key` belongs to, and its direction; expired entries
    /// are removed on the way.
    pub fn lookup(&mut self, key: &CtKey, now: Instant) -> Option<ConnHandle> {
        let &(idx, dir) = self.by_key.get(key)?;
        let slot = &self.slots[idx as usize];
        let conn = slot.conn.as_ref()?;
        if conn.expired(now) {
            self.remove(idx);
            return None;
        }
        Some(ConnHandle { idx, gen: slot.gen, dir })
    }

    /// The connection behind a handle, if it is still the same live entry.
    pub fn get(&self, h: ConnHandle) -> Option<&Conn> {
        let slot = self.slots.get(h.idx as usize)?;
        if slot.gen != h.gen {
            return None;
        }
        slot.conn.as_ref()
    }

    /// Record a packet of the connection: refreshes its timer and TCP state. False when the
    /// handle is stale or the connection expired (and was removed): the caller re-simulates.
    #[inline]
    pub fn touch(&mut self, h: ConnHandle, flags: u8, now: Instant) -> bool {
        let Some(slot) = self.slots.get_mut(h.idx as usize) else {
            return false;
        };
        if slot.gen != h.gen {
            return false;
        }
        let Some(conn) = slot.conn.as_mut() else {
            return false;
        };
        if conn.expired(now) {
            self.remove(h.idx);
            return false;
        }
        conn.live.record(h.dir, flags, now);
        true
    }

    /// Make a new mapping for `orig`, translating its source to `nat_ip` and a port from the pool:
    /// the original port when it is free for this remote end (an expired holder gives it up),
    /// else the next free one upward, wrapping. The taken ports are looked up in [`PortSets`], so
    /// a pool with no free port is known without looking at its ports.
    pub fn create(
        &mut self,
        orig: CtKey,
        nat_ip: Ipv4Addr,
        kind: SnatKind,
        router: RouterRef,
        flags: u8,
        now: Instant,
    ) -> Result<ConnHandle, PortsExhausted> {
        let (lo, hi) = self.pool;
        let reply_at = |port| CtKey { proto: orig.proto, src: orig.dst, sport: orig.dport, dst: nat_ip.into(), dport: port };
        let preferred = if (lo..=hi).contains(&orig.sport) { orig.sport } else { lo };
        let pk = PortKey::of_reply(&reply_at(preferred));
        let mut chosen = self.key_free(&reply_at(preferred), now).then(|| reply_at(preferred));
        // A free port in the set can still be a key of another kind (an original tuple that
        // happens to match); those are rare, so a few tries settle it.
        let mut from = preferred;
        for _ in 0..8 {
            if chosen.is_some() {
                break;
            }
            let port = self.ports.first_free(&pk, from).ok_or(PortsExhausted)?;
            if self.key_free(&reply_at(port), now) {
                chosen = Some(reply_at(port));
            }
            from = if port == hi { lo } else { port + 1 };
        }
        let reply = chosen.ok_or(PortsExhausted)?;
        if !self.key_free(&orig, now) {
            // The same tuple cannot be live twice; callers look up first, so this is a stale one.
            if let Some(&(idx, _)) = self.by_key.get(&orig) {
                self.remove(idx);
            }
        }
        Ok(self.insert(orig, reply, kind, router, flags, now))
    }

    /// Track `key` without translation (a firewall's accepted connection): its reply is the
    /// reversed tuple. A live entry for `key` already there — made by another worker since this
    /// one looked — is the connection, and is kept.
    pub fn track(&mut self, key: CtKey, router: RouterRef, flags: u8, now: Instant) -> ConnHandle {
        if let Some(h) = self.lookup(&key, now).filter(|h| h.dir == Dir::Orig) {
            self.touch(h, flags, now);
            return h;
        }
        if let Some(&(idx, _)) = self.by_key.get(&key) {
            self.remove(idx);
        }
        if let Some(&(idx, _)) = self.by_key.get(&key.reversed()) {
            self.remove(idx);
        }
        self.insert(key, key.reversed(), SnatKind::Untranslated, router, flags, now)
    }

    /// Store a new connection under both its keys, which are free.
    fn insert(&mut self, orig: CtKey, reply: CtKey, kind: SnatKind, router: RouterRef, flags: u8, now: Instant) -> ConnHandle {
        let conn = Conn { orig, reply, kind, router, live: Arc::new(ConnLive::new(orig.proto, now)) };
        conn.live.record(Dir::Orig, flags, now);
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        if kind != SnatKind::Untranslated {
            self.ports.take(PortKey::of_reply(&reply), reply.dport);
        }
        let slot = &mut self.slots[idx as usize];
        slot.conn = Some(conn);
        let gen = slot.gen;
        self.by_key.insert(orig, (idx, Dir::Orig));
        self.by_key.insert(reply, (idx, Dir::Reply));
        self.live += 1;
        let (n, unreplied) = self.per_router.entry(router).or_default();
        *n += 1;
        unreplied.push_back((idx, gen));
        if unreplied.len() > 2 * *n + 64 {
            let slots = &self.slots;
            unreplied.retain(|&(i, g)| slots[i as usize].gen == g && slots[i as usize].conn.as_ref().is_some_and(|c| !c.live.replied()));
        }
        self.generation.fetch_add(1, Ordering::Release);
        ConnHandle { idx, gen, dir: Dir::Orig }
    }

    /// Make room for a new connection of `router` (or of any router, `None`): remove its oldest
    /// connection that expired or was never answered. False when every connection is answered
    /// and live — then the new one is refused, and no established connection is lost to a flood.
    /// True with `early` set when a live unanswered connection was let go.
    pub fn make_room(&mut self, router: Option<RouterRef>, now: Instant) -> Option<Room> {
        let routers: Vec<RouterRef> = match router {
            Some(r) => vec![r],
            None => self.per_router.keys().copied().collect(),
        };
        for r in routers {
            while let Some((idx, gen)) = self.per_router.get_mut(&r).and_then(|(_, q)| q.pop_front()) {
                let slot = &self.slots[idx as usize];
                let Some(c) = slot.conn.as_ref().filter(|_| slot.gen == gen) else { continue };
                if c.expired(now) {
                    self.remove(idx);
                    return Some(Room::Expired);
                }
                if !c.live.replied() {
                    self.remove(idx);
                    return Some(Room::EarlyDrop);
                }
            }
        }
        None
    }

    /// Every live connection, in slot order, with how long it has been idle.
    pub fn iter(&self, now: Instant) -> impl Iterator<Item = (&Conn, Duration)> {
        self.slots.iter().filter_map(move |s| s.conn.as_ref().map(|c| (c, now.since(c.live.last_seen()))))
    }

    /// Keep only the connections `keep` approves (a new snapshot cutting what its rules deny).
    pub fn retain(&mut self, mut keep: impl FnMut(&Conn) -> bool) {
        for idx in 0..self.slots.len() {
            let cut = self.slots[idx].conn.as_ref().is_some_and(|c| !keep(c));
            if cut {
                self.remove(idx as u32);
            }
        }
    }

    /// Keep the connections `to` gives a router for (moved to it), let the others go (a new
    /// snapshot, `carry.rs`).
    pub fn remap(&mut self, mut to: impl FnMut(&Conn) -> Option<RouterRef>) {
        let old = std::mem::take(&mut self.per_router);
        for idx in 0..self.slots.len() {
            let Some(c) = self.slots[idx].conn.as_mut() else { continue };
            match to(c) {
                Some(r) => {
                    c.router = r;
                    self.per_router.entry(r).or_default().0 += 1;
                }
                None => {
                    // Counted under its old router until removed.
                    self.per_router.entry(c.router).or_default().0 += 1;
                    self.remove(idx as u32);
                }
            }
        }
        // The early-drop candidates keep their order under their connection's new router.
        for (idx, gen) in old.into_values().flat_map(|(_, q)| q) {
            let slot = &self.slots[idx as usize];
            if let Some(c) = slot.conn.as_ref().filter(|c| slot.gen == gen && !c.live.replied()) {
                self.per_router.entry(c.router).or_default().1.push_back((idx, gen));
            }
        }
        self.per_router.retain(|_, (n, _)| *n > 0);
    }

    /// Whether `key` is unused, reclaiming it from an expired entry.
    fn key_free(&mut self, key: &CtKey, now: Instant) -> bool {
        match self.by_key.get(key) {
            None => true,
            Some(&(idx, _)) => match &self.slots[idx as usize].conn {
                Some(c) if c.expired(now) => {
                    self.remove(idx);
                    true
                }
                _ => false,
            },
        }
    }

    fn remove(&mut self, idx: u32) {
        let slot = &mut self.slots[idx as usize];
        if let Some(c) = slot.conn.take() {
            c.live.gone.store(true, Ordering::Release);
            self.by_key.remove(&c.orig);
            self.by_key.remove(&c.reply);
            if c.kind != SnatKind::Untranslated {
                self.ports.release(&PortKey::of_reply(&c.reply), c.reply.dport);
            }
            if let Some((n, q)) = self.per_router.get_mut(&c.router) {
                *n -= 1;
                if *n == 0 {
                    q.clear();
                    self.per_router.remove(&c.router);
                }
            }
            slot.gen = slot.gen.wrapping_add(1);
            self.free.push(idx);
            self.live -= 1;
        }
    }

    /// Look at a few entries and remove the expired ones.
    pub fn sweep(&mut self, now: Instant, budget: usize) {
        if self.slots.is_empty() {
            return;
        }
        for _ in 0..budget.min(self.slots.len()) {
            self.sweep_at = (self.sweep_at + 1) % self.slots.len();
            let expired = self.slots[self.sweep_at].conn.as_ref().is_some_and(|c| c.expired(now));
            if expired {
                self.remove(self.sweep_at as u32);
            }
        }
    }
}

/// How [`ConnTable::make_room`] made room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// An expired connection not yet swept.
    Expired,
    /// A live connection that was never answered (early drop).
    EarlyDrop,
}

/// Connections tracked in all: NAT mappings and every router's firewall connections.
pub fn total(ct: &ConnTable, fw: &FwConns) -> usize {
    ct.len() + fw.values().map(ConnTable::len).sum::<usize>()
}

/// Connections of router `r`: its NAT mappings and its firewall's connections.
pub fn of_router(ct: &ConnTable, fw: &FwConns, r: RouterRef) -> usize {
    ct.count(r) + fw.get(&r).map_or(0, ConnTable::len)
}

/// Whether a protocol can get a new dynamic mapping (TCP, UDP, ICMP echo request).
pub fn can_originate(ip: &Ipv4) -> bool {
    matches!(ip.l4, L4::Tcp { .. } | L4::Udp { .. } | L4::Icmp { typ: ICMP_ECHO_REQUEST, .. })
        && matches!(ip.proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMP)
}

#[cfg(test)]
mod tests;
