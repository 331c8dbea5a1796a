//! Invalidation by dependency (SPEC §9): a generation per learned entry, and what a flow holds
//! of the entries its simulation read.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rules::compile::NetRef;
use rules::model::Mac;

use super::ArpScope;

/// A learned entry, as its generation is found: a MAC of a network, the room in a network's
/// MAC table (a learn it refused may succeed once an entry goes), an ARP or ND entry.
#[derive(Debug, Clone, Copy, Hash)]
pub enum Entry {
    Mac(NetRef, Mac),
    Room(NetRef),
    Arp(ArpScope, IpAddr),
}

/// The generation of an entry as a simulation read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dep {
    slot: u32,
    gen: u32,
}

/// A generation per learned entry, hashed into [`Generations::SLOTS`] shared counters: the slow
/// path bumps an entry's slot when the entry changes (under the state lock), a cache hit loads
/// the slots its flow read. Two entries that share a slot only make a flow re-simulated once
/// more than it had to be; a change is never missed. Entries hash with a fixed key, so replays
/// behave alike on every machine.
#[derive(Debug)]
pub struct Generations(Arc<GenTable>);

#[derive(Debug)]
pub struct GenTable(Box<[AtomicU32]>);

impl Default for Generations {
    fn default() -> Self {
        Generations(Arc::new(GenTable((0..Self::SLOTS).map(|_| AtomicU32::new(0)).collect())))
    }
}

/// A copy for a scratch state (a trace) counts on its own: what it learns moves no real flow.
impl Clone for Generations {
    fn clone(&self) -> Self {
        Generations(Arc::new(GenTable(self.0 .0.iter().map(|g| AtomicU32::new(g.load(Ordering::Relaxed))).collect())))
    }
}

impl Generations {
    /// 2^16 slots, 256 KiB: a flow reads 1–3 entries, so a learned MAC invalidates an
    /// unrelated flow of 1 000 with a chance of about 3 %.
    pub const SLOTS: usize = 1 << 16;

    fn slot(e: Entry) -> u32 {
        let mut h = std::hash::DefaultHasher::new();
        e.hash(&mut h);
        (h.finish() as usize % Self::SLOTS) as u32
    }

    fn at(&self, slot: u32) -> Option<&AtomicU32> {
        self.0 .0.get(slot as usize)
    }

    /// `e`'s generation now.
    pub fn read(&self, e: Entry) -> Dep {
        let slot = Self::slot(e);
        Dep { slot, gen: self.at(slot).map_or(0, |g| g.load(Ordering::Acquire)) }
    }

    /// `e` changed: flows that read it are stale.
    pub(super) fn bump(&self, e: Entry) {
        if let Some(g) = self.at(Self::slot(e)) {
            g.fetch_add(1, Ordering::Release);
        }
    }

    /// Another handle on the same counters (a worker's, to check its flows with).
    pub fn share(&self) -> Generations {
        Generations(self.0.clone())
    }

    /// `d`'s entry has not changed since `d` was read.
    #[inline]
    pub fn unchanged(&self, d: &Dep) -> bool {
        self.0 .0.get(d.slot as usize).is_some_and(|g| g.load(Ordering::Acquire) == d.gen)
    }
}

/// The learned entries a flow read, with their generations then: fresh while none moved. It
/// holds no handle on the counters — the worker checking it has one ([`Generations::share`]),
/// so installing a flow moves no shared reference count. Up to two (what most flows read) lie
/// in the flow itself.
#[derive(Debug)]
pub enum LearnedDeps {
    Few(u8, [Dep; 2]),
    Many(Box<[Dep]>),
}

impl Default for LearnedDeps {
    fn default() -> Self {
        LearnedDeps::Few(0, [Dep { slot: 0, gen: 0 }; 2])
    }
}

impl LearnedDeps {
    pub fn of(read: &[Dep]) -> LearnedDeps {
        let mut few = [Dep { slot: 0, gen: 0 }; 2];
        match few.get_mut(..read.len()) {
            Some(into) => {
                into.copy_from_slice(read);
                LearnedDeps::Few(read.len() as u8, few)
            }
            None => LearnedDeps::Many(read.into()),
        }
    }

    fn read(&self) -> &[Dep] {
        match self {
            LearnedDeps::Few(n, d) => d.get(..*n as usize).unwrap_or_default(),
            LearnedDeps::Many(d) => d,
        }
    }

    #[inline]
    pub fn fresh(&self, gens: &Generations) -> bool {
        self.read().iter().all(|d| gens.unchanged(d))
    }

    /// How many entries it read.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
