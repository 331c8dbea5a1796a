//! fip64 bindings (SPEC §11): which address of a router's NAT64 pool stands for which IPv6
//! client. One binding per client per router; it lives while either direction uses it.
//!
//! The pool is 100.64.0.0/10 (RFC 6598), less its first and last address: `Limits::fip64_pool`
//! addresses from 100.64.0.1 upward (all 4 194 302 by default; tests use a few). A client's
//! address is chosen without state from the client alone, so a replay binds the same addresses
//! on every run: FNV-1a (32-bit) over the 16 bytes of the client address, modulo the pool size,
//! is the first candidate; the next ones go upward, wrapping. A candidate bound to a live client
//! is skipped; one whose binding expired is reclaimed. When the router holds as many bindings
//! as it may (`Limits::fip64_bindings_per_router`, or the pool is full) the least recently used
//! binding is let go first — its address is the one a full pool then gives (as MidoNet did).
//!
//! A binding expires after 2 h 4 min without a packet either way (RFC 5382's established-TCP
//! timeout, so no live connection loses its address). What the hit path touches is the
//! binding's [`BindingLive`] (atomics, shared with the flows of both directions); the table is
//! changed under its own lock (`state.rs`), on the slow path.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rules::compile::RouterRef;

use crate::time::Instant;

/// Idle time after which a binding is let go.
pub const BINDING_TIMEOUT: Duration = Duration::from_secs(2 * 3600 + 4 * 60);

/// The first address of the pool (100.64.0.0 is its network address, never bound).
pub const POOL_BASE: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);

/// Addresses of 100.64.0.0/10 a pool may use: all but the first and the last.
pub const POOL_MAX: u32 = (1 << 22) - 2;

/// Whether `a` is in 100.64.0.0/10.
pub fn in_pool(a: Ipv4Addr) -> bool {
    u32::from(a) >> 22 == u32::from(POOL_BASE) >> 22
}

/// The pool offset a client's address is tried at first (`size` addresses), by the fixed hash
/// of the module text.
pub fn first_candidate(client: Ipv6Addr, size: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in client.octets() {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    h % size.max(1)
}

fn pool_addr(offset: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(POOL_BASE) + 1 + offset)
}

/// What changes with every packet of a binding: when it was last used, and whether the table
/// let it go.
#[derive(Debug)]
pub struct BindingLive {
    last_seen: AtomicU64,
    gone: AtomicBool,
}

impl BindingLive {
    fn last_seen(&self) -> Instant {
        Instant(self.last_seen.load(Ordering::Relaxed))
    }

    fn expired(&self, now: Instant) -> bool {
        now.since(self.last_seen()) > BINDING_TIMEOUT
    }

    fn record(&self, now: Instant) {
        if self.last_seen.load(Ordering::Relaxed) < now.0 {
            self.last_seen.fetch_max(now.0, Ordering::Relaxed);
        }
    }
}

/// A flow's hold on a binding: what a hit touches.
#[derive(Debug, Clone)]
pub struct BindingRef(Arc<BindingLive>);

impl BindingRef {
    /// Record a packet of the binding, without the state lock. False when it is gone or
    /// expired: the caller simulates again.
    #[inline]
    pub fn touch(&self, now: Instant) -> bool {
        if self.0.gone.load(Ordering::Acquire) || self.0.expired(now) {
            return false;
        }
        self.0.record(now);
        true
    }
}

/// One client's stand-in address on one router.
#[derive(Debug)]
pub struct Binding {
    pub router: RouterRef,
    pub client: Ipv6Addr,
    pub pool: Ipv4Addr,
    live: Arc<BindingLive>,
}

impl Binding {
    pub fn hold(&self) -> BindingRef {
        BindingRef(self.live.clone())
    }

    /// How long since a packet used it.
    pub fn idle(&self, now: Instant) -> Duration {
        now.since(self.live.last_seen())
    }
}

impl Clone for Binding {
    /// A copy with its own per-packet state (a trace's scratch copy of the table).
    fn clone(&self) -> Binding {
        let live = BindingLive {
            last_seen: AtomicU64::new(self.live.last_seen.load(Ordering::Relaxed)),
            gone: AtomicBool::new(self.live.gone.load(Ordering::Relaxed)),
        };
        Binding { router: self.router, client: self.client, pool: self.pool, live: Arc::new(live) }
    }
}

/// Every router's bindings.
#[derive(Debug, Default, Clone)]
pub struct Bindings {
    by_client: HashMap<(RouterRef, Ipv6Addr), Binding>,
    by_pool: HashMap<(RouterRef, Ipv4Addr), Ipv6Addr>,
    per_router: BTreeMap<RouterRef, usize>,
}

/// How many bindings a router may hold and from how many addresses (`crate::limits::Limits`).
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    pub pool: u32,
    pub per_router: usize,
}

impl Bindings {
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Bindings of router `r`.
    pub fn count(&self, r: RouterRef) -> usize {
        self.per_router.get(&r).copied().unwrap_or(0)
    }

    /// The live binding of pool address `pool` on router `r` (4 → 6).
    pub fn by_pool(&mut self, r: RouterRef, pool: Ipv4Addr, now: Instant) -> Option<&Binding> {
        let client = *self.by_pool.get(&(r, pool))?;
        self.by_client(r, client, now)
    }

    /// The live binding of `client` on router `r`; an expired one is removed on the way.
    pub fn by_client(&mut self, r: RouterRef, client: Ipv6Addr, now: Instant) -> Option<&Binding> {
        if self.by_client.get(&(r, client))?.live.expired(now) {
            self.remove(r, client);
            return None;
        }
        self.by_client.get(&(r, client))
    }

    /// The binding of `client` on router `r`, made when it has none (6 → 4); its use is recorded.
    pub fn bind(&mut self, r: RouterRef, client: Ipv6Addr, cap: Capacity, now: Instant) -> &Binding {
        if self.by_client(r, client, now).is_none() {
            let size = cap.pool.clamp(1, POOL_MAX);
            if self.count(r) >= cap.per_router.min(size as usize) {
                self.let_go_least_recent(r);
            }
            let start = first_candidate(client, size);
            let mut offset = start;
            loop {
                let addr = pool_addr(offset);
                match self.by_pool.get(&(r, addr)).copied() {
                    None => break,
                    Some(holder) if self.by_client(r, holder, now).is_none() => break,
                    Some(_) => {}
                }
                offset = (offset + 1) % size;
                if offset == start {
                    // The count check above leaves an address free, so this is never reached;
                    // were it, the least recently used binding makes room rather than a loop.
                    self.let_go_least_recent(r);
                }
            }
            let pool = pool_addr(offset);
            let live = Arc::new(BindingLive { last_seen: AtomicU64::new(now.0), gone: AtomicBool::new(false) });
            self.by_pool.insert((r, pool), client);
            self.by_client.insert((r, client), Binding { router: r, client, pool, live });
            *self.per_router.entry(r).or_default() += 1;
        }
        let b = &self.by_client[&(r, client)];
        b.live.record(now);
        b
    }

    /// Let go of router `r`'s least recently used binding (the oldest last use; the lowest pool
    /// address among equals, so a replay takes the same one).
    fn let_go_least_recent(&mut self, r: RouterRef) {
        let lru = self.by_client.values().filter(|b| b.router == r).min_by_key(|b| (b.live.last_seen(), b.pool)).map(|b| b.client);
        if let Some(client) = lru {
            self.remove(r, client);
        }
    }

    fn remove(&mut self, r: RouterRef, client: Ipv6Addr) {
        if let Some(b) = self.by_client.remove(&(r, client)) {
            b.live.gone.store(true, Ordering::Release);
            self.by_pool.remove(&(r, b.pool));
            if let Some(n) = self.per_router.get_mut(&r) {
                *n -= 1;
                if *n == 0 {
                    self.per_router.remove(&r);
                }
            }
        }
    }

    /// Every binding, sorted by router and pool address.
    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        let mut all: Vec<&Binding> = self.by_client.values().collect();
        all.sort_by_key(|b| (b.router, b.pool));
        all.into_iter()
    }

    /// Keep the bindings `to` gives a router for (moved to it), let the others go (a new
    /// snapshot: a binding stays while its router keeps a fip64, `carry.rs`).
    pub fn remap(&mut self, mut to: impl FnMut(&Binding) -> Option<RouterRef>) {
        let old = std::mem::take(&mut self.by_client);
        self.by_pool.clear();
        self.per_router.clear();
        for (_, mut b) in old {
            match to(&b) {
                Some(r) => {
                    b.router = r;
                    self.by_pool.insert((r, b.pool), b.client);
                    *self.per_router.entry(r).or_default() += 1;
                    self.by_client.insert((r, b.client), b);
                }
                None => b.live.gone.store(true, Ordering::Release),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: RouterRef = RouterRef(0);

    fn client(n: u16) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, n)
    }

    #[test]
    fn one_address_per_client_by_hash_then_upward() {
        let mut t = Bindings::default();
        let cap = Capacity { pool: 8, per_router: 100 };
        let now = Instant(0);
        let a = t.bind(R, client(1), cap, now).pool;
        assert_eq!(a, pool_addr(first_candidate(client(1), 8)));
        assert_eq!(t.bind(R, client(1), cap, now).pool, a, "a client keeps its address");
        // Clients hashing to taken addresses go upward.
        let mut seen = vec![a];
        for n in 2..=8 {
            let p = t.bind(R, client(n), cap, now).pool;
            assert!(!seen.contains(&p), "{p} given twice");
            assert!(in_pool(p));
            seen.push(p);
        }
        assert_eq!(t.len(), 8);
        assert_eq!(t.by_pool(R, a, now).map(|b| b.client), Some(client(1)));
    }

    #[test]
    fn a_full_pool_lets_the_least_recently_used_go() {
        let mut t = Bindings::default();
        let cap = Capacity { pool: 2, per_router: 100 };
        let a = t.bind(R, client(1), cap, Instant(1)).pool;
        let b = t.bind(R, client(2), cap, Instant(2)).pool;
        let held = t.by_client[&(R, client(1))].hold();
        // client 1 is used again, so client 2 is the least recently used.
        t.bind(R, client(1), cap, Instant(3));
        let c = t.bind(R, client(3), cap, Instant(4)).pool;
        assert_eq!(c, b, "the third client takes the second one's address");
        assert!(t.by_pool(R, a, Instant(4)).is_some_and(|x| x.client == client(1)));
        assert!(held.touch(Instant(5)), "client 1's binding lives on");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn bindings_expire_after_two_hours_four_minutes_idle() {
        let mut t = Bindings::default();
        let cap = Capacity { pool: 16, per_router: 100 };
        let a = t.bind(R, client(1), cap, Instant(0)).pool;
        let h = t.by_client[&(R, client(1))].hold();
        let just = Instant(0).saturating_add(BINDING_TIMEOUT);
        assert!(t.by_pool(R, a, just).is_some());
        let after = just.saturating_add(BINDING_TIMEOUT + Duration::from_secs(1));
        assert!(!h.touch(after));
        assert!(t.by_pool(R, a, after).is_none());
        assert!(t.is_empty());
    }
}
