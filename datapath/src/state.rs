//! What the datapath keeps between packets, which the simulation reads and changes: learned MAC
//! and ARP entries ([`crate::learn`]), NAT and firewall connections ([`crate::ct`]), fip64
//! bindings, and the bounds of each ([`crate::limits`]). A reload carries it over
//! ([`crate::carry`]), a restart saves it ([`crate::persist`]).
//!
//! [`State`] is the tables as plain values (a copy for a trace, what a reload or a restart works
//! on); [`Tables`] is how [`crate::shared::Shared`] keeps them: each table behind a lock of its
//! own, taken by a miss only for the lookup or change it makes, so misses of different workers
//! run side by side instead of one after the other (issue 14). Locks are taken in one order —
//! `ct`, `fw`, `fip64`, `learned` — wherever more than one is held.

use std::sync::{Mutex, MutexGuard};

use crate::ct::bindings::Bindings;
use crate::ct::{ConnTable, FwConns};
use crate::learn::{Generations, Learned};
use crate::limits::Limits;

#[derive(Debug, Default, Clone)]
pub struct State {
    pub learned: Learned,
    pub ct: ConnTable,
    pub fw: FwConns,
    /// fip64 bindings (SPEC §11).
    pub fip64: Bindings,
    pub limits: Limits,
}

/// The tables of a [`State`], each behind its own lock.
#[derive(Debug)]
pub struct Tables {
    ct: Mutex<ConnTable>,
    fw: Mutex<FwConns>,
    fip64: Mutex<Bindings>,
    learned: Mutex<Learned>,
    /// The tunnels' outer headers new flows share (taken alone, for one lookup).
    encaps: Mutex<crate::wire::vxlan::Shared>,
    /// The learned entries' generations, read without the lock ([`crate::learn::LearnCache`]);
    /// the same counters for as long as the tables live, whatever replaces their contents.
    gens: Generations,
    limits: Limits,
}

/// A table's lock; a worker that panicked mid-update leaves a table that is still a well-formed
/// map, so a poisoned lock is taken as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for Tables {
    fn default() -> Self {
        Tables::new(State::default())
    }
}

impl Tables {
    pub fn new(s: State) -> Tables {
        Tables {
            gens: s.learned.gens.share(),
            ct: Mutex::new(s.ct),
            fw: Mutex::new(s.fw),
            fip64: Mutex::new(s.fip64),
            learned: Mutex::new(s.learned),
            encaps: Mutex::default(),
            limits: s.limits,
        }
    }

    pub fn gens(&self) -> &Generations {
        &self.gens
    }

    pub fn ct(&self) -> MutexGuard<'_, ConnTable> {
        lock(&self.ct)
    }

    pub fn fw(&self) -> MutexGuard<'_, FwConns> {
        lock(&self.fw)
    }

    pub fn fip64(&self) -> MutexGuard<'_, Bindings> {
        lock(&self.fip64)
    }

    pub fn learned(&self) -> MutexGuard<'_, Learned> {
        lock(&self.learned)
    }

    pub fn encaps(&self) -> MutexGuard<'_, crate::wire::vxlan::Shared> {
        lock(&self.encaps)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Work on every table at once, as one [`State`] (a reload, a restore, a report), with the
    /// tables to itself. The generations stay the same counters, even when `f` puts new learned
    /// tables in place: workers hold them.
    pub fn with_all<R>(&mut self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = State {
            ct: std::mem::take(self.ct.get_mut().unwrap_or_else(|e| e.into_inner())),
            fw: std::mem::take(self.fw.get_mut().unwrap_or_else(|e| e.into_inner())),
            fip64: std::mem::take(self.fip64.get_mut().unwrap_or_else(|e| e.into_inner())),
            learned: std::mem::take(self.learned.get_mut().unwrap_or_else(|e| e.into_inner())),
            limits: self.limits,
        };
        let r = f(&mut s);
        s.learned.gens = self.gens.share();
        *self = Tables::new(s);
        r
    }

    /// Read every table at once (a report, a save): the locks in order, held while `f` runs.
    pub fn read_all<R>(&self, f: impl FnOnce(&ConnTable, &FwConns, &Bindings, &Learned, Limits) -> R) -> R {
        let (ct, fw, fip64, learned) = (self.ct(), self.fw(), self.fip64(), self.learned());
        f(&ct, &fw, &fip64, &learned, self.limits)
    }

    /// A copy of every table, sharing nothing with these (a trace runs on it).
    pub fn copy(&self) -> State {
        self.read_all(|ct, fw, fip64, learned, limits| State {
            ct: ct.clone(),
            fw: fw.clone(),
            fip64: fip64.clone(),
            learned: learned.clone(),
            limits,
        })
    }
}
