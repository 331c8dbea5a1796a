//! One datapath instance: a packet in, frames out. Follow a packet through [`Datapath::process`]:
//! timers on the packet clock, parse, flow lookup, and on a hit the cached actions; on a miss the
//! simulation, whose result becomes a flow that is applied the same way a hit is (so a cached
//! flow and a fresh simulation give the same bytes by construction).
//!
//! Thread safety: a `Datapath` is one worker, taken `&mut`: its flow cache, counters and transmit
//! buffer. What all workers share — the snapshot, learned entries, NAT and firewall connections —
//! is [`Shared`]: the slow path changes it under one lock, a cache hit reads it through atomics.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rules::compile::Topology;
use rules::model::Mac;

use crate::ct::{ConnTable, Watch};
use crate::drop::{DropCounters, DropReason};
use crate::flow::{Flow, FlowKey, FlowOut, FlowTable, Rewrite};
use crate::fwlog::{Event, FwLogger};
use crate::iface::{IfIdx, IfaceError, Ifaces};
use crate::learn::{ARP_RETRY, ARP_TRIES};
use crate::limits::{Limits, TableFill};
use crate::qos::QosBuckets;
use crate::sim::{frame::Frame, Sim, SimResult};
use crate::state::State;
use crate::time::Instant;
use crate::wire::{self, vxlan, Frag, L3};

/// Counters of one datapath. Every frame received ends up in exactly one of `forwarded`,
/// `handled` and `drops` — a frame waiting for ARP is counted when it leaves or is dropped.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub rx: u64,
    pub tx: u64,
    /// Frames that left on at least one interface.
    pub forwarded: u64,
    /// Frames the datapath consumed: ARP answered or learned, echo requests answered.
    pub handled: u64,
    pub drops: DropCounters,
    pub flow_hits: u64,
    pub flow_misses: u64,
    /// Firewall log lines dropped because the writer's queue was full.
    pub fw_log_dropped: u64,
    /// Frames an interface refused to send (live mode: larger than its MTU, or a down link).
    pub tx_errors: u64,
    /// TCP super-frames (segmentation offload) cut into segments at ingress (live mode); each
    /// segment counts as a frame received.
    pub gso_cut: u64,
    /// Flows the cache let go (least recently used) to make room for new ones.
    pub flows_evicted: u64,
    /// Frames received and sent per interface.
    pub per_iface: Vec<(u64, u64)>,
}

impl Stats {
    /// Add another worker's counters to these (SPEC §9: per worker, summed on read).
    pub fn add(&mut self, o: &Stats) {
        self.rx += o.rx;
        self.tx += o.tx;
        self.forwarded += o.forwarded;
        self.handled += o.handled;
        self.drops.add(&o.drops);
        self.flow_hits += o.flow_hits;
        self.flow_misses += o.flow_misses;
        self.fw_log_dropped += o.fw_log_dropped;
        self.tx_errors += o.tx_errors;
        self.gso_cut += o.gso_cut;
        self.flows_evicted += o.flows_evicted;
        if self.per_iface.len() < o.per_iface.len() {
            self.per_iface.resize(o.per_iface.len(), (0, 0));
        }
        for (a, b) in self.per_iface.iter_mut().zip(&o.per_iface) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }
}

/// Frames sent for one input, in order; reused between packets.
#[derive(Debug, Default)]
pub struct TxBuf {
    data: Vec<u8>,
    frames: Vec<(IfIdx, Range<usize>)>,
}

impl TxBuf {
    pub fn clear(&mut self) {
        self.data.clear();
        self.frames.clear();
    }

    /// Append a frame: `headroom` bytes (at most [`vxlan::ENCAP_LEN`]) for the caller to write,
    /// then a copy of `body`. Returns the headroom and the copy.
    #[inline]
    fn push(&mut self, iface: IfIdx, headroom: usize, body: &[u8]) -> (&mut [u8], &mut [u8]) {
        const ZEROS: [u8; vxlan::ENCAP_LEN] = [0; vxlan::ENCAP_LEN];
        let start = self.data.len();
        let headroom = headroom.min(ZEROS.len());
        self.data.extend_from_slice(&ZEROS[..headroom]);
        self.data.extend_from_slice(body);
        self.frames.push((iface, start..self.data.len()));
        self.data[start..].split_at_mut(headroom)
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (IfIdx, &[u8])> {
        self.frames.iter().map(|(i, r)| (*i, &self.data[r.clone()]))
    }
}

/// A cached pure flow's packet, to be applied by any worker (see [`Datapath::process_or_defer`]).
#[derive(Debug, Clone)]
pub struct PureJob {
    pub flow: Arc<Flow>,
    /// The part of the frame the flow acts on (the inner frame of a decapsulating flow).
    pub body: Range<usize>,
    pub headers: wire::Headers,
}

impl PureJob {
    /// Write the flow's frames for `frame` (the input as given to `process_or_defer`) to `tx`.
    pub fn apply(&self, frame: &[u8], tx: &mut TxBuf) {
        let body = frame.get(self.body.clone()).unwrap_or_default();
        apply(&self.flow, body, &self.headers, tx, |_| true);
    }

    /// Which of `workers` applies it: the fixed FNV flow hash of its headers (the VXLAN source-port
    /// hash), so the choice is the same on every machine and a flow always goes to one worker.
    pub fn worker(&self, workers: usize) -> usize {
        vxlan::flow_hash(&self.headers) as usize % workers.max(1)
    }
}

/// What [`Datapath::process_or_defer`] did.
#[derive(Debug)]
pub enum Step {
    /// The frame was processed; its frames are in [`Datapath::tx`].
    Done,
    /// The frame takes a pure cached flow; it is counted, [`Datapath::tx`] holds what its timers
    /// sent, and the job's frames follow them.
    Pure(PureJob),
}

/// How one input ended.
enum Fate {
    Forwarded,
    Handled,
    Waiting,
    Dropped(DropReason),
}

/// One snapshot as the datapath runs it: the compiled topology, this host's interfaces (each in
/// the slot it keeps while snapshots bind it, with whether it exists now) and the QoS buckets of
/// its ports.
pub struct Snap {
    pub topo: Arc<Topology>,
    pub ifs: Ifaces,
    qos: Arc<QosBuckets>,
}

/// What the slow path changes, under [`Shared`]'s lock: the running snapshot and the learned, NAT
/// and firewall state.
struct Core {
    snap: Arc<Snap>,
    state: State,
}

impl Core {
    /// The earliest ARP retry or MAC aging due, as packet-clock nanoseconds (`u64::MAX`: none).
    fn timers_due(&self) -> u64 {
        let arp = self.state.learned.pending.values().map(|p| p.next_try.0).min().unwrap_or(u64::MAX);
        arp.min(self.state.learned.aging_due(&self.state.limits))
    }
}

/// The state every worker of one datapath shares (SPEC §9): both directions of a connection may
/// reach different workers, so connections, NAT mappings, learned entries and the snapshot live
/// here. The slow path (a miss, a timer, a reload, a report) takes the lock; a cache hit takes
/// none — it reads the epoch and timer deadline below and the atomics its flow holds.
pub struct Shared {
    host: String,
    macs: HashMap<String, Mac>,
    /// Set by live mode, which follows the kernel's links: interfaces a new snapshot adds start
    /// absent until their link is seen ([`Shared::set_link`]). Replay's always exist.
    follow_links: std::sync::atomic::AtomicBool,
    core: Mutex<Core>,
    /// Bumped under the lock by a new snapshot, an interface that comes or goes, and every
    /// learned MAC or ARP entry; flows remember the value they were made at.
    epoch: AtomicU64,
    /// Bumped under the lock whenever [`Core::snap`] is replaced, so a worker sees without the
    /// lock that it should take the new one ([`Datapath::refresh`]).
    snap_gen: AtomicU64,
    /// [`Core::timers_due`], kept up to date under the lock.
    timers_due: AtomicU64,
    fwlog: OnceLock<FwLogger>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        // A worker that panicked mid-update leaves tables that are still well-formed maps.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The snapshot running now.
    pub fn snapshot(&self) -> Arc<Snap> {
        self.lock().snap.clone()
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
        let mut dropped = crate::carry::carry_over(&mut core.state, &crate::carry::Remap::between(&old_topo, &topo), &topo);
        dropped += core.state.learned.release_ifaces(&released);
        let qos = QosBuckets::for_topology(&topo);
        self.replace_snap(&mut core, Snap { topo, ifs, qos });
        Ok(dropped)
    }

    /// Put `snap` in place of the running snapshot: flows remember the epoch they were made in,
    /// so every one is stale from the next packet on, and workers take the new one.
    fn replace_snap(&self, core: &mut Core, snap: Snap) {
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

    /// Firewall log lines dropped so far because the writer's queue was full.
    pub fn fw_log_dropped(&self) -> u64 {
        self.fwlog.get().map_or(0, FwLogger::dropped)
    }

    /// The bounds of the tables (SPEC §9).
    pub fn limits(&self) -> Limits {
        self.lock().state.limits
    }

    /// Each table's fill against its bound; `flows` is each worker's flow count.
    pub fn tables(&self, flows: Vec<usize>) -> TableFill {
        let core = self.lock();
        let st = &core.state;
        let routers = (0..core.snap.topo.routers.len() as u32).map(rules::compile::RouterRef);
        let fullest_router_connections = routers.map(|r| crate::ct::of_router(&st.ct, &st.fw, r)).max().unwrap_or(0);
        let (macs, arps) = st.learned.sizes();
        let (fullest_network_macs, fullest_router_arps) = st.learned.fullest();
        TableFill {
            limits: st.limits,
            connections: crate::ct::total(&st.ct, &st.fw),
            fullest_router_connections,
            macs,
            fullest_network_macs,
            arps,
            fullest_router_arps,
            waiting: st.learned.pending.len(),
            flows,
            refused: st.learned.refused,
        }
    }

    /// The connections and learned entries, as `persist.rs` writes them.
    pub fn save_state(&self) -> String {
        let core = self.lock();
        crate::persist::save(&core.state, &core.snap.topo)
    }

    /// Put back a saved state, carried over to the running snapshot (before traffic).
    pub fn restore_state(&self, text: &str) -> Result<crate::persist::Restored, String> {
        let mut core = self.lock();
        let topo = core.snap.topo.clone();
        let r = crate::persist::restore(text, &mut core.state, &topo)?;
        self.timers_due.store(core.timers_due(), Ordering::Release);
        self.epoch.fetch_add(1, Ordering::Release);
        Ok(r)
    }

    /// Connections tracked now (NAT and firewall).
    pub fn connection_count(&self) -> usize {
        let core = self.lock();
        crate::ct::total(&core.state.ct, &core.state.fw)
    }

    /// What the simulation would do with `frame` arriving on `iface` now, without changing
    /// anything: it runs on a copy of the learned, NAT and firewall state. The steps, then one line
    /// per frame that would leave.
    pub fn trace_packet(&self, iface: IfIdx, frame: &[u8], now: Instant) -> Vec<String> {
        let (snap, mut state) = {
            let core = self.lock();
            (core.snap.clone(), core.state.clone())
        };
        let mut lines = vec![format!("packet on {}: {}", snap.ifs.get(iface).name, wire::describe::describe(frame))];
        let h = match wire::parse(frame) {
            Ok(h) => h,
            Err(r) => {
                lines.push(format!("dropped: {} ({})", r.name(), r.description()));
                return lines;
            }
        };
        let mut sim = Sim::new(&snap.topo, &snap.ifs, &mut state, &snap.qos, now, true);
        sim.ingress(iface, Frame { buf: frame.to_vec(), h, encap_len: 0 });
        let res = sim.res;
        lines.extend(res.trace.iter().flatten().map(|s| format!("  {s}")));
        let mut tx = TxBuf::default();
        emit_all(&res, &mut tx);
        for (o, f) in tx.iter() {
            lines.push(format!("→ {}: {}", snap.ifs.get(o).name, wire::describe::describe(f)));
        }
        if tx.is_empty() {
            match res.drop {
                Some(r) => lines.push(format!("dropped: {} ({})", r.name(), r.description())),
                None => lines.push("nothing sent (waiting for ARP, or answered)".into()),
            }
        }
        lines
    }

    /// The connections (NAT mappings and firewall state), one per line, at `now`.
    pub fn conntrack_report(&self, now: Instant) -> String {
        let core = self.lock();
        let topo = &core.snap.topo;
        let proto = |p: u8| match p {
            6 => "tcp",
            17 => "udp",
            1 => "icmp",
            _ => "ip",
        };
        let mut lines = Vec::new();
        for (c, idle) in core.state.ct.iter(now) {
            let (ip, port) = c.nat_src();
            lines.push(format!(
                "{} {}:{} → {}:{} as {ip}:{port} router {} {:?} idle {:.1}s",
                proto(c.orig.proto),
                c.orig.src,
                c.orig.sport,
                c.orig.dst,
                c.orig.dport,
                topo.router(c.router).id,
                c.kind,
                idle.as_secs_f64()
            ));
        }
        let mut fw: Vec<_> = core.state.fw.iter().collect();
        fw.sort_by_key(|(r, _)| **r);
        for (r, t) in fw {
            for (c, idle) in t.iter(now) {
                lines.push(format!(
                    "{} {}:{} → {}:{} accepted by the firewall of router {} idle {:.1}s",
                    proto(c.orig.proto),
                    c.orig.src,
                    c.orig.sport,
                    c.orig.dst,
                    c.orig.dport,
                    topo.router(*r).id,
                    idle.as_secs_f64()
                ));
            }
        }
        lines.join("\n")
    }
}

/// One worker of a datapath: its own flow cache, counters and transmit buffer, taken `&mut`;
/// everything else is [`Shared`]. `Datapath::new` makes the first worker,
/// [`Datapath::worker`] more on the same state.
pub struct Datapath {
    shared: Arc<Shared>,
    /// The snapshot this worker last took from the shared state. A flow it made is fresh only
    /// while the epoch has not moved, so a fresh flow was made under this snapshot.
    snap: Arc<Snap>,
    /// [`Shared::snap_gen`] when this worker last took the snapshot.
    snap_gen: u64,
    /// The [`crate::iface::Iface::gen`] of each slot its per-interface counters are for.
    iface_gens: Vec<u64>,
    flows: FlowTable,
    cache: bool,
    stats: Stats,
    tx: TxBuf,
    trace: bool,
    last_trace: Vec<String>,
}

impl Datapath {
    /// A datapath for host `host` of `topo`; `macs` gives interfaces' own MACs (SPEC §4 `--mac`).
    pub fn new(topo: Arc<Topology>, host: &str, macs: &HashMap<String, Mac>) -> Result<Datapath, IfaceError> {
        let ifs = Ifaces::for_host(&topo, host, macs)?;
        let qos = QosBuckets::for_topology(&topo);
        let snap = Arc::new(Snap { topo, ifs, qos });
        let shared = Arc::new(Shared {
            host: host.to_string(),
            macs: macs.clone(),
            follow_links: Default::default(),
            core: Mutex::new(Core { snap: snap.clone(), state: State::default() }),
            epoch: AtomicU64::new(0),
            snap_gen: AtomicU64::new(0),
            timers_due: AtomicU64::new(u64::MAX),
            fwlog: OnceLock::new(),
        });
        Ok(Datapath::on(shared, snap))
    }

    fn on(shared: Arc<Shared>, snap: Arc<Snap>) -> Datapath {
        let n = snap.ifs.len();
        let flows = FlowTable::with_limit(shared.limits().flows_per_worker);
        let iface_gens = snap.ifs.list.iter().map(|i| i.gen).collect();
        Datapath {
            snap_gen: shared.snap_gen.load(Ordering::Acquire),
            iface_gens,
            shared,
            snap,
            flows,
            cache: true,
            stats: Stats { per_iface: vec![(0, 0); n], ..Default::default() },
            tx: TxBuf::default(),
            trace: false,
            last_trace: Vec::new(),
        }
    }

    /// Another worker on the same shared state, with an empty flow cache and its own counters.
    pub fn worker(&self) -> Datapath {
        let mut w = Datapath::on(self.shared.clone(), self.shared.snapshot());
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
        if self.shared.snap_gen.load(Ordering::Acquire) != self.snap_gen {
            let core = self.shared.lock();
            let (snap, g) = (core.snap.clone(), self.shared.snap_gen.load(Ordering::Acquire));
            drop(core);
            self.adopt(snap, g);
        }
    }

    /// Run `snap` (generation `g`) from now on. Per-interface counters follow the slots: a slot
    /// given to another interface starts again from zero.
    fn adopt(&mut self, snap: Arc<Snap>, g: u64) {
        let n = snap.ifs.len();
        self.stats.per_iface.resize(n.max(self.stats.per_iface.len()), (0, 0));
        self.iface_gens.resize(n, u64::MAX);
        for (k, i) in snap.ifs.list.iter().enumerate() {
            if self.iface_gens[k] != i.gen {
                self.iface_gens[k] = i.gen;
                self.stats.per_iface[k] = (0, 0);
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
        self.shared.lock().state.ct = ct;
        self
    }

    /// Set the tables' bounds (before traffic: the flow cache starts again empty).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.shared.lock().state.limits = limits;
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

    /// A super-frame the I/O layer cut into segments before processing them.
    pub fn count_gso_cut(&mut self) {
        self.stats.gso_cut += 1;
    }

    /// See [`Shared::trace_packet`].
    pub fn trace_packet(&self, iface: IfIdx, frame: &[u8], now: Instant) -> Vec<String> {
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

    /// This worker's cached flows, one per line: ingress, the fields matched, the actions, the
    /// hits.
    pub fn flows_report(&self) -> String {
        let ifs = &self.snap.ifs;
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        let name = |i: IfIdx| ifs.list.get(i.0 as usize).map_or("?".to_string(), |x| x.name.clone());
        let mut lines: Vec<String> = self
            .flows
            .iter()
            .map(|(k, f)| {
                let (inf, fields) = k.describe();
                let stale = if f.epoch != epoch { " (stale)" } else { "" };
                let actions = match f.drop {
                    Some(r) => format!("drop:{}", r.name()),
                    None => f
                        .outputs
                        .iter()
                        .map(|o| match o.encap {
                            Some(t) => format!("vxlan(vni {}, to {}):{}", t.vni(), t.dst(), name(o.iface)),
                            None => name(o.iface),
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                };
                format!(
                    "in {} {fields} actions={}{actions} hits={}{stale}",
                    name(inf),
                    f.rewrite.describe(),
                    f.hits.load(Ordering::Relaxed)
                )
            })
            .collect();
        lines.sort();
        lines.join("\n")
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

    /// The frames sent for the last input (and the timers it ran), in order.
    pub fn tx(&self) -> &TxBuf {
        &self.tx
    }

    /// Process one frame that arrived on `iface` at `now`.
    pub fn process(&mut self, iface: IfIdx, frame: &[u8], now: Instant) {
        if let Step::Pure(job) = self.process_or_defer(iface, frame, now, false) {
            job.apply(frame, &mut self.tx);
        }
    }

    /// Process one frame — or, with `defer`, when it takes a cached flow that touches no shared
    /// state, count it and hand back the job of applying it, for a worker. Everything that reads
    /// or changes state (misses, connections, policing, logs, timers) happens here, in order.
    pub fn process_or_defer(&mut self, iface: IfIdx, frame: &[u8], now: Instant, defer: bool) -> Step {
        self.tx.clear();
        if self.trace {
            self.last_trace.clear();
        }
        if now.0 >= self.shared.timers_due.load(Ordering::Acquire) {
            self.run_timers(now);
        }
        self.stats.rx += 1;
        if let Some(c) = self.stats.per_iface.get_mut(iface.0 as usize) {
            c.0 += 1;
        }
        let (fate, job) = match self.receive(iface, frame, now, defer) {
            Received::Fate(f) => (f, None),
            Received::Pure(job) => {
                let fate = match job.flow.drop {
                    Some(r) => Fate::Dropped(r),
                    None => Fate::Forwarded,
                };
                (fate, Some(job))
            }
        };
        match fate {
            Fate::Forwarded => self.stats.forwarded += 1,
            Fate::Handled => self.stats.handled += 1,
            Fate::Waiting => {}
            Fate::Dropped(r) => self.stats.drops.incr(r),
        }
        self.count_sent(job.as_ref());
        match job {
            Some(j) => Step::Pure(j),
            None => Step::Done,
        }
    }

    /// Run the timers due at `now` without a packet (live mode, between polls): ARP retries and
    /// give-ups. What they send is in [`Datapath::tx`], counted as sent.
    pub fn tick(&mut self, now: Instant) {
        self.tx.clear();
        if now.0 < self.shared.timers_due.load(Ordering::Acquire) {
            return;
        }
        self.run_timers(now);
        self.count_sent(None);
    }

    /// Count what [`Datapath::tx`] holds, and the outputs of a deferred job, as sent.
    fn count_sent(&mut self, job: Option<&PureJob>) {
        let deferred = job.iter().flat_map(|j| j.flow.outputs.iter().map(|o| o.iface));
        for i in self.tx.frames.iter().map(|(i, _)| *i).chain(deferred) {
            self.stats.tx += 1;
            if let Some(c) = self.stats.per_iface.get_mut(i.0 as usize) {
                c.1 += 1;
            }
        }
    }

    /// The end of input: packets still waiting for ARP are dropped and counted (by the worker
    /// that calls it first), and the firewall log is written out.
    pub fn finish(&mut self) {
        if let Some(l) = self.shared.fwlog.get() {
            l.finish();
            self.stats.fw_log_dropped = l.dropped();
        }
        let mut core = self.shared.lock();
        let dropped = core.state.learned.let_go_all();
        self.stats.drops.add_n(DropReason::ArpPendingAtExit, dropped);
        self.shared.timers_due.store(u64::MAX, Ordering::Release);
    }

    fn receive(&mut self, iface: IfIdx, frame: &[u8], now: Instant, defer: bool) -> Received {
        let h = match wire::parse(frame) {
            Ok(h) => h,
            Err(r) => return Received::Fate(Fate::Dropped(r)),
        };
        // A VXLAN frame is matched by its outer and its inner headers; its flow may act on the
        // inner frame (it decapsulates) or on the whole (it is routed as it is).
        let mut inner = None;
        let mut keyable = true;
        if let (L3::Ipv4(ip), Some((v, off))) = (&h.l3, vxlan::view(frame, &h)) {
            if ip.frag == Frag::Whole {
                match frame.get(off..ip.end()).map(wire::parse) {
                    Some(Ok(ih)) => inner = Some((off..ip.end(), ih, v)),
                    // The simulation reads the VNI and the inner frame, which no key holds
                    // (found by the datapath fuzz target): simulate every such frame.
                    _ => keyable = false,
                }
            }
        }
        let key = match &inner {
            _ if !keyable => None,
            Some((_, ih, v)) => FlowKey::vxlan(iface, &h, *v, ih),
            None => FlowKey::of(iface, &h),
        };

        if let (true, Some(k)) = (self.cache, key.as_ref()) {
            if let Some(flow) = self.flows.get(k) {
                let (range, bh) = match (&inner, flow.decap) {
                    (Some((r, ih, _)), true) => (r.clone(), ih),
                    _ => (0..frame.len(), &h),
                };
                let body = frame.get(range.clone()).unwrap_or_default();
                // What the flow depends on, read without a lock (see `Shared`).
                let flags = tcp_flags(bh);
                let fresh = flow.epoch == self.shared.epoch.load(Ordering::Acquire)
                    && flow.ct_absent.as_ref().is_none_or(Watch::unchanged)
                    && flow.conn.as_ref().is_none_or(|c| c.touch(flags, now))
                    && flow.fw_absent.as_ref().is_none_or(Watch::unchanged)
                    && flow.fw_conn.as_ref().is_none_or(|c| c.touch(flags, now));
                if fresh {
                    if let Some(m) = &flow.mac_seen {
                        m.touch(now);
                    }
                    self.stats.flow_hits += 1;
                    flow.hits.fetch_add(1, Ordering::Relaxed);
                    if defer && flow.is_pure() {
                        return Received::Pure(PureJob { flow: flow.clone(), body: range, headers: *bh });
                    }
                    if let (Some(log), Some(logger)) = (flow.fw_log, self.shared.fwlog.get()) {
                        logger.log(event(&self.snap.topo, &log, now));
                    }
                    let qos = &self.snap.qos;
                    return Received::Fate(apply(flow, body, bh, &mut self.tx, |b| qos.conforms(b, body.len(), now)));
                }
                self.flows.remove(k);
            }
        }

        // The slow path: simulate under the shared state's lock, on the snapshot running now.
        self.stats.flow_misses += 1;
        let shared = self.shared.clone();
        let mut core = shared.lock();
        if !Arc::ptr_eq(&core.snap, &self.snap) {
            let g = shared.snap_gen.load(Ordering::Acquire);
            self.adopt(core.snap.clone(), g);
        }
        let snap = self.snap.clone();
        let mut sim = Sim::new(&snap.topo, &snap.ifs, &mut core.state, &snap.qos, now, self.trace);
        sim.ingress(iface, Frame { buf: frame.to_vec(), h, encap_len: 0 });
        let res = sim.res;
        if let Some(logger) = shared.fwlog.get() {
            for log in &res.fw_events {
                logger.log(event(&snap.topo, log, now));
            }
        }
        self.stats.forwarded += res.released;
        if let Some(input) = res.input.filter(|_| !matches!(fate_of(&res), Fate::Waiting)) {
            // Sent or dropped now: the copies that wait count nothing more.
            core.state.learned.counted(input);
        }
        core.state.ct.sweep(now, 2);
        if res.learned {
            shared.epoch.fetch_add(1, Ordering::Release);
        }
        shared.timers_due.store(core.timers_due(), Ordering::Release);
        if let Some(t) = &res.trace {
            self.last_trace.clone_from(t);
        }
        if let (true, Some(k)) = (res.cacheable, key) {
            // Decapsulated outputs derive from the inner frame, others from the whole.
            let epoch = shared.epoch.load(Ordering::Acquire);
            let decap = inner.as_ref().and_then(|(r, ih, _)| Some((frame.get(r.clone())?, ih)));
            let made = match decap.and_then(|(b, ih)| make_flow(&res, &core.state, epoch, true, b, ih).map(|f| (f, b, ih))) {
                Some(m) => Some(m),
                None => make_flow(&res, &core.state, epoch, false, frame, &h).map(|f| (f, frame, &h)),
            };
            drop(core);
            if let Some((flow, body, bh)) = made {
                let qos = &snap.qos;
                let fate = apply(&flow, body, bh, &mut self.tx, |b| qos.conforms(b, body.len(), now));
                if self.cache {
                    self.flows.insert(k, Arc::new(flow));
                    self.stats.flows_evicted = self.flows.evicted;
                }
                return Received::Fate(fate);
            }
        }
        emit_all(&res, &mut self.tx);
        Received::Fate(fate_of(&res))
    }

    /// ARP retries and give-ups (SPEC §6.4), and MAC aging (§9), on the packet clock.
    fn run_timers(&mut self, now: Instant) {
        let shared = self.shared.clone();
        let mut core = shared.lock();
        if !Arc::ptr_eq(&core.snap, &self.snap) {
            let g = shared.snap_gen.load(Ordering::Acquire);
            self.adopt(core.snap.clone(), g);
        }
        let due: Vec<_> = core.state.learned.pending.iter().filter(|(_, p)| p.next_try <= now).map(|(k, _)| *k).collect();
        let snap = self.snap.clone();
        let mut sim = Sim::new(&snap.topo, &snap.ifs, &mut core.state, &snap.qos, now, false);
        for k in due {
            let Some(p) = sim.learned.pending.get_mut(&k) else {
                continue;
            };
            if p.tries >= ARP_TRIES {
                if let Some(p) = sim.learned.pending.remove(&k) {
                    let dropped = sim.learned.let_go(&p.frames);
                    self.stats.drops.add_n(DropReason::ArpUnresolved, dropped);
                }
                continue;
            }
            p.tries += 1;
            p.next_try = p.next_try.saturating_add(ARP_RETRY);
            let (emit, req) = (p.emit, p.request.clone());
            sim.send_arp_request(emit, req);
        }
        let res = sim.res;
        let limits = core.state.limits;
        if core.state.learned.age(now, &limits) {
            // Flows that reach an aged-out MAC flood again.
            shared.epoch.fetch_add(1, Ordering::Release);
        }
        shared.timers_due.store(core.timers_due(), Ordering::Release);
        drop(core);
        emit_all(&res, &mut self.tx);
    }
}

/// Turn a cacheable simulation result into a flow made at `epoch`, if its outputs share one
/// rewrite. `state` is the shared state the simulation ran on, still locked: the connections and
/// generations the flow depends on are taken from it.
fn make_flow(res: &SimResult, state: &State, epoch: u64, decap: bool, body: &[u8], bh: &wire::Headers) -> Option<Flow> {
    let mut rewrite = None;
    let mut outputs = Vec::with_capacity(res.outputs.len());
    for o in &res.outputs {
        let oh = wire::parse(&o.frame).ok()?;
        let r = Rewrite::derive(body, bh, &o.frame, &oh)?;
        if rewrite.is_some_and(|prev| prev != r) {
            return None;
        }
        rewrite = Some(r);
        outputs.push(FlowOut { iface: o.iface, police: o.police, encap: o.encap });
    }
    let drop = if outputs.is_empty() { Some(res.drop.unwrap_or(DropReason::NoDestination)) } else { None };
    if decap && outputs.is_empty() {
        // A drop is recorded against the whole frame.
        return None;
    }
    let conn = match res.conn {
        Some(h) => Some(state.ct.conn_ref(h)?),
        None => None,
    };
    let fw_conn = match res.fw_conn {
        Some((r, h)) => Some(state.fw.get(&r)?.conn_ref(h)?),
        None => None,
    };
    let fw_absent = match res.fw_absent {
        // The simulation saw generation `g` of the table it looked in.
        Some((r, g)) => Some(state.fw.get(&r)?.watch_from(g)),
        None => None,
    };
    Some(Flow {
        decap,
        police_in: res.police_in,
        rewrite: rewrite.unwrap_or_default(),
        outputs,
        drop,
        epoch,
        ct_absent: res.ct_absent.then(|| state.ct.watch()),
        conn,
        fw_conn,
        fw_absent,
        fw_log: res.fw_log_each_packet,
        mac_seen: res.mac_seen.clone(),
        hits: Default::default(),
    })
}

/// A log event for a firewall decision at `now`.
fn event(topo: &Arc<Topology>, log: &crate::sim::firewall::FwLog, now: Instant) -> Event {
    let port = |p: u32| if p == rules::compile::firewall::NO_PORT { 0 } else { p as u16 };
    Event {
        at: now,
        topo: topo.clone(),
        firewall: log.firewall,
        rule: log.rule,
        router: log.router,
        src: log.packet.src,
        dst: log.packet.dst,
        sport: port(log.packet.sport),
        dport: port(log.packet.dport),
        proto: log.packet.proto,
        accept: log.accept,
    }
}

fn tcp_flags(h: &wire::Headers) -> u8 {
    match h.l3 {
        L3::Ipv4(wire::Ipv4 { l4: wire::L4::Tcp { flags, .. }, .. }) => flags,
        _ => 0,
    }
}

/// What `receive` did: a fate, or a pure flow's job left to a worker.
enum Received {
    Fate(Fate),
    Pure(PureJob),
}

/// Run a flow's actions on a frame (the inner frame, for one that came through a tunnel):
/// QoS policing (`conforms` answers for a bucket), the rewrite, the outputs.
#[inline]
fn apply(flow: &Flow, body: &[u8], h: &wire::Headers, tx: &mut TxBuf, mut conforms: impl FnMut(crate::qos::BucketId) -> bool) -> Fate {
    let L3::Ipv4(ip) = &h.l3 else {
        return Fate::Dropped(DropReason::UnsupportedEthertype);
    };
    if let Some(r) = flow.drop {
        return Fate::Dropped(r);
    }
    if flow.police_in.is_some_and(|b| !conforms(b)) {
        return Fate::Dropped(DropReason::QosPoliced);
    }
    let mut sent = false;
    for out in &flow.outputs {
        if out.police.is_some_and(|b| !conforms(b)) {
            continue;
        }
        sent = true;
        let enc = if out.encap.is_some() { vxlan::ENCAP_LEN } else { 0 };
        let (outer, inner) = tx.push(out.iface, enc, body);
        flow.rewrite.apply(inner, ip);
        if let Some(t) = &out.encap {
            t.write(outer, body.len());
        }
    }
    if sent {
        Fate::Forwarded
    } else {
        Fate::Dropped(DropReason::QosPoliced)
    }
}

/// Send a simulation's frames as they are (results that are not cached).
fn emit_all(res: &SimResult, tx: &mut TxBuf) {
    for o in &res.outputs {
        let enc = if o.encap.is_some() { vxlan::ENCAP_LEN } else { 0 };
        let (outer, _) = tx.push(o.iface, enc, &o.frame);
        if let Some(t) = &o.encap {
            t.write(outer, o.frame.len());
        }
    }
}

fn fate_of(res: &SimResult) -> Fate {
    if res.queued {
        Fate::Waiting
    } else if res.own_outputs > 0 {
        Fate::Forwarded
    } else if res.handled {
        Fate::Handled
    } else {
        Fate::Dropped(res.drop.unwrap_or(DropReason::NoDestination))
    }
}
