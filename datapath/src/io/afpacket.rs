//! Live I/O (SPEC §2): every interface of the host bound with AF_PACKET sockets
//! ([`super::rawsock`]), in promiscuous mode; netlink ([`super::links`]) says which interfaces
//! exist, their index, state and MAC.
//!
//! **Workers** (SPEC §9). `--threads N` runs N workers, each a [`Datapath`] worker on the same
//! shared state, run to completion: every worker has its own socket on every interface, and the
//! sockets of one interface form a `PACKET_FANOUT_HASH` group, so the kernel spreads frames over
//! workers by flow hash (both directions of a connection may reach different workers; the
//! shared state is built for that). A worker polls its sockets and reads what arrived — in place
//! from each socket's `TPACKET_V3` ring ([`RxMode::Ring`], the default: no copy and no system
//! call per frame), or up to [`BATCH`] frames per `recvmmsg()` into its own buffers
//! ([`RxMode::Mmsg`]) — cuts TCP super-frames longer than the interface's MTU into segments
//! ([`crate::wire::gso`]), completes checksums the kernel left pending (veth and tap hand frames
//! over that way when the sender offloads them), processes each frame (the clock read once per poll),
//! stages what it outputs per interface and sends each interface's frames with one `sendmmsg()`
//! per [`BATCH`] on its own socket (past the qdisc layer). No allocation per packet; no lock on a
//! cache hit. Frames this host itself sent on an interface are ignored.
//!
//! **The main thread** supervises: it follows the machine's links ([`super::links`], netlink)
//! and binds each interface of the snapshot when it appears — a socket per worker in the
//! interface's fanout group, handed to each worker between batches — and releases it when it is
//! deleted, re-created under another index, or no longer in the snapshot (SPEC §2); an interface
//! that does not exist leaves its port absent. It watches for a reload (SIGHUP or a changed
//! file), swaps the snapshot into the shared state and binds and releases what changed, and it
//! answers the control socket: it asks each worker, between batches, for its counters and flows,
//! and sums them (per-worker counters summed on read).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, Sender};
use rules::compile::Topology;

use super::rawsock::{PollSet, RawSocket, RxRing, Waker};
use crate::iface::{IfIdx, Ifaces};
use crate::io::pcap::{ReplaySummary, WorkerLoad};
use crate::shared::Shared;
use crate::time::Instant;
use crate::{Datapath, Stats};

/// Frames per `recvmmsg()` and per batch.
pub const BATCH: usize = 64;
/// Bytes per receive buffer: a whole TCP super-frame (64 KiB of IP and its Ethernet header).
const BUF: usize = 65536 + 64;
/// How often idle threads look at the stop flag and at questions.
const TICK: Duration = Duration::from_millis(100);

/// Why live mode cannot start; each is the one line the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{0}")]
    Host(#[from] crate::iface::IfaceError),
    #[error("interface {0:?}: opening a raw socket needs CAP_NET_RAW (run as root or grant the capability)")]
    Permission(String),
    #[error("interface {0:?}: {1}")]
    Io(String, String),
    #[error("--threads 0: at least one worker is needed")]
    Threads,
    #[error("{0}")]
    Lock(String),
    #[error("{0}: {1}")]
    Path(String, String),
}

fn now() -> Instant {
    Instant::from_duration(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// How the live datapath is run.
pub struct LiveOptions {
    /// The snapshot file: read again on `reload`, or when it changes (SPEC §9).
    pub snapshot: PathBuf,
    pub host: String,
    /// Where the control socket listens, if anywhere.
    pub control: Option<PathBuf>,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// Set to read the snapshot again (SIGHUP).
    pub reload: Arc<AtomicBool>,
    /// Workers.
    pub threads: usize,
    /// Where firewall logs are written (SPEC §8), if anywhere.
    pub log_dir: Option<PathBuf>,
    /// How frames are received.
    pub rx: RxMode,
    /// The tables' bounds (SPEC §9).
    pub limits: crate::limits::Limits,
    /// Where connections and learned entries are kept across a restart (`persist.rs`).
    pub state_dir: Option<PathBuf>,
}

/// How a worker receives frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RxMode {
    /// A `TPACKET_V3` ring per socket, read in place ([`RING_BLOCK`] × [`RING_BLOCKS`] bytes);
    /// where the kernel refuses one, `recvmmsg()` on that socket.
    #[default]
    Ring,
    /// `recvmmsg()` into the worker's buffers, [`BATCH`] frames per call.
    Mmsg,
}

/// Bytes per ring block: any frame fits, a 64 KiB TCP super-frame included.
pub const RING_BLOCK: usize = 1 << 18;
/// Blocks per ring (4 MiB per socket).
pub const RING_BLOCKS: usize = 16;
/// How long a block the kernel has started filling waits for more frames before it is handed over
/// (the ring's added latency at low rates).
const RING_RETIRE: Duration = Duration::from_millis(1);

/// What the running datapath answers for: its snapshot and since when, and its ports' links.
struct Running {
    opts: LiveOptions,
    version: u64,
    since: SystemTime,
    mtime: Option<SystemTime>,
    checked: SystemTime,
    /// Packets waiting for ARP that reloads let go (the main thread's own counter).
    reload_drops: u64,
    links: Links,
}

/// A bound interface's state, as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// Sockets on it, in `slot`, on the link with this index.
    Bound { slot: IfIdx, index: u32, up: bool },
    /// The snapshot binds it, the machine does not have it.
    Absent,
}

/// The supervisor's view of the interfaces the snapshot binds, and of the machine's links.
struct Links {
    monitor: super::links::LinkMonitor,
    /// The machine's links, by name, as netlink last said.
    kernel: HashMap<String, super::links::Link>,
    /// Each interface of the snapshot (and each still bound), with since when it is in its state.
    ours: HashMap<String, (LinkState, SystemTime)>,
    rx: RxMode,
    workers: usize,
}

impl Links {
    fn slot(&self, name: &str) -> Option<IfIdx> {
        match self.ours.get(name) {
            Some((LinkState::Bound { slot, .. }, _)) => Some(*slot),
            _ => None,
        }
    }

    /// Release `name`: its port becomes absent, every worker closes its socket.
    fn release(&mut self, shared: &Shared, asks: &[Asker], name: &str, why: &str) {
        let Some(slot) = self.slot(name) else { return };
        shared.set_link(name, false, None);
        ask_all(asks, |tx| Ask::Unbind(slot, tx));
        self.ours.insert(name.to_string(), (LinkState::Absent, SystemTime::now()));
        tracing::info!(interface = %name, "{why}: released");
    }

    /// Bring `name` in line with the kernel and the running snapshot: bind it if it exists and is
    /// not bound, release it if it went, was re-created, or the snapshot no longer binds it, and
    /// follow it up and down.
    fn reconcile(&mut self, shared: &Shared, asks: &[Asker], name: &str) -> Result<(), LiveError> {
        let snap = shared.snapshot();
        let wanted = snap.ifs.by_name(name);
        let link = self.kernel.get(name).cloned();
        let now = SystemTime::now();
        let state = self.ours.get(name).map(|(s, _)| *s);
        if let Some(LinkState::Bound { slot, index, up }) = state {
            let gone = match (&link, wanted) {
                (None, _) => Some("interface deleted"),
                (Some(l), _) if l.index != index => Some("interface re-created"),
                (_, None) => Some("no longer in the snapshot"),
                (_, Some(w)) if w != slot => Some("moved to another slot"),
                _ => None,
            };
            match (gone, &link) {
                (Some(why), _) => self.release(shared, asks, name, why),
                (None, Some(l)) => {
                    if l.up != up {
                        tracing::info!(interface = %name, up = l.up, "link {}", if l.up { "up" } else { "down" });
                        self.ours.insert(name.to_string(), (LinkState::Bound { slot, index, up: l.up }, now));
                    }
                    shared.set_link(name, true, l.mac);
                    return Ok(());
                }
                (None, None) => {}
            }
        }
        let Some(slot) = wanted else {
            self.ours.remove(name);
            return Ok(());
        };
        match link {
            None => {
                if state.is_none() {
                    tracing::info!(interface = %name, "interface absent: its port waits for it");
                    self.ours.insert(name.to_string(), (LinkState::Absent, now));
                }
                shared.set_link(name, false, None);
            }
            Some(l) => {
                let group = open_group(name, l.index, self.workers, self.rx)?;
                let mtu = l.mtu.map_or_else(|| mtu(name), |m| m as usize);
                let mut group = group.into_iter();
                // Every worker takes its socket before the port is marked present.
                let acks = ask_all(asks, |tx| {
                    let (sock, ring) = group.next().expect("one socket per worker");
                    Ask::Bind(slot, Box::new(Port { sock, ring, mtu }), tx)
                });
                if acks.len() != asks.len() {
                    tracing::warn!(interface = %name, "a worker did not take its socket");
                }
                shared.set_link(name, true, l.mac);
                self.ours.insert(name.to_string(), (LinkState::Bound { slot, index: l.index, up: l.up }, now));
                tracing::info!(interface = %name, ifindex = l.index, up = l.up, "interface bound");
            }
        }
        Ok(())
    }

    /// Reconcile every interface the snapshot binds or that is still bound: the ones to release
    /// first, so that a slot a new snapshot gave to another interface is free before it is bound.
    fn reconcile_all(&mut self, shared: &Shared, asks: &[Asker]) -> Result<(), LiveError> {
        let snap = shared.snapshot();
        let mut names: Vec<String> = self.ours.keys().cloned().collect();
        names.extend(snap.ifs.bound().map(|(_, i)| i.name.clone()).filter(|n| !self.ours.contains_key(n)));
        names.sort();
        let (go, stay): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|n| self.slot(n).is_some_and(|s| snap.ifs.by_name(n) != Some(s) || !self.kernel.contains_key(n)));
        for n in go.iter().chain(&stay) {
            self.reconcile(shared, asks, n)?;
        }
        Ok(())
    }

    /// Read what netlink says and act on it; a lost notification reads the whole list again.
    fn follow(&mut self, shared: &Shared, asks: &[Asker], wait: Duration) {
        let changes = match self.monitor.wait(wait) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "reading link notifications");
                std::thread::sleep(wait);
                return;
            }
        };
        let mut touched = Vec::new();
        for c in changes {
            match c {
                super::links::Change::New(name, link) => {
                    self.kernel.insert(name.clone(), link);
                    touched.push(name);
                }
                super::links::Change::Del(name, index) => {
                    if self.kernel.get(&name).is_some_and(|l| l.index == index) {
                        self.kernel.remove(&name);
                    }
                    touched.push(name);
                }
                super::links::Change::Lost => {
                    tracing::warn!("link notifications were lost: listing the links again");
                    match self.monitor.list() {
                        Ok(all) => self.kernel = all,
                        Err(e) => tracing::error!(error = %e, "listing links"),
                    }
                    touched.extend(self.kernel.keys().cloned());
                    touched.extend(self.ours.keys().cloned());
                }
            }
        }
        touched.sort();
        touched.dedup();
        for name in touched {
            if self.ours.contains_key(&name) || shared.snapshot().ifs.by_name(&name).is_some() {
                if let Err(e) = self.reconcile(shared, asks, &name) {
                    tracing::error!("binding {name}: {e}");
                }
            }
        }
    }

    /// `status`: every interface of the snapshot, by port, in slot order.
    fn ports(&self, shared: &Shared) -> Vec<PortStatus> {
        let snap = shared.snapshot();
        snap.ifs
            .bound()
            .map(|(_, i)| {
                let port = match i.binding {
                    crate::iface::Binding::Port(p) | crate::iface::Binding::RouterPort(p) => snap.topo.port(p).id.clone(),
                    _ => "underlay".to_string(),
                };
                let (state, since) = self.ours.get(&i.name).copied().unwrap_or((LinkState::Absent, SystemTime::now()));
                let (ifindex, state) = match state {
                    LinkState::Bound { index, up, .. } => (Some(index), if up { "up" } else { "down" }),
                    LinkState::Absent => (None, "absent"),
                };
                PortStatus { port, interface: i.name.clone(), ifindex, state, since }
            })
            .collect()
    }
}

/// One line of `status`.
struct PortStatus {
    port: String,
    interface: String,
    ifindex: Option<u32>,
    state: &'static str,
    since: SystemTime,
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// A question for a worker, answered between batches.
enum Ask {
    /// Its counters, cached flows and packet rate.
    Load(Sender<(Stats, WorkerLoad)>),
    /// Its flows, one per line.
    Flows(Sender<String>),
    /// Take this socket for the interface in this slot (answered once it is polled).
    Bind(IfIdx, Box<Port>, Sender<()>),
    /// Close the socket of this slot (answered once it is closed).
    Unbind(IfIdx, Sender<()>),
}

/// Where a worker's questions go, and how it is woken to read them.
struct Asker {
    tx: Sender<Ask>,
    waker: Arc<Waker>,
}

/// A worker's socket on one interface.
pub struct Port {
    sock: RawSocket,
    ring: Option<RxRing>,
    mtu: usize,
}

/// Packets per second received by one worker, over about the last second.
#[derive(Default)]
struct Rate {
    at: Instant,
    rx: u64,
    pps: f64,
}

impl Rate {
    fn update(&mut self, now: Instant, rx: u64) {
        let dt = now.since(self.at);
        if dt >= Duration::from_secs(1) {
            self.pps = if self.at.0 == 0 { 0.0 } else { (rx - self.rx) as f64 / dt.as_secs_f64() };
            self.at = now;
            self.rx = rx;
        }
    }
}

fn open(name: &str, ifindex: u32) -> Result<RawSocket, LiveError> {
    match RawSocket::open_index(ifindex, TICK) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(LiveError::Permission(name.to_string())),
        Err(e) => Err(LiveError::Io(name.to_string(), e.to_string())),
    }
}

/// One socket per worker on interface `name` (with its receive ring, in ring mode), all in one
/// fanout group when there are several.
fn open_group(name: &str, ifindex: u32, workers: usize, mode: RxMode) -> Result<Vec<(RawSocket, Option<RxRing>)>, LiveError> {
    let socks = (0..workers).map(|_| open(name, ifindex)).collect::<Result<Vec<_>, _>>()?;
    let mut rings: Vec<Option<RxRing>> = socks
        .iter()
        .map(|s| match mode {
            RxMode::Mmsg => None,
            RxMode::Ring => RxRing::new(s, RING_BLOCK, RING_BLOCKS, RING_RETIRE)
                .map_err(|e| tracing::warn!(interface = %name, error = %e, "no TPACKET_V3 ring; receiving with recvmmsg"))
                .ok(),
        })
        .collect();
    if workers > 1 {
        // A group id is per network namespace: start from one derived from the process and the
        // interface, and move on if another process holds it for another device.
        let base = (std::process::id() as u16) ^ name.bytes().fold(0u16, |h, b| h.rotate_left(5) ^ b as u16);
        let mut joined = Err(std::io::Error::from(std::io::ErrorKind::AddrInUse));
        for k in 0..64u16 {
            joined = socks[0].join_fanout(base.wrapping_add(k)).map(|()| base.wrapping_add(k));
            if joined.is_ok() {
                break;
            }
        }
        let group = joined.map_err(|e| LiveError::Io(name.to_string(), format!("PACKET_FANOUT: {e}")))?;
        for s in &socks[1..] {
            s.join_fanout(group).map_err(|e| LiveError::Io(name.to_string(), format!("PACKET_FANOUT: {e}")))?;
        }
        // What a socket received before it joined, every other one received too: let it go.
        for (s, ring) in socks.iter().zip(rings.iter_mut()) {
            s.drain();
            if let Some(r) = ring {
                r.read(RING_BLOCKS, |_, _| {});
            }
        }
    }
    Ok(socks.into_iter().zip(rings).collect())
}

/// Run the datapath on the host's interfaces until `stop` is set; returns its counters (summed
/// over the workers), with the snapshot version it ended on and the interface names. It starts
/// on whatever subset of the interfaces exists, none included (SPEC §2).
pub fn run(topo: Arc<Topology>, opts: LiveOptions) -> Result<ReplaySummary, LiveError> {
    if opts.threads == 0 {
        return Err(LiveError::Threads);
    }
    let host = opts.host.clone();
    let host = host.as_str();
    let stop = opts.stop.clone();
    // One instance per control socket, claimed before any interface is bound.
    let _instance = match &opts.control {
        Some(p) => Some(super::control::lock(p).map_err(|e| LiveError::Lock(e.to_string()))?),
        None => None,
    };
    let mut monitor = super::links::LinkMonitor::open().map_err(|e| LiveError::Io("netlink".into(), e.to_string()))?;
    let kernel = monitor.list().map_err(|e| LiveError::Io("netlink".into(), e.to_string()))?;
    let first = Datapath::new(topo, host, &HashMap::new())?.with_limits(opts.limits);
    let shared = first.shared().clone();
    shared.follow_links();
    shared.all_absent();
    if let Some(d) = &opts.log_dir {
        std::fs::create_dir_all(d).map_err(|e| LiveError::Path(d.display().to_string(), e.to_string()))?;
        shared.set_fw_log_dir(d.clone());
    }
    if let Some(dir) = &opts.state_dir {
        restore_state(&shared, dir);
    }
    let mut dps = vec![first];
    while dps.len() < opts.threads {
        let w = dps[0].worker();
        dps.push(w);
    }
    let mut asks = Vec::new();
    let mut threads = Vec::new();
    for (k, dp) in dps.into_iter().enumerate() {
        let (tx, rx) = bounded::<Ask>(16);
        let waker = Arc::new(Waker::new().map_err(|e| LiveError::Path("eventfd".into(), e.to_string()))?);
        asks.push(Asker { tx, waker: waker.clone() });
        let stop = stop.clone();
        let t = std::thread::Builder::new()
            .name(format!("worker-{k}"))
            .spawn(move || worker(dp, rx, &waker, stop))
            .map_err(|e| LiveError::Path("starting a worker thread".into(), e.to_string()))?;
        threads.push(t);
    }
    let mut links = Links { monitor, kernel, ours: HashMap::new(), rx: opts.rx, workers: opts.threads };
    let bound = links.reconcile_all(&shared, &asks);
    let control = match (&bound, &opts.control) {
        (Ok(()), Some(p)) => {
            Some(super::control::serve(p, stop.clone()).map_err(|e| LiveError::Path(p.display().to_string(), e.to_string())))
        }
        _ => None,
    };
    let control = match (bound, control) {
        (Err(e), _) | (Ok(()), Some(Err(e))) => {
            stop.store(true, Ordering::Relaxed);
            threads.into_iter().for_each(|t| drop(t.join()));
            return Err(e);
        }
        (Ok(()), c) => c.and_then(Result::ok),
    };
    let version = shared.snapshot().topo.version;
    let mut names: Vec<&String> = links.ours.keys().collect();
    names.sort();
    tracing::info!(host, interfaces = ?names, version, workers = opts.threads, rx = ?opts.rx, "datapath running");
    let mut running = Running {
        mtime: mtime(&opts.snapshot),
        opts,
        version,
        since: SystemTime::now(),
        checked: SystemTime::now(),
        reload_drops: 0,
        links,
    };
    let requests = control.as_ref().map(|(_, rx)| rx.clone());
    while !running.opts.stop.load(Ordering::Relaxed) {
        reload_if_asked(&shared, &asks, &mut running);
        // Link changes wake the supervisor at once; questions wait at most this long.
        running.links.follow(&shared, &asks, Duration::from_millis(20));
        if let Some(rx) = &requests {
            while let Ok(req) = rx.try_recv() {
                let _ = req.reply.send(answer(&shared, &asks, &running, &req.command));
            }
        }
    }
    drop(control);
    let mut done: Vec<(Datapath, u64)> = threads.into_iter().filter_map(|t| t.join().ok()).collect();
    if let Some(dir) = &running.opts.state_dir {
        save_state(&shared, dir);
    }
    let mut stats = Stats::default();
    stats.drops.add_n(crate::DropReason::SnapshotRemoved, running.reload_drops);
    let mut workers = Vec::new();
    if let Some((d, _)) = done.first_mut() {
        d.finish();
    }
    for (d, batches) in &done {
        stats.add(d.stats());
        workers.push(WorkerLoad { rx: d.stats().rx, tx: d.stats().tx, flows: d.flow_count(), batches: *batches, pps: None });
    }
    let tables = Some(shared.tables(workers.iter().map(|w| w.flows).collect()));
    Ok(ReplaySummary { version: running.version, stats, interfaces: slot_names(&shared), workers: Vec::new(), live: workers, tables })
}

/// The running snapshot's interface names by slot (released slots empty), for the summary.
fn slot_names(shared: &Shared) -> Vec<String> {
    shared.snapshot().ifs.list.iter().map(|i| i.name.clone()).collect()
}

/// One worker: poll its sockets, process what arrives in batches, send per interface, and
/// answer questions — and take or close sockets as interfaces come and go — between batches,
/// until `stop`. Returns the worker and how many batches it read.
fn worker(mut dp: Datapath, asks: Receiver<Ask>, waker: &Waker, stop: Arc<AtomicBool>) -> (Datapath, u64) {
    let mut batches = 0u64;
    // ports[slot]: this worker's socket on the interface in that slot, if it is bound.
    let mut ports: Vec<Option<Box<Port>>> = Vec::new();
    let mut gso = Gso::default();
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; BUF]).collect();
    let mut meta = Vec::with_capacity(BATCH);
    let mut staged = Staged::default();
    // The poll set and, for each of its entries, the slot it is for.
    let mut order: Vec<usize> = Vec::new();
    let mut poll = PollSet::new([], Some(waker));
    let mut rate = Rate::default();
    while !stop.load(Ordering::Relaxed) {
        let mut rebuilt = false;
        waker.clear();
        while let Ok(ask) = asks.try_recv() {
            match ask {
                Ask::Load(reply) => {
                    let s = dp.stats();
                    let load = WorkerLoad { rx: s.rx, tx: s.tx, flows: dp.flow_count(), batches, pps: Some(rate.pps) };
                    let _ = reply.send((s.clone(), load));
                }
                Ask::Flows(reply) => {
                    let _ = reply.send(dp.flows_report());
                }
                Ask::Bind(slot, port, done) => {
                    let k = slot.0 as usize;
                    if ports.len() <= k {
                        ports.resize_with(k + 1, || None);
                    }
                    ports[k] = Some(port);
                    rebuilt = true;
                    let _ = done.send(());
                }
                Ask::Unbind(slot, done) => {
                    if let Some(p) = ports.get_mut(slot.0 as usize) {
                        *p = None;
                    }
                    rebuilt = true;
                    let _ = done.send(());
                }
            }
        }
        if rebuilt {
            order = ports.iter().enumerate().filter(|(_, p)| p.is_some()).map(|(k, _)| k).collect();
            poll = PollSet::new(ports.iter().flatten().map(|p| &p.sock), Some(waker));
        }
        if let Err(e) = poll.wait(TICK) {
            tracing::error!(error = %e, "poll failed");
            break;
        }
        dp.refresh();
        let at = now();
        rate.update(at, dp.stats().rx);
        // ARP retries and give-ups are due whether packets arrive or not.
        dp.tick(at);
        if !dp.tx().is_empty() {
            staged.take(&dp);
            flush(&mut dp, &mut staged, &ports, None);
        }
        for (e, &k) in order.iter().enumerate() {
            let i = IfIdx(k as u16);
            // Taken out while its frames are read, so that what they send can be flushed to
            // every port, this one included.
            let Some(mut port) = ports.get_mut(k).and_then(Option::take) else { continue };
            let Port { sock, ring, mtu } = &mut *port;
            if poll.failed(e) {
                if let Some(err) = sock.take_error() {
                    tracing::warn!(interface = %dp.interfaces().get(i).name, error = %err, "interface error");
                }
            }
            if poll.ready(e) {
                staged.clear();
                let mtu = *mtu;
                if let Some(ring) = ring.as_mut() {
                    // Frames are processed in place in the ring; what they send is flushed every
                    // BATCH frames and at the end.
                    let mut n = 0;
                    let read = ring.read(RING_BLOCKS, |frame, r| {
                        if r.outgoing {
                            return;
                        }
                        receive(&mut dp, &mut staged, &mut gso, i, mtu, frame, r.csum_pending, at);
                        n += 1;
                        if n % BATCH == 0 {
                            flush(&mut dp, &mut staged, &ports, Some((k, sock)));
                        }
                    });
                    batches += (read > 0) as u64;
                } else {
                    match sock.recv_many(&mut bufs, &mut meta, false) {
                        Ok(n) => {
                            batches += (n > 0) as u64;
                            for (buf, r) in bufs.iter_mut().zip(meta.iter()).take(n) {
                                if !r.outgoing {
                                    receive(&mut dp, &mut staged, &mut gso, i, mtu, &mut buf[..r.len], r.csum_pending, at);
                                }
                            }
                        }
                        Err(e) => tracing::error!(interface = %dp.interfaces().get(i).name, error = %e, "receive failed"),
                    }
                }
                flush(&mut dp, &mut staged, &ports, Some((k, sock)));
            }
            if let Some(p) = ports.get_mut(k) {
                *p = Some(port);
            }
        }
    }
    (dp, batches)
}

/// Where a worker cuts TCP super-frames ([`crate::wire::gso`]); reused.
#[derive(Default)]
struct Gso {
    data: Vec<u8>,
    segs: Vec<std::ops::Range<usize>>,
}

/// One frame that arrived on `i`, whose MTU is `mtu`: a TCP super-frame cut into segments, a
/// pending checksum completed, processed, and what it sends staged.
#[inline]
#[allow(clippy::too_many_arguments)]
fn receive(dp: &mut Datapath, staged: &mut Staged, gso: &mut Gso, i: IfIdx, mtu: usize, frame: &mut [u8], csum_pending: bool, at: Instant) {
    if frame.len() > crate::wire::ETH_LEN + mtu {
        gso.data.clear();
        gso.segs.clear();
        if crate::wire::gso::segment_tcp(frame, mtu, &mut gso.data, &mut gso.segs) {
            dp.count_gso_cut();
            for r in &gso.segs {
                let seg = gso.data.get(r.clone()).unwrap_or_default();
                dp.process(i, seg, at);
                staged.take(dp);
            }
            return;
        }
    }
    if csum_pending {
        crate::wire::complete_pending_checksum(frame);
    }
    dp.process(i, frame, at);
    staged.take(dp);
}

/// An interface's MTU (`/sys/class/net/NAME/mtu`), 1500 when it cannot be read.
fn mtu(name: &str) -> usize {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1500)
}

/// Send what is staged, one `sendmmsg()` per interface, and count what was refused.
/// `taken` is a port the caller holds out of `ports` while it reads it. Frames for an interface
/// this worker has no socket on (it went between the flow's making and now) count as refused.
fn flush(dp: &mut Datapath, staged: &mut Staged, ports: &[Option<Box<Port>>], taken: Option<(usize, &RawSocket)>) {
    let mut refused = 0;
    for (o, data, frames) in staged.by_iface() {
        let sock = match taken {
            Some((k, s)) if k == o => Some(s),
            _ => ports.get(o).and_then(Option::as_ref).map(|p| &p.sock),
        };
        refused += match sock {
            Some(s) => s.send_many(data, frames),
            None => frames.len(),
        };
    }
    staged.clear();
    if refused > 0 {
        tracing::debug!(refused, "sends refused");
        dp.count_tx_errors(refused as u64);
    }
}

/// Frames to send, staged per interface for one `sendmmsg()` each.
#[derive(Default)]
struct Staged {
    data: Vec<Vec<u8>>,
    ranges: Vec<Vec<std::ops::Range<usize>>>,
}

impl Staged {
    fn clear(&mut self) {
        self.data.iter_mut().for_each(Vec::clear);
        self.ranges.iter_mut().for_each(Vec::clear);
    }

    /// Stage what the worker sent for its last input.
    fn take(&mut self, dp: &Datapath) {
        for (o, f) in dp.tx().iter() {
            self.push(o, f);
        }
    }

    fn push(&mut self, o: IfIdx, f: &[u8]) {
        let k = o.0 as usize;
        if self.data.len() <= k {
            self.data.resize_with(k + 1, Vec::new);
            self.ranges.resize_with(k + 1, Vec::new);
        }
        let start = self.data[k].len();
        self.data[k].extend_from_slice(f);
        self.ranges[k].push(start..self.data[k].len());
    }

    /// Each interface with frames: its staged bytes and where each frame lies in them.
    fn by_iface(&self) -> impl Iterator<Item = (usize, &[u8], &[std::ops::Range<usize>])> + '_ {
        self.data
            .iter()
            .zip(&self.ranges)
            .enumerate()
            .filter(|(_, (_, r))| !r.is_empty())
            .map(|(k, (d, r))| (k, d.as_slice(), r.as_slice()))
    }
}

/// Hot reload (SPEC §9): on SIGHUP, or when the snapshot file's modification time changes
/// (looked at once a second), the new snapshot is read, validated and compiled off the packet
/// path and swapped in; a bad one is refused with a log line and the running one stays.
/// Put back what the last stop saved in `dir`, as a reload would carry it; a file that cannot
/// be read is set aside (`state.json.bad`) and the datapath starts without it.
fn restore_state(shared: &Shared, dir: &Path) {
    let path = crate::persist::file(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => return tracing::warn!(file = %path.display(), error = %e, "saved state not read; starting without it"),
    };
    match shared.restore_state(&text) {
        Ok(r) => {
            let _ = std::fs::remove_file(&path);
            tracing::info!(
                file = %path.display(),
                connections = ?r.connections,
                macs = ?r.macs,
                arp = ?r.arp,
                "saved state restored (kept, of saved)"
            );
        }
        Err(e) => {
            let _ = std::fs::rename(&path, dir.join("state.json.bad"));
            tracing::warn!(file = %path.display(), error = %e, "saved state refused; starting without it (set aside as state.json.bad)");
        }
    }
}

/// Write the connections and learned entries to `dir` for the next start.
fn save_state(shared: &Shared, dir: &Path) {
    let text = shared.save_state();
    match crate::persist::write(dir, &text) {
        Ok(()) => tracing::info!(file = %crate::persist::file(dir).display(), bytes = text.len(), "state saved"),
        Err(e) => tracing::error!(dir = %dir.display(), error = %e, "state not saved"),
    }
}

fn reload_if_asked(shared: &Shared, asks: &[Asker], running: &mut Running) {
    let asked = running.opts.reload.swap(false, Ordering::Relaxed);
    let now = SystemTime::now();
    let changed = if now.duration_since(running.checked).unwrap_or_default() >= Duration::from_secs(1) {
        running.checked = now;
        let m = mtime(&running.opts.snapshot);
        let c = m != running.mtime;
        running.mtime = m;
        c
    } else {
        false
    };
    if !asked && !changed {
        return;
    }
    match rules::load_topology(&running.opts.snapshot) {
        Err(e) => tracing::error!("snapshot refused, version {} keeps running: {e}", running.version),
        Ok(t) => {
            let v = t.version;
            // Interfaces the new version no longer binds are closed before it runs, so that no
            // frame of theirs is taken for another interface's.
            if let Ok(next) = Ifaces::for_host(&t, &running.opts.host, &HashMap::new()) {
                let going: Vec<String> = running.links.ours.keys().filter(|n| next.by_name(n).is_none()).cloned().collect();
                for n in going {
                    running.links.release(shared, asks, &n, "no longer in the snapshot");
                }
            }
            match shared.set_topology(Arc::new(t)) {
                Ok(dropped) => {
                    running.reload_drops += dropped;
                    running.version = v;
                    running.since = SystemTime::now();
                    tracing::info!(version = v, "snapshot activated");
                    if let Err(e) = running.links.reconcile_all(shared, asks) {
                        tracing::error!("binding the new version's interfaces: {e}");
                    }
                }
                Err(e) => tracing::error!("snapshot refused, version {} keeps running: {e}", running.version),
            }
        }
    }
}

/// Ask every worker the same question and collect the answers (a worker that does not answer
/// within two seconds is left out).
fn ask_all<T>(asks: &[Asker], mut make: impl FnMut(Sender<T>) -> Ask) -> Vec<T> {
    let mut waits = Vec::new();
    for a in asks {
        let (tx, rx) = bounded(1);
        if a.tx.send_timeout(make(tx), Duration::from_secs(2)).is_ok() {
            a.waker.wake();
            waits.push(rx);
        }
    }
    waits.into_iter().filter_map(|rx| rx.recv_timeout(Duration::from_secs(2)).ok()).collect()
}

/// The answer to one control command.
fn answer(shared: &Shared, asks: &[Asker], running: &Running, command: &str) -> String {
    match command {
        "status" => {
            let mut out = format!(
                "host {} running snapshot version {} since {} ({}), {} workers",
                running.opts.host,
                running.version,
                humantime::format_rfc3339_seconds(running.since),
                running.opts.snapshot.display(),
                asks.len()
            );
            for p in running.links.ports(shared) {
                let ifindex = p.ifindex.map_or("-".to_string(), |i| i.to_string());
                out.push_str(&format!(
                    "\nport {} interface {} ifindex {ifindex} {} since {}",
                    p.port,
                    p.interface,
                    p.state,
                    humantime::format_rfc3339_seconds(p.since)
                ));
            }
            out
        }
        "status json" => {
            let ports: Vec<serde_json::Value> = running
                .links
                .ports(shared)
                .into_iter()
                .map(|p| {
                    serde_json::json!({
                        "port": p.port, "interface": p.interface, "ifindex": p.ifindex, "state": p.state,
                        "since": humantime::format_rfc3339_seconds(p.since).to_string(),
                    })
                })
                .collect();
            serde_json::json!({
                "host": running.opts.host,
                "version": running.version,
                "since": humantime::format_rfc3339_seconds(running.since).to_string(),
                "snapshot": running.opts.snapshot.display().to_string(),
                "workers": asks.len(),
                "ports": ports,
            })
            .to_string()
        }
        "stats" => {
            let answers = ask_all(asks, Ask::Load);
            let mut stats = Stats::default();
            stats.drops.add_n(crate::DropReason::SnapshotRemoved, running.reload_drops);
            stats.fw_log_dropped = shared.fw_log_dropped();
            for (s, _) in &answers {
                stats.add(s);
            }
            let flows: usize = answers.iter().map(|(_, l)| l.flows).sum();
            let summary = ReplaySummary {
                version: running.version,
                stats,
                interfaces: slot_names(shared),
                workers: Vec::new(),
                tables: Some(shared.tables(answers.iter().map(|(_, l)| l.flows).collect())),
                live: answers.into_iter().map(|(_, l)| l).collect(),
            };
            format!("{}flows: {flows}\nconnections: {}", summary.render(), shared.connection_count())
        }
        "flows" => ask_all(asks, Ask::Flows)
            .into_iter()
            .enumerate()
            .map(|(k, f)| if f.is_empty() { format!("worker {k}: no flows") } else { format!("worker {k}:\n{f}") })
            .collect::<Vec<_>>()
            .join("\n"),
        "conntrack" => shared.conntrack_report(now()),
        c if c.starts_with("trace ") => {
            // `trace IFACE HEX`: a frame as hex, simulated on a copy of the state.
            let mut words = c.split_whitespace().skip(1);
            let (Some(name), Some(hex)) = (words.next(), words.next()) else { return "error: trace IFACE HEXFRAME".into() };
            let Some(i) = shared.snapshot().ifs.by_name(name) else { return format!("error: interface {name:?} is not bound") };
            let frame: Option<Vec<u8>> =
                (0..hex.len()).step_by(2).map(|k| hex.get(k..k + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect();
            match frame {
                Some(f) => shared.trace_packet(i, &f, now()).join("\n"),
                None => "error: the frame is not hex".into(),
            }
        }
        other => format!("error: unknown command {other:?}; commands: {}", super::control::COMMANDS.join(", ")),
    }
}
