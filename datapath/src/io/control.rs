//! The control socket of a running datapath: a Unix stream socket, owner-only (mode 0600), one
//! command per connection — `status`, `stats`, `flows`, `conntrack`, `trace` — answered as text by
//! the main thread, which asks the workers between batches for what is theirs. A listener thread
//! accepts and forwards; nothing the socket does can block a worker.
//!
//! One instance per control socket: [`InstanceLock`] holds `<socket>.lock` (an advisory lock,
//! `flock`) for the process's life, taken before any interface is bound, so a second `run` for the
//! same host is refused before it can duplicate a frame; and a socket file is unlinked only by
//! the instance that made it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{bounded, Receiver, Sender};

use super::summary::{ReplaySummary, WorkerLoad};
use crate::shared::Shared;
use crate::time::Instant;
use crate::Stats;

/// The commands the socket takes (`trace IFACE HEXFRAME` simulates a frame on a copy of the state).
pub const COMMANDS: &[&str] = &["status", "stats", "flows", "conntrack", "trace", "metrics", "tap"];

/// One command and where its answer goes.
pub struct Request {
    pub command: String,
    pub reply: Sender<String>,
}

/// The listening side; removes its socket file when dropped, if the file is still the one it made.
pub struct Server {
    path: PathBuf,
    /// The socket file's inode, as bound.
    inode: Option<u64>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.inode.is_some() && std::fs::metadata(&self.path).ok().map(|m| m.ino()) == self.inode {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// This process's claim to a control socket, held until it is dropped (the process ends).
pub struct InstanceLock {
    _file: std::fs::File,
}

/// Why an instance cannot start beside another.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}: another edgepath (pid {}) runs with this control socket; stop it first, or give this one another --control", .0.display(), .1)]
    Held(PathBuf, String),
    #[error("{}: {}", .0.display(), .1)]
    Io(PathBuf, std::io::Error),
}

/// Take `<control>.lock`, or say who holds it.
pub fn lock(control: &Path) -> Result<InstanceLock, LockError> {
    let mut name = control.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| LockError::Io(path.clone(), e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default().trim().to_string();
            return Err(LockError::Held(path, if pid.is_empty() { "?".into() } else { pid }));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(path, e)),
    }
    let _ = file.set_len(0);
    let _ = (&file).write_all(format!("{}\n", std::process::id()).as_bytes());
    Ok(InstanceLock { _file: file })
}

/// Listen on `path` until `stop`; requests arrive on the returned receiver.
pub fn serve(path: &Path, stop: Arc<AtomicBool>) -> std::io::Result<(Server, Receiver<Request>)> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let inode = std::fs::metadata(path).ok().map(|m| m.ino());
    listener.set_nonblocking(true)?;
    let (tx, rx) = bounded::<Request>(16);
    let thread = std::thread::Builder::new().name("control".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => forward(stream, &tx),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
            }
        }
    })?;
    Ok((Server { path: path.to_path_buf(), inode, thread: Some(thread) }, rx))
}

fn forward(stream: UnixStream, tx: &Sender<Request>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    let (reply, wait) = bounded(1);
    let text = match tx.send_timeout(Request { command: line.trim().to_string(), reply }, Duration::from_secs(2)) {
        Ok(()) => wait.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| "error: the datapath did not answer".to_string()),
        Err(_) => "error: the datapath is busy".to_string(),
    };
    let mut s = &stream;
    let _ = s.write_all(text.as_bytes());
    let _ = s.write_all(b"\n");
}

/// Bytes as hex, as frames travel over the socket.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex back into bytes; `None` when it is not hex.
pub fn from_hex(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len()).step_by(2).map(|k| hex.get(k..k + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

/// The interface of port `id`, when it is bound to one.
fn port_interface(topo: &rules::compile::Topology, id: &str) -> Option<String> {
    topo.port_by_id.get(id).and_then(|&p| topo.port(p).interface.clone())
}

/// Send `command` to the datapath listening on `path` and return its answer.
pub fn ask(path: &Path, command: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out)?;
    Ok(out)
}

/// One line of `status`.
pub struct PortStatus {
    pub port: String,
    pub interface: String,
    pub ifindex: Option<u32>,
    pub state: &'static str,
    pub since: SystemTime,
}

/// What the control protocol asks of a running datapath (its supervisor, `afpacket.rs`).
pub trait Instance {
    /// The state every worker shares.
    fn shared(&self) -> &Shared;
    fn host(&self) -> &str;
    /// The snapshot version running, since when, and where it was read (the file, or etcd's
    /// servers and prefix).
    fn version(&self) -> u64;
    fn since(&self) -> SystemTime;
    fn source(&self) -> String;
    /// The last version refused, as one line, until another is applied.
    fn refused(&self) -> Option<&str>;
    fn workers(&self) -> usize;
    /// Every interface of the snapshot, by port, in slot order.
    fn ports(&self) -> Vec<PortStatus>;
    /// The counters the supervisor keeps itself (packets that reloads let go).
    fn own_stats(&self) -> Stats;
    /// Each worker's counters and load, asked between its batches.
    fn loads(&self) -> Vec<(Stats, WorkerLoad)>;
    /// Each worker's flows.
    fn flows(&self) -> Vec<Vec<crate::report::FlowRecord>>;
}

/// `status` as JSON: host, version, since, source, the refusal, workers, ports.
pub fn status_json(at: &dyn Instance) -> serde_json::Value {
    let ports: Vec<serde_json::Value> = at
        .ports()
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "port": p.port, "interface": p.interface, "ifindex": p.ifindex, "state": p.state,
                "since": humantime::format_rfc3339_seconds(p.since).to_string(),
            })
        })
        .collect();
    serde_json::json!({
        "host": at.host(),
        "version": at.version(),
        "since": humantime::format_rfc3339_seconds(at.since()).to_string(),
        "snapshot": at.source(),
        "refused": at.refused(),
        "workers": at.workers(),
        "ports": ports,
    })
}

/// The answer to one control command.
pub fn answer(at: &dyn Instance, command: &str) -> String {
    let shared = at.shared();
    match command {
        "status" => {
            let mut out = format!(
                "host {} running snapshot version {} since {} ({}), {} workers",
                at.host(),
                at.version(),
                humantime::format_rfc3339_seconds(at.since()),
                at.source(),
                at.workers()
            );
            if let Some(line) = at.refused() {
                out.push_str(&format!("\nrefused {line}"));
            }
            for p in at.ports() {
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
        "status json" => status_json(at).to_string(),
        "metrics" => super::metrics::render(at),
        "stats" | "stats json" => {
            let answers = at.loads();
            let mut stats = at.own_stats();
            stats.fw_log_dropped = shared.fw_log_dropped();
            for (s, _) in &answers {
                stats.add(s);
            }
            let flows: usize = answers.iter().map(|(_, l)| l.flows).sum();
            let summary = ReplaySummary {
                version: at.version(),
                stats,
                interfaces: shared.slot_names(),
                workers: Vec::new(),
                tables: Some(shared.tables(answers.iter().map(|(_, l)| l.flows).collect())),
                live: answers.into_iter().map(|(_, l)| l).collect(),
            };
            if command == "stats json" {
                let mut v = serde_json::to_value(&summary).unwrap_or_default();
                v["flows"] = flows.into();
                v["connections"] = shared.connection_count().into();
                v.to_string()
            } else {
                format!("{}flows: {flows}\nconnections: {}", summary.render(), shared.connection_count())
            }
        }
        c if c == "flows" || c.starts_with("flows ") => {
            // `flows [json] [port=ID] [router=ID]`: a port's flows come in or go out by its
            // interface; a router's enter it (they match one of its ports' MACs).
            let snap = shared.snapshot();
            let topo = &snap.topo;
            let mut json = false;
            let (mut iface, mut macs) = (None, None);
            for w in c.split_whitespace().skip(1) {
                match w.split_once('=') {
                    None if w == "json" => json = true,
                    Some(("port", id)) => match port_interface(topo, id) {
                        Some(i) => iface = Some(i),
                        None => return format!("error: no port {id:?} bound to an interface"),
                    },
                    Some(("router", id)) => match topo.routers.iter().position(|r| r.id == id) {
                        Some(r) => {
                            let r = rules::compile::RouterRef(r as u32);
                            macs = Some(topo.ports.iter().filter(|p| p.router == Some(r)).map(|p| p.mac.to_string()).collect::<Vec<_>>())
                        }
                        None => return format!("error: no router {id:?}"),
                    },
                    _ => return format!("error: flows takes json, port=, router=, not {w:?}"),
                }
            }
            let keep = |f: &crate::report::FlowRecord| {
                iface.as_ref().is_none_or(|i| f.in_iface == *i || f.outputs.iter().any(|o| o == i || o.ends_with(&format!("):{i}"))))
                    && macs.as_ref().is_none_or(|m| m.contains(&f.eth_dst))
            };
            let workers: Vec<Vec<crate::report::FlowRecord>> =
                at.flows().into_iter().map(|w| w.into_iter().filter(keep).collect()).collect();
            if json {
                let all: Vec<serde_json::Value> = workers
                    .iter()
                    .enumerate()
                    .flat_map(|(k, w)| {
                        w.iter().map(move |f| {
                            let mut v = serde_json::to_value(f).unwrap_or_default();
                            v["worker"] = k.into();
                            v
                        })
                    })
                    .collect();
                serde_json::Value::Array(all).to_string()
            } else {
                workers
                    .iter()
                    .enumerate()
                    .map(|(k, f)| match f.is_empty() {
                        true => format!("worker {k}: no flows"),
                        false => format!("worker {k}:\n{}", f.iter().map(crate::report::FlowRecord::line).collect::<Vec<_>>().join("\n")),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        c if c == "conntrack" || c.starts_with("conntrack ") => {
            // `conntrack [json] [src=IP] [dst=IP] [router=ID] [proto=P]`.
            let mut filter = crate::report::ConnFilter::default();
            let mut json = false;
            for w in c.split_whitespace().skip(1) {
                match w.split_once('=') {
                    None if w == "json" => json = true,
                    Some(("src", v)) => match v.parse() {
                        Ok(a) => filter.src = Some(a),
                        Err(_) => return format!("error: src {v:?} is not an address"),
                    },
                    Some(("dst", v)) => match v.parse() {
                        Ok(a) => filter.dst = Some(a),
                        Err(_) => return format!("error: dst {v:?} is not an address"),
                    },
                    Some(("router", v)) => filter.router = Some(v.to_string()),
                    Some(("proto", v)) => filter.proto = Some(v.to_string()),
                    _ => return format!("error: conntrack takes json, src=, dst=, router=, proto=, not {w:?}"),
                }
            }
            let records: Vec<_> = shared.conntrack_records(Instant::wall()).into_iter().filter(|c| filter.matches(c)).collect();
            if json {
                serde_json::to_string(&records).unwrap_or_default()
            } else {
                records.iter().map(crate::report::ConnRecord::line).collect::<Vec<_>>().join("\n")
            }
        }
        c if c.starts_with("trace ") => {
            // `trace IFACE HEX [json]`: a frame as hex, simulated on a copy of the state.
            let mut words = c.split_whitespace().skip(1);
            let (Some(name), Some(hex)) = (words.next(), words.next()) else { return "error: trace IFACE HEXFRAME [json]".into() };
            let json = words.next() == Some("json");
            let Some(i) = shared.snapshot().ifs.by_name(name) else { return format!("error: interface {name:?} is not bound") };
            match from_hex(hex) {
                Some(f) if json => serde_json::to_string(&shared.trace_packet(i, &f, Instant::wall())).unwrap_or_default(),
                Some(f) => shared.trace_packet(i, &f, Instant::wall()).lines().join("\n"),
                None => "error: the frame is not hex".into(),
            }
        }
        c if c.starts_with("tap ") => tap(shared, c),
        other => format!("error: unknown command {other:?}; commands: {}", COMMANDS.join(", ")),
    }
}

/// `tap trace N [in=IF] [proto=P] [src=IP] [dst=IP] [sport=N] [dport=N]` and `tap drops N
/// [reason=R] [port=ID]` arm the tap (`tap.rs`) for N events; `tap take` answers what it holds
/// as JSON (`events`, `remaining`, `lost`); `tap stop` disarms it.
fn tap(shared: &Shared, c: &str) -> String {
    use crate::tap::Event;
    let mut words = c.split_whitespace().skip(1);
    let verb = words.next().unwrap_or_default();
    match verb {
        "take" => {
            let (events, remaining, lost) = shared.tap().take();
            let events: Vec<serde_json::Value> = events
                .iter()
                .map(|e| match e {
                    Event::Trace { iface, lines } => serde_json::json!({"kind": "trace", "interface": iface, "lines": lines}),
                    Event::Drop { iface, reason, at, frame } => serde_json::json!({
                        "kind": "drop", "interface": iface, "reason": reason.name(), "description": reason.description(),
                        "at_ns": at, "frame": to_hex(frame),
                    }),
                })
                .collect();
            serde_json::json!({"events": events, "remaining": remaining, "lost": lost}).to_string()
        }
        "stop" => {
            shared.tap().release();
            "stopped".into()
        }
        "trace" | "drops" => match tap_spec(shared, verb, words) {
            Ok((mode, filter, count)) => match shared.tap().arm(mode, filter, count) {
                Ok(()) => "armed".into(),
                Err(why) => format!("error: {why}"),
            },
            Err(e) => e,
        },
        _ => "error: tap trace|drops|take|stop".into(),
    }
}

/// What `tap trace|drops N key=value…` asks for, or the error line.
fn tap_spec<'a>(
    shared: &Shared,
    verb: &str,
    mut words: impl Iterator<Item = &'a str>,
) -> Result<(crate::tap::Mode, crate::tap::Filter, usize), String> {
    use crate::tap::{Filter, Mode};
    let count = words.next().and_then(|n| n.parse::<usize>().ok()).filter(|&n| n > 0);
    let count = count.ok_or_else(|| format!("error: tap {verb} N: a count of at least 1"))?;
    let snap = shared.snapshot();
    let mut filter = Filter::default();
    let mut reason = None;
    for w in words {
        let (k, v) = w.split_once('=').ok_or_else(|| format!("error: tap {verb}: {w:?} is not key=value"))?;
        let bad = || format!("error: tap {verb}: {k} {v:?}");
        fn field<T: std::str::FromStr>(v: &str, bad: impl Fn() -> String) -> Result<Option<T>, String> {
            v.parse().map(Some).map_err(|_| bad())
        }
        match k {
            "in" => filter.iface = Some(snap.ifs.by_name(v).ok_or_else(|| format!("error: interface {v:?} is not bound"))?),
            "port" => {
                let i = port_interface(&snap.topo, v).and_then(|i| snap.ifs.by_name(&i));
                filter.iface = Some(i.ok_or_else(|| format!("error: no port {v:?} bound to an interface"))?);
            }
            "proto" => {
                filter.proto = Some(crate::report::proto_number(v).ok_or_else(bad)?);
            }
            "src" => filter.src = field(v, bad)?,
            "dst" => filter.dst = field(v, bad)?,
            "sport" => filter.sport = field(v, bad)?,
            "dport" => filter.dport = field(v, bad)?,
            "reason" => {
                let r = crate::DropReason::ALL.iter().find(|r| r.name() == v);
                reason = Some(*r.ok_or_else(|| format!("error: no drop reason {v:?}"))?);
            }
            _ => return Err(bad()),
        }
    }
    let mode = if verb == "trace" { Mode::Trace } else { Mode::Drops(reason) };
    Ok((mode, filter, count))
}
