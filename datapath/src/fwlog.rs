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
use std::net::Ipv4Addr;
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
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
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

/// The sending side, owned by the datapath. Dropping it flushes and joins the writer.
pub struct FwLogger {
    tx: Option<Sender<Event>>,
    writer: Option<JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
}

impl FwLogger {
    /// Start a writer appending under `dir`.
    pub fn start(dir: PathBuf) -> FwLogger {
        let (tx, rx) = crossbeam_channel::bounded::<Event>(QUEUE);
        let writer = std::thread::Builder::new()
            .name("fw-log".into())
            .spawn(move || {
                let mut files: HashMap<String, std::io::BufWriter<std::fs::File>> = HashMap::new();
                for ev in rx {
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
        FwLogger { tx: Some(tx), writer, dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// Queue an event; never blocks.
    #[inline]
    pub fn log(&self, ev: Event) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(ev) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Write everything queued and stop the writer.
    pub fn finish(&mut self) {
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for FwLogger {
    fn drop(&mut self) {
        self.finish();
    }
}
