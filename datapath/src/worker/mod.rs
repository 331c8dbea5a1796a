//! One worker of a datapath: a packet in, frames out. Follow a packet through
//! [`Datapath::process_or_defer`]: timers on the packet clock, parse, flow lookup, and on a hit
//! the cached actions (`fastpath.rs`); on a miss the slow path ([`Shared::simulate`], beside
//! other workers' misses), whose flow is installed for the packets after it. A batch takes the
//! same door frame by frame (`vector.rs`).
//!
//! Thread safety: a `Datapath` is one worker, taken `&mut`: its flow cache, counters and transmit
//! buffer. What all workers share — the snapshot, learned entries, NAT and firewall connections —
//! is [`Shared`]: the slow path changes it under the tables' locks, a cache hit reads it through
//! atomics.

use std::collections::HashMap;
use std::sync::Arc;

use rules::compile::Topology;
use rules::model::Mac;

use crate::ct::ConnTable;
use crate::drop::DropReason;
use crate::fastpath::{apply, apply_in_place, send_simulated, Outcome, PureJob, TxBuf};
use crate::flow::FlowTable;
use crate::iface::{IfIdx, IfaceError, Ifaces};
use crate::install::Packet;
use crate::limits::{Limits, TableFill};
use crate::shared::{Shared, Snap};
use crate::stats::{IfaceCounts, Stats};
use crate::time::Instant;
use crate::wire::{self, L3};

mod express;
mod tap;
mod vector;
use vector::Classified;

/// One worker of a datapath: its own flow cache, counters and transmit buffer, taken `&mut`;
/// everything else is [`Shared`]. `Datapath::new` makes the first worker,
/// [`Datapath::worker`] more on the same state. Aligned to cache lines, so that counters it
/// writes every packet share no line with whatever lies next to it (another worker).
#[repr(align(128))]
pub struct Datapath {
    shared: Arc<Shared>,
    /// Its number among the workers of `shared` ([`Shared::new_worker`]).
    id: usize,
    /// The learned entries' generations, which its flows are checked by.
    gens: crate::learn::Generations,
    /// Its copy of the learned entries its misses read.
    learn_cache: crate::learn::LearnCache,
    /// The snapshot this worker last took from the shared state. A flow it made is fresh only
    /// while the epoch has not moved, so a fresh flow was made under this snapshot.
    snap: Arc<Snap>,
    /// The generation of `snap` ([`Shared::snapshot_since`]).
    snap_gen: u64,
    /// The [`crate::iface::Iface::gen`] of each slot its per-interface counters are for.
    iface_gens: Vec<u64>,
    flows: FlowTable,
    cache: bool,
    stats: Stats,
    tx: TxBuf,
    trace: bool,
    last_trace: Vec<String>,
    /// Frames of earlier inputs stay in `tx` until the I/O layer sends them
    /// ([`Datapath::set_batching`]).
    batching: bool,
    /// How the express lane read each frame of a batch, before any is taken, and the general
    /// door's records of those it did not read (reused).
    lanes: Option<Box<express::Lanes>>,
    classified: Vec<Classified>,
    /// Where each frame of the last batch began sending in `tx` ([`Datapath::batch_sent`]).
    batch_marks: Vec<usize>,
}

/// The frame an input is: a slice (single frames), or frame `k` of a batch, in its receive
/// buffer at `at`, where a hit may be applied in place.
enum Src<'a> {
    Slice(&'a [u8]),
    Rx { buf: &'a mut [u8], at: usize, k: usize },
}

impl Src<'_> {
    fn frame(&self) -> &[u8] {
        match self {
            Src::Slice(f) => f,
            Src::Rx { buf, at, .. } => buf.get(*at..).unwrap_or_default(),
        }
    }
}

impl Datapath {
    /// A datapath for host `host` of `topo`; `macs` gives interfaces' own MACs (SPEC §4 `--mac`).
    pub fn new(topo: Arc<Topology>, host: &str, macs: &HashMap<String, Mac>) -> Result<Datapath, IfaceError> {
        Ok(Datapath::on(Arc::new(Shared::new(topo, host, macs)?)))
    }

    fn on(shared: Arc<Shared>) -> Datapath {
        let (snap, snap_gen) = shared.current();
        let flows = FlowTable::with_limit(shared.limits().flows_per_worker);
        let iface_gens = snap.ifs.list.iter().map(|i| i.gen).collect();
        let per_iface = vec![IfaceCounts::default(); snap.ifs.len()];
        Datapath {
            id: shared.new_worker(),
            gens: shared.generations(),
            learn_cache: Default::default(),
            snap_gen,
            iface_gens,
            shared,
            snap,
            flows,
            cache: true,
            stats: Stats { per_iface, ..Default::default() },
            tx: TxBuf::default(),
            trace: false,
            last_trace: Vec::new(),
            batching: false,
            lanes: Some(Box::default()),
            classified: Vec::with_capacity(crate::batch::BATCH),
            batch_marks: Vec::with_capacity(crate::batch::BATCH + 1),
        }
    }

    /// Another worker on the same shared state, with an empty flow cache and its own counters.
    pub fn worker(&self) -> Datapath {
        let mut w = Datapath::on(self.shared.clone());
        w.cache = self.cache;
        w
    }

    /// The state this worker shares with the others.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// See [`Shared::set_topology`]; this worker takes the new snapshot at once, and counts the
    /// packets let go.
    pub fn set_topology(&mut self, topo: Arc<Topology>) -> Result<(), IfaceError> {
        let dropped = self.shared.set_topology(topo)?;
        self.stats.drops.add_n(DropReason::SnapshotRemoved, dropped);
        self.refresh();
        Ok(())
    }

    /// Take the running snapshot if it changed since this worker last did (live workers call
    /// it once per poll; the slow path does too): one atomic load when nothing changed.
    pub fn refresh(&mut self) {
        if let Some((snap, g)) = self.shared.snapshot_since(self.snap_gen) {
            self.adopt(snap, g);
        }
    }

    /// Run `snap` (generation `g`) from now on, when it is not the one running. Per-interface
    /// counters follow the slots: a slot given to another interface starts again from zero.
    fn adopt(&mut self, snap: Arc<Snap>, g: u64) {
        if Arc::ptr_eq(&snap, &self.snap) {
            return;
        }
        let n = snap.ifs.len();
        self.stats.per_iface.resize(n.max(self.stats.per_iface.len()), IfaceCounts::default());
        self.iface_gens.resize(n, u64::MAX);
        for ((gen, count), i) in self.iface_gens.iter_mut().zip(self.stats.per_iface.iter_mut()).zip(&snap.ifs.list) {
            if *gen != i.gen {
                *gen = i.gen;
                *count = IfaceCounts::default();
            }
        }
        self.stats.per_iface.truncate(n);
        self.snap = snap;
        self.snap_gen = g;
    }

    /// See [`Shared::set_fw_log_dir`].
    pub fn set_fw_log_dir(&mut self, dir: std::path::PathBuf) {
        self.shared.set_fw_log_dir(dir);
    }

    /// Replace the connection table (tests use small SNAT pools).
    pub fn with_conn_table(self, ct: ConnTable) -> Self {
        self.shared.set_conn_table(ct);
        self
    }

    /// Set the tables' bounds (before traffic: the flow cache starts again empty).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.shared.set_limits(limits);
        self.flows = FlowTable::with_limit(limits.flows_per_worker);
        self
    }

    /// See [`Shared::tables`], for this worker alone.
    pub fn tables(&self) -> TableFill {
        self.shared.tables(vec![self.flows.len()])
    }

    /// Turn the flow cache off (every packet simulated) or on.
    pub fn set_flow_cache(&mut self, on: bool) {
        self.cache = on;
        self.flows.clear();
    }

    /// Record what the simulation does for each packet (see [`Datapath::last_trace`]).
    pub fn set_trace(&mut self, on: bool) {
        self.trace = on;
    }

    /// What the simulation did for the last packet, when tracing; empty when the packet took a
    /// cached flow (or was malformed).
    pub fn last_trace(&self) -> &[String] {
        &self.last_trace
    }

    pub fn interfaces(&self) -> &Ifaces {
        &self.snap.ifs
    }

    /// Frames the I/O layer could not send.
    pub fn count_tx_errors(&mut self, n: u64) {
        self.stats.tx_errors += n;
    }

    /// Bytes the I/O layer received on interface `slot`: a batch's at once.
    pub fn count_rx_bytes(&mut self, slot: IfIdx, bytes: u64) {
        self.stats.count_bytes(slot, false, bytes);
    }

    /// The bytes of every frame staged, counted as sent by their interfaces (live mode, before
    /// [`Datapath::sent`]).
    pub fn count_tx_bytes(&mut self) {
        for (i, n) in self.tx.lens() {
            self.stats.count_bytes(i, true, n as u64);
        }
    }

    /// A super-frame the I/O layer cut into segments before processing them.
    pub fn count_gso_cut(&mut self) {
        self.stats.gso_cut += 1;
    }

    /// See [`Shared::trace_packet`].
    pub fn trace_packet(&self, iface: IfIdx, frame: &[u8], now: Instant) -> crate::report::TraceRecord {
        self.shared.trace_packet(iface, frame, now)
    }

    /// Flows cached now by this worker.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// See [`Shared::connection_count`].
    pub fn connection_count(&self) -> usize {
        self.shared.connection_count()
    }

    /// This worker's cached flows ([`crate::report::flows`]).
    pub fn flows_report(&self) -> Vec<crate::report::FlowRecord> {
        crate::report::flows(&self.flows, &self.snap.ifs, self.shared.epoch(), &self.gens)
    }

    /// See [`Shared::conntrack_report`].
    pub fn conntrack_report(&self, now: Instant) -> String {
        self.shared.conntrack_report(now)
    }

    /// The snapshot this worker runs.
    pub fn topology(&self) -> &Topology {
        &self.snap.topo
    }

    /// This worker's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The frames sent for the last input (and the timers it ran), in order; when batching,
    /// those of earlier inputs are staged there too, per interface ([`TxBuf::by_iface`]).
    pub fn tx(&self) -> &TxBuf {
        &self.tx
    }

    /// Keep what earlier inputs sent in [`Datapath::tx`] until [`Datapath::sent`] (live mode:
    /// a batch's frames leave with one `sendmmsg()` per interface, from where they were written).
    pub fn set_batching(&mut self, on: bool) {
        self.batching = on;
        self.tx.clear();
    }

    /// The I/O layer sent what is staged: let it go.
    pub fn sent(&mut self) {
        self.tx.clear();
    }

    fn begin_input(&mut self) {
        match self.batching {
            true => self.tx.begin(),
            false => self.tx.clear(),
        }
    }

    /// Process one frame that arrived on `iface` at `now`; its frames are in [`Datapath::tx`].
    pub fn process(&mut self, iface: IfIdx, frame: &[u8], now: Instant) -> Outcome {
        match self.process_or_defer(iface, frame, now, false) {
            Outcome::Deferred(job) => {
                job.apply(frame, &mut self.tx);
                job.outcome()
            }
            o => o,
        }
    }

    /// Process one frame — or, with `defer`, when it takes a cached flow that touches no shared
    /// state, count it and hand back the job of applying it, for a worker
    /// ([`Outcome::Deferred`]). Everything that reads or changes state (misses, connections,
    /// policing, logs, timers) happens here, in order.
    pub fn process_or_defer(&mut self, iface: IfIdx, frame: &[u8], now: Instant, defer: bool) -> Outcome {
        let c = self.classify(iface, frame);
        self.process_classified(iface, Src::Slice(frame), &c, now, defer)
    }

    /// [`Datapath::process_or_defer`] of a frame classified already.
    #[inline(always)]
    fn process_classified(&mut self, iface: IfIdx, frame: Src, c: &Classified, now: Instant, defer: bool) -> Outcome {
        self.begin_input();
        if self.trace {
            self.last_trace.clear();
        }
        if self.shared.timers_due(now) {
            self.run_timers(now);
        }
        self.stats.count_rx(iface);
        let outcome = self.receive(iface, frame, c, now, defer);
        let job = match &outcome {
            Outcome::Forwarded => {
                self.stats.forwarded += 1;
                None
            }
            Outcome::Handled => {
                self.stats.handled += 1;
                None
            }
            Outcome::Waiting => None,
            Outcome::Dropped(r) => {
                self.stats.drops.incr(*r);
                None
            }
            Outcome::Deferred(job) => {
                match job.outcome() {
                    Outcome::Dropped(r) => self.stats.drops.incr(r),
                    _ => self.stats.forwarded += 1,
                }
                Some(job)
            }
        };
        let deferred = job.into_iter().flat_map(|j| j.flow.outputs.iter().map(|o| o.iface));
        for i in self.tx.ifaces().chain(deferred) {
            self.stats.count_tx(i);
        }
        outcome
    }

    /// Run the timers due at `now` without a packet (live mode, between polls): ARP retries and
    /// give-ups. What they send is in [`Datapath::tx`], counted as sent.
    pub fn tick(&mut self, now: Instant) {
        self.begin_input();
        if !self.shared.timers_due(now) {
            return;
        }
        self.run_timers(now);
        for i in self.tx.ifaces() {
            self.stats.count_tx(i);
        }
    }

    /// The end of input: packets still waiting for ARP are dropped and counted (by the worker
    /// that calls it first), and the firewall log is written out.
    pub fn finish(&mut self) {
        let dropped = self.shared.finish();
        self.stats.drops.add_n(DropReason::ArpPendingAtExit, dropped);
        self.stats.fw_log_dropped = self.shared.fw_log_dropped();
    }

    /// A frame's way through: a fresh cached flow (applied here, or deferred), else the slow path.
    fn receive(&mut self, iface: IfIdx, mut src: Src, c: &Classified, now: Instant, defer: bool) -> Outcome {
        let Classified { h, inner, key, hash } = c;
        let h = match h {
            Ok(h) => h,
            Err(r) => return Outcome::Dropped(*r),
        };
        if let (true, Some(k)) = (self.cache, key.as_ref()) {
            if let Some(flow) = self.flows.get_hashed(*hash, k) {
                let (range, bh) = match (&inner, flow.decap) {
                    (Some((r, ih, _)), true) => (r.clone(), ih),
                    _ => (0..src.frame().len(), h),
                };
                // What the flow depends on, read without a lock (see `Shared`).
                let flags = tcp_flags(bh);
                let fresh = flow.epoch == self.shared.epoch() && flow.learned.fresh(&self.gens) && flow.holds(flags, now);
                if fresh {
                    if let Some(m) = &flow.mac_seen {
                        m.touch(now);
                    }
                    self.stats.flow_hits += 1;
                    // Only this worker counts its flows' hits: a load and a store, not a locked
                    // read-modify-write.
                    let hits = &flow.hits;
                    hits.store(hits.load(std::sync::atomic::Ordering::Relaxed) + 1, std::sync::atomic::Ordering::Relaxed);
                    if defer && flow.is_pure() {
                        return Outcome::Deferred(PureJob { flow: flow.clone(), body: range, headers: *bh });
                    }
                    if let (Some(log), Some(logger)) = (flow.fw_log(), self.shared.fwlog()) {
                        logger.log(log.event(&self.snap.topo, now));
                    }
                    let qos = &self.snap.qos;
                    let len = range.len();
                    if let Src::Rx { buf, at, k } = &mut src {
                        let body = *at + range.start..*at + range.end;
                        if let Some(o) = apply_in_place(flow, buf, body, bh, &mut self.tx, *k, |b| qos.conforms(b, len, now)) {
                            self.stats.hits_in_place += 1;
                            return o;
                        }
                    }
                    let body = src.frame().get(range).unwrap_or_default();
                    return apply(flow, body, bh, &mut self.tx, |b| qos.conforms(b, len, now));
                }
                self.flows.remove(k);
            }
        }

        self.stats.flow_misses += 1;
        let inner = inner.as_ref().map(|(r, ih, _)| (r.clone(), ih));
        let packet = Packet { iface, frame: src.frame(), headers: h, inner, now };
        let miss = self.shared.simulate(self.id, self.snap_gen, &mut self.learn_cache, &packet, key.is_some(), self.trace);
        if let Some((snap, g)) = miss.snap {
            self.adopt(snap, g);
        }
        self.stats.forwarded += miss.res.released;
        if let Some(t) = &miss.res.trace {
            self.last_trace.clone_from(t);
        }
        match (miss.flow, key) {
            (Some(made), Some(k)) => {
                // The first packet is policed as its flow will police the packets after it.
                let (qos, len) = (&self.snap.qos, made.body.len());
                let outcome = send_simulated(&miss.res, &mut self.tx, true, |b| qos.conforms(b, len, now));
                if self.cache {
                    self.flows.insert(*k, Arc::new(made.flow));
                    self.stats.flows_evicted = self.flows.evicted;
                }
                outcome
            }
            _ => send_simulated(&miss.res, &mut self.tx, false, |_| true),
        }
    }

    /// ARP retries and give-ups (SPEC §6.4), and MAC aging (§9), on the packet clock.
    fn run_timers(&mut self, now: Instant) {
        let (snap, g, unresolved) = self.shared.run_timers(now, &mut self.tx);
        self.adopt(snap, g);
        self.stats.drops.add_n(DropReason::ArpUnresolved, unresolved);
    }
}

fn tcp_flags(h: &wire::Headers) -> u8 {
    match &h.l3 {
        L3::Ipv4(ip) => ip.l4.tcp_flags(),
        L3::Ipv6(ip) => ip.l4.tcp_flags(),
        _ => 0,
    }
}
