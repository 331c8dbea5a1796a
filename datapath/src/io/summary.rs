//! What a run did, as the CLI prints it and `stats` answers: counters summed over workers, each
//! worker's load, and each table's fill (SPEC §4, §9). Replay and live mode both report this way.

use crate::Stats;

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplaySummary {
    pub version: u64,
    pub stats: Stats,
    /// Interface names, by [`IfIdx`].
    pub interfaces: Vec<String>,
    /// Frames each replay worker applied (empty with one thread).
    pub workers: Vec<u64>,
    /// Each live worker's load (empty in replay).
    pub live: Vec<WorkerLoad>,
    /// Each table's fill against its bound, at the end.
    pub tables: Option<crate::limits::TableFill>,
}

/// What one live worker did.
#[derive(Debug, Clone, Default)]
pub struct WorkerLoad {
    pub rx: u64,
    pub tx: u64,
    /// Flows in its cache.
    pub flows: usize,
    /// Reads that brought frames (a ring's ready blocks, or one `recvmmsg()`): `rx / batches` is
    /// the average batch, VPP's vectors per call.
    pub batches: u64,
    /// Frames received per second over about the last second, while running.
    pub pps: Option<f64>,
}

impl ReplaySummary {
    /// The summary the CLI prints: frames in, out, forwarded, handled, dropped by reason.
    pub fn render(&self) -> String {
        let s = &self.stats;
        let mut out = format!(
            "snapshot version {}\nframes in: {}\nframes out: {}\nforwarded: {}\nhandled: {}\ndropped: {}\n",
            self.version,
            s.rx,
            s.tx,
            s.forwarded,
            s.handled,
            s.drops.total()
        );
        for (r, n) in s.drops.nonzero() {
            out.push_str(&format!("  {:<24} {n}\n", r.name()));
        }
        out.push_str(&format!("flow cache: {} hits ({} applied in place), {} misses\n", s.flow_hits, s.hits_in_place, s.flow_misses));
        if s.tx_errors > 0 {
            out.push_str(&format!("send errors: {}\n", s.tx_errors));
        }
        if s.gso_cut > 0 {
            out.push_str(&format!("super-frames cut into segments: {}\n", s.gso_cut));
        }
        if let Some(t) = &self.tables {
            out.push_str(&t.render());
            if s.flows_evicted > 0 {
                out.push_str(&format!("flows evicted (not used recently): {}\n", s.flows_evicted));
            }
        }
        if s.fw_log_dropped > 0 {
            out.push_str(&format!("firewall log lines dropped (queue full): {}\n", s.fw_log_dropped));
        }
        for (name, c) in self.interfaces.iter().zip(s.per_iface.iter()).filter(|(n, _)| !n.is_empty()) {
            out.push_str(&format!("interface {name}: in {}, out {}\n", c.rx, c.tx));
        }
        for (k, n) in self.workers.iter().enumerate() {
            out.push_str(&format!("worker {k}: {n} cached frames applied\n"));
        }
        for (k, w) in self.live.iter().enumerate() {
            let rate = w.pps.map(|p| format!(", {p:.0} packets/s")).unwrap_or_default();
            let per = if w.batches > 0 { w.rx as f64 / w.batches as f64 } else { 0.0 };
            out.push_str(&format!("worker {k}: in {}, out {}, flows {}, {} batches of {per:.1}{rate}\n", w.rx, w.tx, w.flows, w.batches));
        }
        out
    }
}

/// `stats --format json`: the same summary as [`ReplaySummary::render`]'s text, as an object —
/// drops by reason (every reason), each interface's frames and bytes, each worker's load, each
/// bounded table's fill.
impl serde::Serialize for ReplaySummary {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let s = &self.stats;
        let drops: serde_json::Map<String, serde_json::Value> =
            crate::DropReason::ALL.iter().map(|&r| (r.name().to_string(), s.drops.get(r).into())).collect();
        let interfaces: Vec<serde_json::Value> = self
            .interfaces
            .iter()
            .zip(&s.per_iface)
            .filter(|(n, _)| !n.is_empty())
            .map(|(n, c)| serde_json::json!({"interface": n, "rx": c.rx, "tx": c.tx, "rx_bytes": c.rx_bytes, "tx_bytes": c.tx_bytes}))
            .collect();
        let workers: Vec<serde_json::Value> = self
            .live
            .iter()
            .enumerate()
            .map(|(k, w)| serde_json::json!({"worker": k, "rx": w.rx, "tx": w.tx, "flows": w.flows, "batches": w.batches, "pps": w.pps}))
            .collect();
        let tables: Vec<serde_json::Value> = self
            .tables
            .iter()
            .flat_map(|t| t.bounded())
            .map(|(table, entries, limit)| serde_json::json!({"table": table, "entries": entries, "limit": limit}))
            .collect();
        serde_json::json!({
            "version": self.version,
            "rx": s.rx, "tx": s.tx, "forwarded": s.forwarded, "handled": s.handled, "dropped": s.drops.total(),
            "drops": drops,
            "flow_hits": s.flow_hits, "hits_in_place": s.hits_in_place, "flow_misses": s.flow_misses,
            "tx_errors": s.tx_errors, "gso_cut": s.gso_cut, "flows_evicted": s.flows_evicted, "fw_log_dropped": s.fw_log_dropped,
            "interfaces": interfaces,
            "workers": workers,
            "tables": tables,
        })
        .serialize(ser)
    }
}
