//! Live I/O (SPEC §2): every interface of the host bound with an AF_PACKET socket
//! ([`super::rawsock`]), in promiscuous mode; pnet lists the interfaces and their MACs.
//!
//! One receive thread per interface reads up to [`BATCH`] frames per `recvmmsg()` straight into
//! pooled buffers and hands the batch, in arrival order, to the datapath thread through a bounded
//! channel; the datapath thread completes checksums the kernel left pending (veth and tap hand
//! frames over that way when the sender offloads them), processes each frame (the clock read once
//! per batch), stages what it outputs per interface, sends each interface's frames with
//! `sendmmsg()`, and returns the buffers to the pool. No allocation per packet once the pool is
//! full. Frames this host itself sent on an interface are ignored.
//!
//! Batching cuts the syscalls per packet (STYLE.md's measurements); TPACKET_V3 rings and several
//! datapath workers come next.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, Sender};
use rules::compile::Topology;
use rules::model::Mac;

use super::rawsock::RawSocket;
use crate::datapath::Datapath;
use crate::iface::{IfIdx, Ifaces};
use crate::time::Instant;

/// Batches waiting between the receive threads and the datapath.
const QUEUE: usize = 256;
/// Frames per `recvmmsg()` and per batch.
pub const BATCH: usize = 64;
/// Bytes per receive buffer: MTU-sized frames, jumbo frames included.
const BUF: usize = 16384;

/// Frames received together on one interface.
type Batch = Vec<(IfIdx, Vec<u8>, super::rawsock::Received)>;
/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(100);

/// Why live mode cannot start; each is the one line the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{0}")]
    Host(#[from] crate::iface::IfaceError),
    #[error("interface {0:?} does not exist on this machine")]
    Missing(String),
    #[error("interface {0:?}: opening a raw socket needs CAP_NET_RAW (run as root or grant the capability)")]
    Permission(String),
    #[error("interface {0:?}: {1}")]
    Io(String, String),
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
}

/// What the running datapath answers for: its snapshot and since when.
struct Running {
    opts: LiveOptions,
    version: u64,
    since: SystemTime,
    mtime: Option<SystemTime>,
    checked: SystemTime,
    names: Vec<String>,
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Run the datapath on the host's interfaces until `stop` is set; returns its counters, with the
/// snapshot version it ended on and the interface names.
pub fn run(topo: Arc<Topology>, opts: LiveOptions) -> Result<crate::io::pcap::ReplaySummary, LiveError> {
    let host = opts.host.clone();
    let host = host.as_str();
    let stop = opts.stop.clone();
    let names: Vec<String> = Ifaces::for_host(&topo, host, &HashMap::new())?.list.iter().map(|i| i.name.clone()).collect();
    let system = pnet_datalink::interfaces();
    let mut macs = HashMap::new();
    let mut found = Vec::new();
    for name in &names {
        let Some(ni) = system.iter().find(|i| &i.name == name) else { return Err(LiveError::Missing(name.clone())) };
        if let Some(m) = ni.mac {
            macs.insert(name.clone(), Mac(m.octets()));
        }
        found.push(ni.clone());
    }
    let mut dp = Datapath::new(topo, host, &macs)?;
    let (frames_tx, frames_rx) = bounded::<Batch>(QUEUE);
    let (pool_tx, pool_rx) = bounded::<Vec<u8>>(QUEUE * BATCH);
    for _ in 0..QUEUE * BATCH / 16 {
        let _ = pool_tx.try_send(vec![0u8; BUF]);
    }
    let mut senders: Vec<Arc<RawSocket>> = Vec::new();
    let mut threads = Vec::new();
    for (k, ni) in found.iter().enumerate() {
        let sock = match RawSocket::open(&ni.name, TICK) {
            Ok(s) => Arc::new(s),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(LiveError::Permission(ni.name.clone())),
            Err(e) => return Err(LiveError::Io(ni.name.clone(), e.to_string())),
        };
        senders.push(sock.clone());
        let (out, pool, stop) = (frames_tx.clone(), pool_rx.clone(), stop.clone());
        let idx = IfIdx(k as u16);
        let name = ni.name.clone();
        threads.push(std::thread::Builder::new().name(format!("rx-{name}")).spawn(move || {
            let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; BUF]).collect();
            let mut meta = Vec::with_capacity(BATCH);
            while !stop.load(Ordering::Relaxed) {
                match sock.recv_many(&mut bufs, &mut meta) {
                    Ok(0) => {}
                    Ok(n) => {
                        let mut batch: Batch = Vec::with_capacity(n);
                        for (k, r) in meta.iter().enumerate().take(n) {
                            if r.outgoing {
                                continue;
                            }
                            let next = pool.try_recv().unwrap_or_else(|_| vec![0u8; BUF]);
                            batch.push((idx, std::mem::replace(&mut bufs[k], next), *r));
                        }
                        if !batch.is_empty() && out.send_timeout(batch, TICK).is_err() {
                            tracing::trace!(interface = %name, "batch dropped: datapath queue full");
                        }
                    }
                    Err(e) => {
                        tracing::error!(interface = %name, error = %e, "receive failed");
                        break;
                    }
                }
            }
        }));
    }
    drop(frames_tx);
    let control = match &opts.control {
        Some(p) => Some(super::control::serve(p, stop.clone()).map_err(|e| LiveError::Io(p.display().to_string(), e.to_string()))?),
        None => None,
    };
    tracing::info!(host, interfaces = ?names, version = dp.topology().version, "datapath running");
    let version = dp.topology().version;
    let mut running = Running { mtime: mtime(&opts.snapshot), opts, version, since: SystemTime::now(), checked: SystemTime::now(), names };
    let requests = control.as_ref().map(|(_, rx)| rx.clone());
    process(&mut dp, &frames_rx, &pool_tx, &mut senders, &mut running, requests.as_ref());
    drop(control);
    for t in threads.into_iter().flatten() {
        let _ = t.join();
    }
    dp.finish();
    Ok(crate::io::pcap::ReplaySummary {
        version: running.version,
        stats: dp.stats().clone(),
        interfaces: running.names,
        workers: Vec::new(),
    })
}

fn process(
    dp: &mut Datapath,
    frames: &Receiver<Batch>,
    pool: &Sender<Vec<u8>>,
    senders: &mut [Arc<RawSocket>],
    running: &mut Running,
    requests: Option<&Receiver<super::control::Request>>,
) {
    let mut staged = Staged::default();
    while !running.opts.stop.load(Ordering::Relaxed) {
        if let Some(rx) = requests {
            while let Ok(req) = rx.try_recv() {
                let _ = req.reply.send(answer(dp, running, &req.command));
            }
        }
        reload_if_asked(dp, running);
        let Ok(batch) = frames.recv_timeout(Duration::from_millis(20)) else { continue };
        let at = now();
        staged.clear();
        for (i, mut buf, r) in batch {
            let frame = &mut buf[..r.len];
            if r.csum_pending {
                crate::wire::complete_pending_checksum(frame);
            }
            dp.process(i, frame, at);
            for (o, f) in dp.tx().iter() {
                staged.push(o, f);
            }
            let _ = pool.try_send(buf);
        }
        let mut refused = 0;
        for (o, frames) in staged.by_iface() {
            if let Some(s) = senders.get(o) {
                refused += s.send_many(&frames);
            }
        }
        if refused > 0 {
            tracing::debug!(refused, "sends refused");
        }
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

    /// Each interface with frames, and its frames.
    fn by_iface(&self) -> impl Iterator<Item = (usize, Vec<&[u8]>)> + '_ {
        self.ranges
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .map(|(k, r)| (k, r.iter().map(|x| &self.data[k][x.clone()]).collect()))
    }
}

/// Hot reload (SPEC §9): on SIGHUP, or when the snapshot file's modification time changes
/// (looked at once a second), the new snapshot is read, validated and compiled off the packet
/// path and swapped in; a bad one is refused with a log line and the running one stays.
fn reload_if_asked(dp: &mut Datapath, running: &mut Running) {
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
            match dp.set_topology(Arc::new(t)) {
                Ok(()) => {
                    running.version = v;
                    running.since = SystemTime::now();
                    tracing::info!(version = v, "snapshot activated");
                }
                Err(e) => tracing::error!("snapshot refused, version {} keeps running: {e}", running.version),
            }
        }
    }
}

/// The answer to one control command.
fn answer(dp: &Datapath, running: &Running, command: &str) -> String {
    match command {
        "status" => format!(
            "host {} running snapshot version {} since {} ({})",
            running.opts.host,
            running.version,
            humantime::format_rfc3339_seconds(running.since),
            running.opts.snapshot.display()
        ),
        "stats" => {
            let s = dp.stats();
            let summary = crate::io::pcap::ReplaySummary {
                version: running.version,
                stats: s.clone(),
                interfaces: running.names.clone(),
                workers: Vec::new(),
            };
            format!("{}flows: {}\nconnections: {}", summary.render(), dp.flow_count(), dp.connection_count())
        }
        "flows" => dp.flows_report(),
        "conntrack" => dp.conntrack_report(now()),
        c if c.starts_with("trace ") => {
            // `trace IFACE HEX`: a frame as hex, simulated on a copy of the state.
            let mut words = c.split_whitespace().skip(1);
            let (Some(name), Some(hex)) = (words.next(), words.next()) else { return "error: trace IFACE HEXFRAME".into() };
            let Some(i) = dp.interfaces().by_name(name) else { return format!("error: interface {name:?} is not bound") };
            let frame: Option<Vec<u8>> =
                (0..hex.len()).step_by(2).map(|k| hex.get(k..k + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect();
            match frame {
                Some(f) => dp.trace_packet(i, &f, now()).join("\n"),
                None => "error: the frame is not hex".into(),
            }
        }
        other => format!("error: unknown command {other:?}; commands: {}", super::control::COMMANDS.join(", ")),
    }
}
