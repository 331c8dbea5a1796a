//! Live I/O (SPEC §2): every interface of the host bound with AF_PACKET sockets
//! ([`super::rawsock`]), in promiscuous mode; netlink ([`super::links`]) says which interfaces
//! exist, their index, state and MAC. This file is the supervisor, the main thread; the rooms
//! beside it are the worker loop (`live_worker.rs`), interface binding (`bind.rs`) and the
//! control protocol ([`super::control`]).
//!
//! **Workers** (SPEC §9). `--threads N` runs N workers, each a [`Datapath`] worker on the same
//! shared state, run to completion: every worker has its own socket on every interface, and the
//! sockets of one interface form a `PACKET_FANOUT_HASH` group, so the kernel spreads frames over
//! workers by flow hash (both directions of a connection may reach different workers; the
//! shared state is built for that). A worker reads in place from each socket's `TPACKET_V3` ring
//! ([`RxMode::Ring`], the default) or up to [`BATCH`] frames per `recvmmsg()`
//! ([`RxMode::Mmsg`]), and sends each interface's frames with one `sendmmsg()` straight from the
//! datapath's transmit buffer, where they were written once. No allocation per packet; no lock
//! on a cache hit.
//!
//! **The supervisor** starts the workers, binds each interface of the snapshot when it appears
//! and releases it when it goes, watches for a reload (SIGHUP or a changed file) and swaps the
//! snapshot into the shared state, answers the control socket by asking each worker between
//! batches, and on stop saves the state for the next start (`--state-dir`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::bounded;
use rules::compile::Topology;

use super::bind::Links;
pub use super::bind::{RING_BLOCK, RING_BLOCKS};
use super::control::PortStatus;
pub use super::live_worker::BATCH;
use super::live_worker::{ask_all, worker, Ask, Asker};
use super::rawsock::Waker;
use super::source::{Followed, Source};
use super::summary::{ReplaySummary, WorkerLoad};
use crate::iface::Ifaces;
use crate::shared::Shared;
use crate::{Datapath, Stats};

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

/// How the live datapath is run.
pub struct LiveOptions {
    /// Where the snapshot comes from: a file, read again on `reload` or when it changes (SPEC
    /// §9), or versions published in etcd (§9.1).
    pub source: super::source::Source,
    pub host: String,
    /// Where the control socket listens, if anywhere.
    pub control: Option<PathBuf>,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// Set to read the snapshot file again (SIGHUP).
    pub reload: Arc<AtomicBool>,
    /// Workers.
    pub threads: usize,
    /// Where firewall logs are written (SPEC §8), if anywhere.
    pub log_dir: Option<PathBuf>,
    /// How frames are received.
    pub rx: RxMode,
    /// Receive and send through AF_XDP sockets (`run --io xdp`): one per interface queue, a
    /// worker each; the rest, and interfaces where XDP is unavailable, as `rx` says.
    pub xdp: bool,
    /// The tables' bounds (SPEC §9).
    pub limits: crate::limits::Limits,
    /// Where connections and learned entries are kept across a restart (`persist.rs`).
    pub state_dir: Option<PathBuf>,
    /// Where the Prometheus endpoint listens (`/metrics`), if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// Told when the datapath is ready, when a version is applied or refused, and when it stops
    /// (the CLI tells systemd: `Type=notify`).
    pub notify: Option<Box<dyn FnMut(Notice) + Send>>,
}

/// What [`LiveOptions::notify`] is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Running: interfaces bound, control socket and metrics listening, on this version.
    Ready(u64),
    Applied(u64),
    /// A version refused, and the one still running.
    Refused(String, u64),
    Stopping,
}

impl LiveOptions {
    fn tell(&mut self, n: Notice) {
        if let Some(f) = self.notify.as_mut() {
            f(n);
        }
    }
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

/// What the running datapath answers for: its snapshot and since when, and its ports' links.
struct Running {
    opts: LiveOptions,
    source: Followed,
    version: u64,
    since: SystemTime,
    /// The last version refused, as one line, until another is applied.
    refused: Option<String>,
    /// When the source was last told what runs.
    reported: Option<std::time::Instant>,
    /// Packets waiting for ARP that reloads let go (the main thread's own counter).
    reload_drops: u64,
    links: Links,
}

/// Run the datapath on the host's interfaces until `stop` is set; returns its counters (summed
/// over the workers), with the snapshot version it ended on and the interface names. It starts
/// on whatever subset of the interfaces exists, none included (SPEC §2).
pub fn run(topo: Arc<Topology>, mut opts: LiveOptions) -> Result<ReplaySummary, LiveError> {
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
    let mut links = Links { monitor, kernel, ours: HashMap::new(), rx: opts.rx, xdp: opts.xdp, workers: opts.threads };
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
    let metrics = match opts.metrics.map(|a| (a, super::metrics::serve(a, stop.clone()))) {
        Some((_, Ok(m))) => Some(m),
        Some((a, Err(e))) => {
            stop.store(true, Ordering::Relaxed);
            threads.into_iter().for_each(|t| drop(t.join()));
            return Err(LiveError::Path(format!("--metrics {a}"), e.to_string()));
        }
        None => None,
    };
    let version = shared.snapshot().topo.version;
    let mut names: Vec<&String> = links.ours.keys().collect();
    names.sort();
    tracing::info!(host, interfaces = ?names, version, workers = opts.threads, rx = ?opts.rx, "datapath running");
    opts.tell(Notice::Ready(version));
    let source = std::mem::replace(&mut opts.source, Source::File(PathBuf::new()));
    let mut running = Running {
        source: Followed::new(source),
        opts,
        version,
        since: SystemTime::now(),
        refused: None,
        reported: None,
        reload_drops: 0,
        links,
    };
    let requests: Vec<_> = control.iter().map(|(_, rx)| rx.clone()).chain(metrics.iter().map(|(_, rx)| rx.clone())).collect();
    while !running.opts.stop.load(Ordering::Relaxed) {
        reload_if_asked(&shared, &asks, &mut running);
        // Link changes and new versions wake the supervisor at once; questions wait at most
        // this long.
        let feed = running.source.wake_fd();
        running.links.follow(&shared, &asks, Duration::from_millis(20), feed);
        report(&shared, &asks, &mut running);
        for rx in &requests {
            while let Ok(req) = rx.try_recv() {
                let at = Supervised { shared: &shared, asks: &asks, running: &running };
                let _ = req.reply.send(super::control::answer(&at, &req.command));
            }
        }
    }
    running.opts.tell(Notice::Stopping);
    drop(control);
    drop(metrics);
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
    Ok(ReplaySummary { version: running.version, stats, interfaces: shared.slot_names(), workers: Vec::new(), live: workers, tables })
}

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

/// Hot reload (SPEC §9, §9.1): on SIGHUP or when the snapshot file's modification time changes
/// (looked at once a second), or when etcd hands over a new version, the new snapshot is
/// validated and compiled off the packet path and swapped in; a bad one is refused with a log
/// line, shown by `status`, and the running one stays.
fn reload_if_asked(shared: &Shared, asks: &[Asker], running: &mut Running) {
    let asked = running.opts.reload.swap(false, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let Some(next) = running.source.next(asked) else { return };
    let compiled = started.elapsed();
    let refuse = |running: &mut Running, line: String| {
        tracing::error!("snapshot refused, version {} keeps running: {line}", running.version);
        running.opts.tell(Notice::Refused(line.clone(), running.version));
        running.refused = Some(line);
    };
    let t = match next {
        Ok(t) => t,
        Err(line) => return refuse(running, line),
    };
    let v = t.version;
    // Interfaces the new version no longer binds are closed before it runs, so that no frame of
    // theirs is taken for another interface's.
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
            running.refused = None;
            running.reported = None;
            running.opts.tell(Notice::Applied(v));
            tracing::info!(
                version = v,
                compile_ms = compiled.as_secs_f64() * 1e3,
                apply_ms = (started.elapsed() - compiled).as_secs_f64() * 1e3,
                "snapshot activated"
            );
            if let Err(e) = running.links.reconcile_all(shared, asks) {
                tracing::error!("binding the new version's interfaces: {e}");
            }
        }
        Err(e) => refuse(running, format!("version {v}: {}: {e}", running.source.describe())),
    }
}

/// Tell the source what runs (etcd keeps it as this host's agent record), at once after a
/// change of version and otherwise twice a second (ports come and go); the source writes only
/// what changed.
fn report(shared: &Shared, asks: &[Asker], running: &mut Running) {
    if let Source::File(_) = running.source.source {
        return;
    }
    if running.reported.is_some_and(|t| t.elapsed() < Duration::from_millis(500)) {
        return;
    }
    running.reported = Some(std::time::Instant::now());
    let status = super::control::status_json(&Supervised { shared, asks, running });
    running.source.report(&status);
}

/// The running datapath as the control protocol sees it.
struct Supervised<'a> {
    shared: &'a Shared,
    asks: &'a [Asker],
    running: &'a Running,
}

impl super::control::Instance for Supervised<'_> {
    fn shared(&self) -> &Shared {
        self.shared
    }

    fn host(&self) -> &str {
        &self.running.opts.host
    }

    fn version(&self) -> u64 {
        self.running.version
    }

    fn since(&self) -> SystemTime {
        self.running.since
    }

    fn source(&self) -> String {
        self.running.source.describe()
    }

    fn refused(&self) -> Option<&str> {
        self.running.refused.as_deref()
    }

    fn workers(&self) -> usize {
        self.asks.len()
    }

    fn ports(&self) -> Vec<PortStatus> {
        self.running.links.ports(self.shared)
    }

    fn own_stats(&self) -> Stats {
        let mut stats = Stats::default();
        stats.drops.add_n(crate::DropReason::SnapshotRemoved, self.running.reload_drops);
        stats
    }

    fn loads(&self) -> Vec<(Stats, WorkerLoad)> {
        ask_all(self.asks, Ask::Load)
    }

    fn flows(&self) -> Vec<Vec<crate::report::FlowRecord>> {
        ask_all(self.asks, Ask::Flows)
    }
}
