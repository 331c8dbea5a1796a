//! Live I/O (SPEC §2): every interface of the host bound with AF_PACKET through pnet's datalink
//! channel, in promiscuous mode.
//!
//! One receive thread per interface reads frames into pooled buffers and hands them, in arrival
//! order, to the datapath thread through a bounded channel; the datapath thread processes each
//! (the clock read once per frame) and sends what it outputs through the interfaces' senders;
//! buffers go back to the pool. No allocation per packet once the pool is full.
//!
//! This is the first cut: pnet costs a `poll()` and a `recvfrom()` per received frame and a
//! `sendto()` per sent one (STYLE.md's measurements); batched rings (TPACKET_V3) and several
//! workers come next, as do checksums left pending by offload (`TP_STATUS_CSUMNOTREADY`), which
//! pnet does not report: until then, turn off TX checksum offload on veths that feed the datapath.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, Sender};
use pnet_datalink::{Channel, Config, DataLinkSender};
use rules::compile::Topology;
use rules::model::Mac;

use crate::datapath::{Datapath, Stats};
use crate::iface::{IfIdx, Ifaces};
use crate::time::Instant;

/// Frames waiting between the receive threads and the datapath.
const QUEUE: usize = 4096;
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

/// Run the datapath on the host's interfaces until `stop` is set; returns its counters.
pub fn run(topo: Arc<Topology>, opts: LiveOptions) -> Result<Stats, LiveError> {
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
    let cfg = Config { read_timeout: Some(TICK), promiscuous: true, ..Default::default() };
    let (frames_tx, frames_rx) = bounded::<(IfIdx, Vec<u8>, usize)>(QUEUE);
    let (pool_tx, pool_rx) = bounded::<Vec<u8>>(QUEUE);
    for _ in 0..QUEUE {
        let _ = pool_tx.try_send(vec![0u8; 65536]);
    }
    let mut senders: Vec<Box<dyn DataLinkSender>> = Vec::new();
    let mut threads = Vec::new();
    for (k, ni) in found.iter().enumerate() {
        let (tx, mut rx) = match pnet_datalink::channel(ni, cfg) {
            Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
            Ok(_) => return Err(LiveError::Io(ni.name.clone(), "not an Ethernet interface".into())),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(LiveError::Permission(ni.name.clone())),
            Err(e) => return Err(LiveError::Io(ni.name.clone(), e.to_string())),
        };
        senders.push(tx);
        let (out, pool, stop) = (frames_tx.clone(), pool_rx.clone(), stop.clone());
        let idx = IfIdx(k as u16);
        let name = ni.name.clone();
        threads.push(std::thread::Builder::new().name(format!("rx-{name}")).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match rx.next() {
                    Ok(frame) => {
                        let mut buf = pool.recv_timeout(TICK).unwrap_or_else(|_| vec![0u8; 65536]);
                        let n = frame.len().min(buf.len());
                        buf[..n].copy_from_slice(&frame[..n]);
                        if out.send_timeout((idx, buf, n), TICK).is_err() {
                            tracing::trace!(interface = %name, "frame dropped: datapath queue full");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
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
    Ok(dp.stats().clone())
}

fn process(
    dp: &mut Datapath,
    frames: &Receiver<(IfIdx, Vec<u8>, usize)>,
    pool: &Sender<Vec<u8>>,
    senders: &mut [Box<dyn DataLinkSender>],
    running: &mut Running,
    requests: Option<&Receiver<super::control::Request>>,
) {
    while !running.opts.stop.load(Ordering::Relaxed) {
        if let Some(rx) = requests {
            while let Ok(req) = rx.try_recv() {
                let _ = req.reply.send(answer(dp, running, &req.command));
            }
        }
        reload_if_asked(dp, running);
        let Ok((i, buf, n)) = frames.recv_timeout(Duration::from_millis(20)) else { continue };
        dp.process(i, &buf[..n], now());
        for (o, f) in dp.tx().iter() {
            if let Some(Some(Err(e))) = senders.get_mut(o.0 as usize).map(|s| s.send_to(f, None)) {
                tracing::debug!(error = %e, "send failed");
            }
        }
        let _ = pool.try_send(buf);
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
            let summary = crate::io::pcap::ReplaySummary { version: running.version, stats: s.clone(), interfaces: running.names.clone() };
            format!("{}flows: {}\nconnections: {}", summary.render(), dp.flow_count(), dp.connection_count())
        }
        "flows" => dp.flows_report(),
        "conntrack" => dp.conntrack_report(now()),
        other => format!("error: unknown command {other:?}; commands: {}", super::control::COMMANDS.join(", ")),
    }
}
