//! A worker's copy of the learned entries its misses read (issue 14): looked up without the
//! learned table's lock and without writing a line another worker reads, and exact by the
//! entries' generations ([`Generations`]) — a copy is used only while its entry's generation is
//! the one it was read at, and an entry that changes bumps its generation under the lock.

use std::collections::hash_map::Entry::{Occupied, Vacant};
use std::collections::HashMap;
use std::net::IpAddr;

use rules::compile::NetRef;
use rules::model::Mac;

use super::{ArpScope, Dep, Entry, Generations, Learned, Location, MacSeen};

/// Entries kept before the copy starts again empty: a worker's working set, not the table.
const MAX: usize = 1 << 14;

/// A MAC's place and last-seen stamp, as learned.
type MacFound = Option<(Location, MacSeen)>;

#[derive(Debug, Default)]
pub struct LearnCache {
    /// The datapath epoch the copies were made in: a new snapshot renumbers networks and ports.
    epoch: u32,
    macs: HashMap<(NetRef, Mac), (Dep, MacFound), ahash::RandomState>,
    arps: HashMap<(ArpScope, IpAddr), (Dep, Option<Mac>), ahash::RandomState>,
}

impl LearnCache {
    /// Start again empty when the datapath moved to epoch `epoch` since the copies were made.
    pub fn at_epoch(&mut self, epoch: u32) {
        if self.epoch != epoch {
            self.epoch = epoch;
            self.macs.clear();
            self.arps.clear();
        }
    }

    /// Where `mac` is on `net` (and its last-seen stamp), with the generation that says so: from
    /// the copy while that generation holds, else from `learned` under its lock (`lock`).
    pub fn mac<'l>(
        &mut self,
        gens: &Generations,
        lock: impl FnOnce() -> std::sync::MutexGuard<'l, Learned>,
        net: NetRef,
        mac: Mac,
    ) -> (Dep, Option<&(Location, MacSeen)>) {
        let read = || {
            let l = lock();
            (l.gens.read(Entry::Mac(net, mac)), l.mac_entry(net, mac))
        };
        if self.macs.len() >= MAX && !self.macs.contains_key(&(net, mac)) {
            self.macs.clear();
        }
        let e = match self.macs.entry((net, mac)) {
            Occupied(o) if gens.unchanged(&o.get().0) => o.into_mut(),
            Occupied(o) => {
                let e = o.into_mut();
                *e = read();
                e
            }
            Vacant(v) => v.insert(read()),
        };
        (e.0, e.1.as_ref())
    }

    /// The MAC learned for `ip` in `scope`, with the generation that says so; as [`LearnCache::mac`].
    pub fn arp<'l>(
        &mut self,
        gens: &Generations,
        lock: impl FnOnce() -> std::sync::MutexGuard<'l, Learned>,
        scope: ArpScope,
        ip: IpAddr,
    ) -> (Dep, Option<Mac>) {
        if let Some(&(d, found)) = self.arps.get(&(scope, ip)) {
            if gens.unchanged(&d) {
                return (d, found);
            }
        }
        let got = {
            let l = lock();
            (l.gens.read(Entry::Arp(scope, ip)), l.arp(scope, ip))
        };
        if self.arps.len() >= MAX {
            self.arps.clear();
        }
        self.arps.insert((scope, ip), got);
        got
    }
}
