//! The state every worker shares, and the locks the slow path takes (SPEC §9).
//!
//! [`Shared`] holds the running snapshot and the learned, NAT, firewall and fip64 tables
//! ([`crate::state::Tables`], each behind a lock of its own), and is the only thing that takes
//! them: workers call its few operations — [`Shared::simulate`] a miss (and install its flow),
//! [`Shared::run_timers`], [`Shared::finish`] (let go of what waits), [`Shared::set_topology`]
//! (swap the snapshot), [`Shared::trace_packet`] (on a copy) — and a cache hit takes no lock at
//! all: it reads the epoch and the timer deadline here, and the atomics its flow holds.
//!
//! Misses of different workers run side by side: a simulation holds the snapshot gate shared
//! and locks each table only for the one lookup or change it makes. What changes the snapshot
//! or works on every table at once (a reload, the timers, a report) holds the gate alone, so it
//! never meets a simulation half done.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rules::compile::Topology;
use rules::model::Mac;

use crate::ct::ConnTable;
use crate::fastpath::{send_frames, TxBuf};
use crate::fwlog::FwLogger;
use crate::gate::{Gate, Read, Write};
use crate::iface::{IfIdx, IfaceError, Ifaces};
use crate::install::{install, Installed, Packet};
use crate::learn::{Generations, LearnCache};
use crate::limits::{Limits, TableFill};
use crate::qos::QosBuckets;
use crate::sim::{frame::Frame, Sim, SimResult};
use crate::state::Tables;
use crate::time::Instant;

/// One snapshot as the datapath runs it: the compiled topology, this host's interfaces (each in
/// the slot it keeps while snapshots bind it, with whether it exists now) and the QoS buckets of
/// its ports.
pub struct Snap {
    pub topo: Arc<Topology>,
    pub ifs: Ifaces,
    pub qos: Arc<QosBuckets>,
}

/// What the slow path reads and changes, behind [`Shared`]'s gate: the running snapshot and the
/// tables.
struct SlowPath {
    snap: Arc<Snap>,
    tables: Tables,
    /// When the next unsolicited router advertisements go (SPEC §10.3); the start of the clock
    /// until the first, so the first input (or live tick) sends them.
    next_adverts: Instant,
}

/// How often the unsolicited router advertisements go (SPEC §10.3).
pub const ADVERT_EVERY: std::time::Duration = std::time::Duration::from_secs(100);

impl SlowPath {
    /// The earliest ARP retry, MAC aging or router advertisement due, as packet-clock
    /// nanoseconds (`u64::MAX`: none).
    fn timers_due(&self) -> u64 {
        let learned = self.tables.learned();
        let arp = learned.pending.values().map(|p| p.next_try.0).min().unwrap_or(u64::MAX);
        let adverts = if self.snap.topo.ports.iter().any(|p| p.advert.is_some()) { self.next_adverts.0 } else { u64::MAX };
        arp.min(learned.aging_due(&self.tables.limits())).min(adverts)
    }
}

/// The state every worker of one datapath shares (SPEC §9): both directions of a connection may
/// reach different workers, so connections, NAT mappings, learned entries and the snapshot live
/// here. The slow path (a miss, a timer, a reload, a report) takes the gate and the tables'
/// locks; a cache hit takes none — it reads the epoch and timer deadline below and the atomics
/// its flow holds.
pub struct Shared {
    host: String,
    macs: HashMap<String, Mac>,
    /// Set by live mode, which follows the kernel's links: interfaces a new snapshot adds start
    /// absent until their link is seen ([`Shared::set_link`]). Replay's always exist.
    follow_links: std::sync::atomic::AtomicBool,
    /// Read by simulations side by side (each worker through a lock of its own), written alone
    /// by what swaps the snapshot or works on every table.
    core: Gate<SlowPath>,
    /// Numbers workers as they are made, for their reader lock of `core`.
    workers: AtomicU64,
    /// Bumped with the gate held alone by a new snapshot, an interface that comes or goes, and a
    /// restored state; flows remember the value they were made at (a learned entry moves only
    /// the flows that read it: `learn/gens.rs`).
    epoch: std::sync::atomic::AtomicU32,
    /// Bumped with the gate held alone whenever [`SlowPath::snap`] is replaced, so a worker sees
    /// without a lock that it should take the new one ([`crate::Datapath::refresh`]).
    snap_gen: AtomicU64,
    /// [`SlowPath::timers_due`]: set when the timers run, and only ever made earlier by a miss
    /// that set a timer.
    timers_due: AtomicU64,
    fwlog: OnceLock<FwLogger>,
    /// `trace --live` and `capture --drops` (`tap.rs`).
    tap: crate::tap::Tap,
}

impl Shared {
    /// The shared state of a datapath for host `host` of `topo`; `macs` gives interfaces' own MACs
    /// (SPEC §4 `--mac`).
    pub fn new(topo: Arc<Topology>, host: &str, macs: &HashMap<String, Mac>) -> Result<Shared, IfaceError> {
        let ifs = Ifaces::for_host(&topo, host, macs)?;
        let qos = QosBuckets::for_topology(&topo);
        let snap = Arc::new(Snap { topo, ifs, qos });
        Ok(Shared {
            host: host.to_string(),
            macs: macs.clone(),
            follow_links: Default::default(),
            core: Gate::new(SlowPath { snap, tables: Tables::default(), next_adverts: Instant(0) }),
            workers: AtomicU64::new(0),
            epoch: std::sync::atomic::AtomicU32::new(0),
            snap_gen: AtomicU64::new(0),
            // The first input runs the timers: router advertisements may be due.
            timers_due: AtomicU64::new(0),
            fwlog: OnceLock::new(),
            tap: crate::tap::Tap::default(),
        })
    }

    /// The gate alone: nothing else runs on the tables or the snapshot meanwhile.
    fn lock(&self) -> Write<'_, SlowPath> {
        self.core.write()
    }

    /// The gate shared, as a report reads it (workers read as themselves, [`Shared::simulate`]).
    fn read(&self) -> Read<'_, SlowPath> {
        self.core.read(usize::MAX)
    }

    /// The learned entries' generations, by which a worker checks its flows.
    pub fn generations(&self) -> Generations {
        self.read().tables.gens().share()
    }

    /// A number for a new worker, by which it reads the gate.
    pub fn new_worker(&self) -> usize {
        self.workers.fetch_add(1, Ordering::Relaxed) as usize
    }

    /// The snapshot running now.
    pub fn snapshot(&self) -> Arc<Snap> {
        self.read().snap.clone()
    }

    /// Run a new snapshot from the next packet on (SPEC §9): every cached flow is stale from
    /// then on; learned entries and connections are carried over where their resources and
    /// rules remain (`carry.rs`). Refused, and the old snapshot kept, when this host is not in
    /// it. The new snapshot may bind other interfaces (VMs created, deleted, migrated): those that
    /// stay keep their slot ([`Ifaces::rebind`]), released ones lose what waited to leave by
    /// them, and new ones are absent until [`Shared::set_link`] sees them when links are
    /// followed. Returns how many packets waiting for ARP were let go
    /// ([`DropReason::SnapshotRemoved`]).
    pub fn set_topology(&self, topo: Arc<Topology>) -> Result<u64, IfaceError> {
        let mut core = self.lock();
        let present = !self.follow_links.load(Ordering::Relaxed);
        let (ifs, released) = core.snap.ifs.rebind(&topo, &self.host, &self.macs, present)?;
        let old_topo = core.snap.topo.clone();
        let remap = crate::carry::Remap::between(&old_topo, &topo);
        let dropped =
            core.tables.with_all(|state| crate::carry::carry_over(state, &remap, &topo) + state.learned.release_ifaces(&released));
        let qos = QosBuckets::for_topology(&topo);
        self.replace_snap(&mut core, Snap { topo, ifs, qos });
        Ok(dropped)
    }

    /// Put `snap` in place of the running snapshot: flows remember the epoch they were made in,
    /// so every one is stale from the next packet on, and workers take the new one.
    fn replace_snap(&self, core: &mut SlowPath, snap: Snap) {
        core.snap = Arc::new(snap);
        self.timers_due.store(core.timers_due(), Ordering::Release);
        self.epoch.fetch_add(1, Ordering::Release);
        self.snap_gen.fetch_add(1, Ordering::Release);
    }

    /// Follow the machine's links (live mode): interfaces new snapshots add start absent.
    pub fn follow_links(&self) {
        self.follow_links.store(true, Ordering::Relaxed);
    }

    /// Mark every interface absent (live mode, at start): each becomes present when its link is
    /// seen and every worker has a socket on it ([`Shared::set_link`]). Present from the start, a
    /// frame sent toward one not bound yet was a send error.
    pub fn all_absent(&self) {
        let mut core = self.lock();
        let mut ifs = core.snap.ifs.clone();
        ifs.list.iter_mut().for_each(|i| i.present = false);
        let (topo, qos) = (core.snap.topo.clone(), core.snap.qos.clone());
        self.replace_snap(&mut core, Snap { topo, ifs, qos });
    }

    /// Interface `name` exists now (with its own MAC, when it has one) or not (SPEC §2): frames
    /// toward an absent one are dropped (`port_absent`); flows made before are stale. False when
    /// the running snapshot binds no such interface.
    pub fn set_link(&self, name: &str, present: bool, mac: Option<Mac>) -> bool {
        let mut core = self.lock();
        let mut ifs = core.snap.ifs.clone();
        let Some(iface) = ifs.by_name(name).and_then(|i| ifs.slot_mut(i)) else { return false };
        let mac = mac.or(self.macs.get(name).copied()).unwrap_or(iface.mac);
        if iface.present == present && iface.mac == mac {
            return true;
        }
        iface.present = present;
        iface.mac = mac;
        let (topo, qos) = (core.snap.topo.clone(), core.snap.qos.clone());
        self.replace_snap(&mut core, Snap { topo, ifs, qos });
        true
    }

    /// Write firewall logs under `dir` (SPEC §8), through a bounded queue and a writer thread.
    /// Set once, before packets flow.
    pub fn set_fw_log_dir(&self, dir: std::path::PathBuf) {
        if self.fwlog.get().is_none() {
            let _ = self.fwlog.set(FwLogger::start(dir));
        }
    }

    /// The tap (`trace --live`, `capture --drops`).
    pub fn tap(&self) -> &crate::tap::Tap {
        &self.tap
    }

    /// Firewall log lines dropped so far because the writer's queue was full.
    pub fn fw_log_dropped(&self) -> u64 {
        self.fwlog.get().map_or(0, FwLogger::dropped)
    }

    /// The bounds of the tables (SPEC §9).
    pub fn limits(&self) -> Limits {
        self.read().tables.limits()
    }

    /// Each table's fill against its bound; `flows` is each worker's flow count.
    pub fn tables(&self, flows: Vec<usize>) -> TableFill {
        let core = self.read();
        let routers = core.snap.topo.routers.len() as u32;
        core.tables.read_all(|ct, fw, fip64, learned, limits| {
            let routers = || (0..routers).map(rules::compile::RouterRef);
            let (macs, arps) = learned.sizes();
            let (fullest_network_macs, fullest_router_arps) = learned.fullest();
            TableFill {
                limits,
                connections: crate::ct::total(ct, fw),
                fullest_router_connections: routers().map(|r| crate::ct::of_router(ct, fw, r)).max().unwrap_or(0),
                macs,
                fullest_network_macs,
                arps,
                fullest_router_arps,
                waiting: learned.pending.len(),
                flows,
                fip64_bindings: fip64.len(),
                fullest_router_fip64_bindings: routers().map(|r| fip64.count(r)).max().unwrap_or(0),
                refused: learned.refused,
            }
        })
    }

    /// The connections and learned entries, as `persist.rs` writes them.
    pub fn save_state(&self) -> String {
        let mut core = self.lock();
        let topo = core.snap.topo.clone();
        core.tables.with_all(|state| crate::persist::save(state, &topo))
    }

    /// Put back a saved state, carried over to the running snapshot (before traffic).
    pub fn restore_state(&self, text: &str) -> Result<crate::persist::Restored, String> {
        let mut core = self.lock();
        let topo = core.snap.topo.clone();
        let r = core.tables.with_all(|state| crate::persist::restore(text, state, &topo))?;
        self.timers_due.store(core.timers_due(), Ordering::Release);
        self.epoch.fetch_add(1, Ordering::Release);
        Ok(r)
    }

    /// Connections tracked now (NAT and firewall).
    /// Each router with tracked connections: its id, its NAT mappings and its firewall's
    /// connections.
    pub fn connections_by_router(&self) -> Vec<(String, usize, usize)> {
        let core = self.read();
        let topo = core.snap.topo.clone();
        core.tables.read_all(|ct, fw, _, _, _| {
            (0..topo.routers.len() as u32)
                .map(rules::compile::RouterRef)
                .map(|r| (r, ct.count(r), fw.get(&r).map_or(0, crate::ct::ConnTable::len)))
                .filter(|&(_, nat, fw)| nat + fw > 0)
                .map(|(r, nat, fw)| (topo.router(r).id.clone(), nat, fw))
                .collect()
        })
    }

    pub fn connection_count(&self) -> usize {
        let core = self.read();
        core.tables.read_all(|ct, fw, _, _, _| crate::ct::total(ct, fw))
    }

    /// What the simulation would do with `frame` arriving on `iface` now, without changing
    /// anything: it runs on a copy of the learned, NAT and firewall state. The steps, then one line
    /// per frame that would leave.
    pub fn trace_packet(&self, iface: IfIdx, frame: &[u8], now: Instant) -> crate::report::TraceRecord {
        let (snap, state) = {
            let core = self.read();
            (core.snap.clone(), core.tables.copy())
        };
        crate::report::trace(&snap.topo, &snap.ifs, &snap.qos, &Tables::new(state), iface, frame, now)
    }

    /// The connections (NAT mappings, firewall state, fip64 bindings) at `now`.
    pub fn conntrack_records(&self, now: Instant) -> Vec<crate::report::ConnRecord> {
        let mut core = self.lock();
        let topo = core.snap.topo.clone();
        core.tables.with_all(|state| crate::report::conntrack(state, &topo, now))
    }

    /// [`Shared::conntrack_records`], one `key=value` line each.
    pub fn conntrack_report(&self, now: Instant) -> String {
        self.conntrack_records(now).iter().map(crate::report::ConnRecord::line).collect::<Vec<_>>().join("\n")
    }

    /// Replace the connection table (tests use small SNAT pools).
    pub fn set_conn_table(&self, ct: ConnTable) {
        self.lock().tables.with_all(|state| state.ct = ct);
    }

    /// Set the tables' bounds (before traffic).
    pub fn set_limits(&self, limits: Limits) {
        self.lock().tables.with_all(|state| state.limits = limits);
    }

    // ---- what workers need ---------------------------------------------------------------

    /// The running snapshot and its generation, when it is not generation `seen` (one atomic
    /// load when nothing changed).
    pub fn snapshot_since(&self, seen: u64) -> Option<(Arc<Snap>, u64)> {
        if self.snap_gen.load(Ordering::Acquire) == seen {
            return None;
        }
        Some(self.current())
    }

    /// The running snapshot's interface names by slot (released slots empty), for summaries.
    pub fn slot_names(&self) -> Vec<String> {
        self.snapshot().ifs.list.iter().map(|i| i.name.clone()).collect()
    }

    /// The running snapshot and its generation.
    pub fn current(&self) -> (Arc<Snap>, u64) {
        let core = self.read();
        (core.snap.clone(), self.snap_gen.load(Ordering::Acquire))
    }

    /// The epoch flows are made at and checked against (without the lock). 32 bits: a reload a
    /// second for a century does not wrap it.
    #[inline]
    pub fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether a timer is due at `now` (without the lock).
    #[inline]
    pub fn timers_due(&self, now: Instant) -> bool {
        now.0 >= self.timers_due.load(Ordering::Acquire)
    }

    /// The firewall log writer, when logs are written.
    #[inline]
    pub fn fwlog(&self) -> Option<&FwLogger> {
        self.fwlog.get()
    }

    /// The slow path: simulate packet `p` on the snapshot running now, and when `keyed` (the frame
    /// has a flow key) and the result may be cached, install its flow. Firewall events are logged,
    /// the input counted once it left or was dropped, expired connections swept.
    ///
    /// `worker` is the worker's number ([`Shared::new_worker`]) and `running` the generation of
    /// the snapshot it runs: the miss hands back the snapshot it ran on only when that is
    /// another, so a miss moves no shared count.
    pub fn simulate(&self, worker: usize, running: u64, cache: &mut LearnCache, p: &Packet, keyed: bool, trace: bool) -> Miss {
        let now = p.now;
        // The epoch before the snapshot: a reload between the two leaves the flow stale.
        let epoch = self.epoch.load(Ordering::Acquire);
        let core = self.core.read(worker);
        let snap = &core.snap;
        let snap_gen = self.snap_gen.load(Ordering::Acquire);
        let tables = &core.tables;
        cache.at_epoch(epoch);
        let mut sim = Sim::new(&snap.topo, &snap.ifs, tables, cache, &snap.qos, now, trace);
        sim.ingress(p.iface, Frame { buf: p.frame.to_vec(), h: *p.headers, encap_len: 0 });
        let res = sim.res;
        if let Some(logger) = self.fwlog.get() {
            for log in &res.fw_events {
                logger.log(log.event(&snap.topo, now));
            }
        }
        if let Some(input) = res.input.filter(|_| !res.queued) {
            // Sent or dropped now: the copies that wait count nothing more.
            tables.learned().counted(input);
        }
        if res.conn.is_some() {
            // Two slots looked at for every connection made keep expired ones from piling up.
            tables.ct().sweep(now, 2);
        }
        if res.new_timer {
            // Only ever earlier here: another worker's miss may have set a nearer deadline, and a
            // deadline passed over is found and set again when the timers run.
            self.timers_due.fetch_min(core.timers_due(), Ordering::AcqRel);
        }
        let flow = match keyed && res.cacheable {
            true => install(&res, tables, epoch, p),
            false => None,
        };
        let snap = (snap_gen != running).then(|| (snap.clone(), snap_gen));
        Miss { snap, res, flow }
    }

    /// Run the timers due at `now` (SPEC §6.4 ARP retries and give-ups, §9 MAC aging), sending
    /// what they send to `tx`. Returns the snapshot they ran on and how many waiting inputs were
    /// given up (`arp_unresolved`).
    pub fn run_timers(&self, now: Instant, tx: &mut TxBuf) -> (Arc<Snap>, u64, u64) {
        let mut core = self.lock();
        let snap = core.snap.clone();
        let snap_gen = self.snap_gen.load(Ordering::Acquire);
        let adverts_due = now >= core.next_adverts;
        let mut cache = LearnCache::default();
        let mut sim = Sim::new(&snap.topo, &snap.ifs, &core.tables, &mut cache, &snap.qos, now, false);
        let unresolved = sim.arp_timers();
        if adverts_due {
            sim.router_adverts();
        }
        let res = sim.res;
        if adverts_due {
            core.next_adverts = now.saturating_add(ADVERT_EVERY);
        }
        let limits = core.tables.limits();
        // Flows that reached an aged-out MAC are stale by its generation, and flood again.
        core.tables.learned().age(now, &limits);
        self.timers_due.store(core.timers_due(), Ordering::Release);
        drop(core);
        send_frames(&res, tx);
        (snap, snap_gen, unresolved)
    }

    /// The end of input: packets still waiting for ARP are let go (their count is returned,
    /// `arp_pending_at_exit`; zero after the first call) and the firewall log is written out.
    pub fn finish(&self) -> u64 {
        if let Some(l) = self.fwlog.get() {
            l.finish();
        }
        let core = self.lock();
        let dropped = core.tables.learned().let_go_all();
        self.timers_due.store(u64::MAX, Ordering::Release);
        dropped
    }
}

/// What the slow path did with one packet.
pub struct Miss {
    /// The snapshot it ran on, and that snapshot's generation, when the worker does not run it.
    pub snap: Option<(Arc<Snap>, u64)>,
    pub res: SimResult,
    /// The flow installed for it, when its result may be cached.
    pub flow: Option<Installed>,
}
