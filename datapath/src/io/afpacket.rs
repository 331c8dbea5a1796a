//! Live I/O (SPEC §2): every interface of the host bound with an AF_PACKET socket
//! ([`super::rawsock`]), in promiscuous mode; pnet lists the interfaces and their MACs.
//!
//! One receive thread per interface reads frames straight into pooled buffers and hands them, in
//! arrival order, to the datapath thread through a bounded channel; the datapath thread completes
//! checksums the kernel left pending (veth and tap hand frames over that way when the sender
//! offloads them), processes each frame (the clock read once per frame), sends what it outputs,
//! and returns the buffer to the pool. No allocation per packet once the pool is full. Frames
//! this host itself sent on an interface are ignored.
//!
//! This is the first cut: a `recvmsg()` per received frame and a `sendto()` per sent one
//! (STYLE.md's measurements); batched rings (TPACKET_V3) and several workers come next.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, Sender};
use rules::compile::Topology;
use rules::model::Mac;

use super::rawsock::RawSocket;
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
    let (frames_tx, frames_rx) = bounded::<(IfIdx, Vec<u8>, super::rawsock::Received)>(QUEUE);
    let (pool_tx, pool_rx) = bounded::<Vec<u8>>(QUEUE);
    for _ in 0..QUEUE {
        let _ = pool_tx.try_send(vec![0u8; 65536]);
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
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                match sock.recv(&mut buf) {
                    Ok(Some(r)) if !r.outgoing => {
                        let next = pool.recv_timeout(TICK).unwrap_or_else(|_| vec![0u8; 65536]);
                        let full = std::mem::replace(&mut buf, next);
                        if out.send_timeout((idx, full, r), TICK).is_err() {
                            tracing::trace!(interface = %name, "frame dropped: datapath queue full");
                        }
                    }
                    Ok(_) => {}
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
    frames: &Receiver<(IfIdx, Vec<u8>, super::rawsock::Received)>,
    pool: &Sender<Vec<u8>>,
    senders: &mut [Arc<RawSocket>],
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
        let Ok((i, mut buf, r)) = frames.recv_timeout(Duration::from_millis(20)) else { continue };
        let frame = &mut buf[..r.len];
        if r.csum_pending {
            crate::wire::complete_pending_checksum(frame);
        }
        dp.process(i, frame, now());
        let mut errors = 0;
        for (o, f) in dp.tx().iter() {
            if let Some(Err(e)) = senders.get(o.0 as usize).map(|s| s.send(f)) {
                tracing::debug!(error = %e, len = f.len(), "send failed");
                errors += 1;
            }
        }
        dp.count_tx_errors(errors);
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
