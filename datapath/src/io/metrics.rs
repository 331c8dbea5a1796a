//! `run --metrics ADDR:PORT` (issue 16): a Prometheus endpoint. A scrape is a question to the
//! supervisor like the control socket's: the metrics are built then, from the workers' counters
//! (asked between batches and summed) and the shared tables, so nothing is added to the packet
//! path. Written in Prometheus' text format (0.0.4) by the `prometheus` crate, which Debian's
//! `promtool check metrics` reads (DECISIONS: why not OpenMetrics).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver};
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use super::control::{Instance, Request};

/// The content type of the text format.
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The endpoint's thread; joined when dropped (after `stop`).
pub struct Server {
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serve `GET /metrics` on `addr` until `stop`; each scrape arrives on the returned receiver as
/// the command `metrics`, to be answered with [`render`].
pub fn serve(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::io::Result<(Server, Receiver<Request>)> {
    let http = tiny_http::Server::http(addr).map_err(|e| std::io::Error::other(e.to_string()))?;
    let (tx, rx) = bounded::<Request>(4);
    let thread = std::thread::Builder::new().name("metrics".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(Some(req)) = http.recv_timeout(Duration::from_millis(100)) else { continue };
            let (status, body) = match (req.method(), req.url().split('?').next()) {
                (tiny_http::Method::Get, Some("/metrics")) => {
                    let (reply, wait) = bounded(1);
                    match tx.send_timeout(Request { command: "metrics".into(), reply }, Duration::from_secs(2)) {
                        Ok(()) => match wait.recv_timeout(Duration::from_secs(5)) {
                            Ok(text) => (200, text),
                            Err(_) => (503, "the datapath did not answer\n".into()),
                        },
                        Err(_) => (503, "the datapath is busy\n".into()),
                    }
                }
                _ => (404, "edgepath serves /metrics\n".into()),
            };
            let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], TEXT.as_bytes()).ok();
            let mut resp = tiny_http::Response::from_string(body).with_status_code(status);
            if let Some(h) = header {
                resp = resp.with_header(h);
            }
            let _ = req.respond(resp);
        }
    })?;
    Ok((Server { thread: Some(thread) }, rx))
}

/// A family of counters or gauges, registered in `reg`.
fn family<T: prometheus::core::Collector + Clone + 'static>(reg: &Registry, m: T) -> T {
    // Names are fixed here and unique: registering cannot fail.
    let _ = reg.register(Box::new(m.clone()));
    m
}

fn counters(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    family(reg, IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric name"))
}

fn gauges(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    family(reg, IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric name"))
}

/// Every metric of the running datapath, now, in the text format.
pub fn render(at: &dyn Instance) -> String {
    let shared = at.shared();
    let reg = Registry::new();
    let answers = at.loads();
    let mut stats = at.own_stats();
    stats.fw_log_dropped = shared.fw_log_dropped();
    for (s, _) in &answers {
        stats.add(s);
    }
    let ports = at.ports();
    let port_of = |iface: &str| ports.iter().find(|p| p.interface == iface).map_or("", |p| p.port.as_str());

    let names = shared.slot_names();
    let iface = |n: &str, h: &str| counters(&reg, n, h, &["interface", "port"]);
    let (rx, tx) =
        (iface("edgepath_interface_rx_packets_total", "Frames received."), iface("edgepath_interface_tx_packets_total", "Frames sent."));
    let (rxb, txb) = (
        iface("edgepath_interface_rx_bytes_total", "Bytes of the frames received."),
        iface("edgepath_interface_tx_bytes_total", "Bytes of the frames sent."),
    );
    for (name, c) in names.iter().zip(&stats.per_iface).filter(|(n, _)| !n.is_empty()) {
        let l = [name.as_str(), port_of(name)];
        rx.with_label_values(&l).inc_by(c.rx);
        tx.with_label_values(&l).inc_by(c.tx);
        rxb.with_label_values(&l).inc_by(c.rx_bytes);
        txb.with_label_values(&l).inc_by(c.tx_bytes);
    }
    let drops = counters(&reg, "edgepath_drops_total", "Frames dropped, by reason.", &["reason"]);
    for r in crate::DropReason::ALL {
        drops.with_label_values(&[r.name()]).inc_by(stats.drops.get(*r));
    }
    let one = |name: &str, help: &str, v: u64| counters(&reg, name, help, &[]).with_label_values::<&str>(&[]).inc_by(v);
    one("edgepath_flow_cache_hits_total", "Frames that took a cached flow.", stats.flow_hits);
    one("edgepath_flow_cache_misses_total", "Frames the simulation took (no fresh cached flow).", stats.flow_misses);
    one("edgepath_fw_log_lines_dropped_total", "Firewall log lines dropped because the writer's queue was full.", stats.fw_log_dropped);

    let (flows, packets, batch) = (
        gauges(&reg, "edgepath_flows", "Cached flows, by worker.", &["worker"]),
        counters(&reg, "edgepath_worker_packets_total", "Frames received, by worker.", &["worker"]),
        gauges(&reg, "edgepath_worker_batch_size", "Frames per read that brought any, by worker (VPP's vectors per call).", &["worker"]),
    );
    for (k, (_, load)) in answers.iter().enumerate() {
        let w = [k.to_string()];
        flows.with_label_values(&w).set(load.flows as i64);
        packets.with_label_values(&w).inc_by(load.rx);
        batch.with_label_values(&w).set(load.rx.checked_div(load.batches).unwrap_or(0) as i64);
    }
    let conns = gauges(&reg, "edgepath_connections", "Tracked connections, by router and kind (nat, firewall).", &["router", "kind"]);
    for (router, nat, fw) in shared.connections_by_router() {
        conns.with_label_values(&[router.as_str(), "nat"]).set(nat as i64);
        conns.with_label_values(&[router.as_str(), "firewall"]).set(fw as i64);
    }
    gauges(&reg, "edgepath_snapshot_version", "The snapshot version running.", &[]).with_label_values::<&str>(&[]).set(at.version() as i64);
    let up = gauges(&reg, "edgepath_port_up", "1 when the port's interface is bound and up.", &["port", "interface"]);
    for p in &ports {
        up.with_label_values(&[p.port.as_str(), p.interface.as_str()]).set((p.state == "up") as i64);
    }
    let fill = shared.tables(answers.iter().map(|(_, l)| l.flows).collect());
    let (entries, limit) = (
        gauges(
            &reg,
            "edgepath_table_entries",
            "Entries of a bounded table (for a per-router, per-network or per-worker bound, the fullest one's).",
            &["table"],
        ),
        gauges(&reg, "edgepath_table_limit", "The bound of a table (run --max-…).", &["table"]),
    );
    for (table, n, bound) in fill.bounded() {
        entries.with_label_values(&[table]).set(n as i64);
        limit.with_label_values(&[table]).set(bound as i64);
    }
    let mut out = Vec::new();
    // The text encoder fails only on a writer error, and a Vec does not fail.
    let _ = TextEncoder::new().encode(&reg.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}
