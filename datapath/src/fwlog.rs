//! Firewall logging (SPEC §8, 004 §8.2.4): events go through a bounded queue to a writer thread
//! that appends one line per event to `DIR/fw-<firewall_log_id>.log` for every log of the
//! firewall that selects the event. The fast path never waits: when the queue is full the event
//! is dropped and counted.
//!
//! Line format — stable, one event per line, `key=value` fields separated by single spaces, in
//! this order:
//!
//! ```text
//! 2026-01-01T00:00:02.000000Z tenant_id=t1 firewall_id=fw1 firewall_rule_id=allow-http router_id=r1 src_ip=10.0.0.3 dst_ip=192.0.2.50 src_port=40000 dst_port=80 protocol=6 action=ACCEPT
//! ```
//!
//! The timestamp is the packet clock's, ISO 8601 in UTC with microseconds; ports are 0 for
//! packets without ports; `protocol` is the IANA number; `action` is `ACCEPT` or `DROP`.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, UNIX_EPOCH};

use crossbeam_channel::{Sender, TrySendError};
use rules::compile::{RouterRef, Topology};
use rules::model::FwEvent;

use crate::time::Instant;

/// Events the queue holds before new ones are dropped.
pub const QUEUE: usize = 4096;

/// One firewall decision worth logging.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Instant,
    pub topo: Arc<Topology>,
    /// Index into `topo.firewalls`.
    pub firewall: usize,
    /// Index into that firewall's rules.
    pub rule: usize,
    pub router: RouterRef,
    /// IPv6 addresses print as RFC 5952 text (SPEC §10.2).
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub accept: bool,
}

impl Event {
    /// The log line, without its newline.
    pub fn line(&self) -> String {
        let (_, fw) = &self.topo.firewalls[self.firewall];
        let ts = humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_nanos(self.at.0));
        format!(
            "{ts} tenant_id={} firewall_id={} firewall_rule_id={} router_id={} src_ip={} dst_ip={} src_port={} dst_port={} protocol={} action={}",
            fw.tenant_id,
            fw.id,
            fw.rules[self.rule].id,
            self.topo.router(self.router).id,
            self.src,
            self.dst,
            self.sport,
            self.dport,
            self.proto,
            if self.accept { "ACCEPT" } else { "DROP" }
        )
    }
}

/// The sending side, shared by the datapath's workers. [`FwLogger::finish`] (or dropping it)
/// flushes and joins the writer.
pub struct FwLogger {
    tx: Sender<Msg>,
    writer: std::sync::Mutex<Option<JoinHandle<()>>>,
    dropped: Arc<AtomicU64>,
}

/// What the writer receives: events, then one `Finish`.
enum Msg {
    Event(Event),
    Finish,
}

impl FwLogger {
    /// Start a writer appending under `dir`.
    pub fn start(dir: PathBuf) -> FwLogger {
        Self::start_with(dir, QUEUE)
    }

    fn start_with(dir: PathBuf, capacity: usize) -> FwLogger {
        let (tx, rx) = crossbeam_channel::bounded::<Msg>(capacity);
        let writer = std::thread::Builder::new()
            .name("fw-log".into())
            .spawn(move || {
                let mut files: HashMap<String, std::io::BufWriter<std::fs::File>> = HashMap::new();
                for msg in rx {
                    let Msg::Event(ev) = msg else { break };
                    let (_, fw) = &ev.topo.firewalls[ev.firewall];
                    let line = ev.line();
                    for log in &fw.logs {
                        let wanted = match log.event {
                            FwEvent::All => true,
                            FwEvent::Accept => ev.accept,
                            FwEvent::Drop => !ev.accept,
                        };
                        if !wanted {
                            continue;
                        }
                        let f = match files.get_mut(&log.log_id) {
                            Some(f) => f,
                            None => {
                                let path = dir.join(format!("fw-{}.log", log.log_id));
                                let Ok(file) = std::fs::OpenOptions::new().create(true).append(true).open(&path) else { continue };
                                files.entry(log.log_id.clone()).or_insert(std::io::BufWriter::new(file))
                            }
                        };
                        let _ = writeln!(f, "{line}");
                    }
                }
                for (_, mut f) in files {
                    let _ = f.flush();
                }
            })
            .ok();
        FwLogger { tx, writer: std::sync::Mutex::new(writer), dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// Queue an event; never blocks.
    #[inline]
    pub fn log(&self, ev: Event) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(Msg::Event(ev)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Write everything queued and stop the writer; events logged after this are dropped and
    /// counted.
    pub fn finish(&self) {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = writer {
            let _ = self.tx.send(Msg::Finish);
            let _ = w.join();
        }
    }
}

impl Drop for FwLogger {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topo: &Arc<Topology>, t: u64) -> Event {
        Event {
            at: Instant(t),
            topo: topo.clone(),
            firewall: 0,
            rule: 0,
            router: RouterRef(0),
            src: std::net::Ipv4Addr::new(10, 0, 0, 1).into(),
            dst: std::net::Ipv4Addr::new(10, 0, 0, 2).into(),
            sport: 1,
            dport: 2,
            proto: 17,
            accept: true,
        }
    }

    /// A full queue drops lines and counts them; it never blocks the caller.
    #[test]
    fn a_full_queue_drops_and_counts() {
        let snap = serde_json::json!({
            "version": 1,
            "routers": [{"id": "r"}],
            "firewall_rules": [{"id": "a", "action": "allow"}],
            "firewall_policies": [{"id": "p", "firewall_rules": ["a"]}],
            "firewalls": [{"id": "f", "firewall_policy_id": "p", "router_ids": ["r"]}],
            "logging_resources": [{"id": "l", "firewall_logs": [{"id": "x", "firewall_id": "f"}]}],
        });
        let topo = Arc::new(Topology::compile(rules::load_str(&snap.to_string()).expect("valid")).expect("compiles"));
        let dir = std::env::temp_dir().join(format!("fwlog-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        // A queue of one with no writer draining it: the first event is queued, the rest dropped.
        let (tx, rx) = crossbeam_channel::bounded::<Msg>(1);
        let l = FwLogger { tx, writer: std::sync::Mutex::new(None), dropped: Arc::new(AtomicU64::new(0)) };
        for t in 0..5 {
            l.log(event(&topo, t));
        }
        assert_eq!(l.dropped(), 4);
        assert_eq!(rx.len(), 1);
        l.finish();
        // And a real writer writes what it is given, one line per event.
        let l = FwLogger::start_with(dir.clone(), 16);
        l.log(event(&topo, 1_000_000));
        l.finish();
        let text = std::fs::read_to_string(dir.join("fw-x.log")).expect("log");
        assert_eq!(text, "1970-01-01T00:00:00.001000Z tenant_id= firewall_id=f firewall_rule_id=a router_id=r src_ip=10.0.0.1 dst_ip=10.0.0.2 src_port=1 dst_port=2 protocol=17 action=ACCEPT\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
