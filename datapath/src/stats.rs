//! A worker's counters (SPEC §4, §9): kept per worker, written only by it, summed on read.

use crate::drop::DropCounters;

/// Frames received and sent on one interface slot. A cache line each: the workers' counters
/// are written every packet, and two workers' vectors made one after the other would otherwise
/// share the line between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(align(64))]
pub struct IfaceCounts {
    pub rx: u64,
    pub tx: u64,
    /// Bytes of those frames (Ethernet header on), counted by live mode's I/O per batch.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Counters of one datapath. Every frame received ends up in exactly one of `forwarded`,
/// `handled` and `drops` — a frame waiting for ARP is counted when it leaves or is dropped.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub rx: u64,
    pub tx: u64,
    /// Frames that left on at least one interface.
    pub forwarded: u64,
    /// Frames the datapath consumed: ARP answered or learned, echo requests answered.
    pub handled: u64,
    pub drops: DropCounters,
    pub flow_hits: u64,
    /// Hits applied in place in their receive buffer and sent from there (issue 14); the rest
    /// were copied once into the transmit buffer.
    pub hits_in_place: u64,
    pub flow_misses: u64,
    /// Firewall log lines dropped because the writer's queue was full.
    pub fw_log_dropped: u64,
    /// Frames an interface refused to send (live mode: larger than its MTU, or a down link).
    pub tx_errors: u64,
    /// TCP super-frames (segmentation offload) cut into segments at ingress (live mode); each
    /// segment counts as a frame received.
    pub gso_cut: u64,
    /// Flows the cache let go (not used recently) to make room for new ones.
    pub flows_evicted: u64,
    /// Per interface slot of the running snapshot ([`crate::iface::Ifaces`]).
    pub per_iface: Vec<IfaceCounts>,
}

impl Stats {
    /// Add another worker's counters to these (SPEC §9: per worker, summed on read).
    pub fn add(&mut self, o: &Stats) {
        self.rx += o.rx;
        self.tx += o.tx;
        self.forwarded += o.forwarded;
        self.handled += o.handled;
        self.drops.add(&o.drops);
        self.flow_hits += o.flow_hits;
        self.hits_in_place += o.hits_in_place;
        self.flow_misses += o.flow_misses;
        self.fw_log_dropped += o.fw_log_dropped;
        self.tx_errors += o.tx_errors;
        self.gso_cut += o.gso_cut;
        self.flows_evicted += o.flows_evicted;
        if self.per_iface.len() < o.per_iface.len() {
            self.per_iface.resize(o.per_iface.len(), IfaceCounts::default());
        }
        for (a, b) in self.per_iface.iter_mut().zip(&o.per_iface) {
            a.rx += b.rx;
            a.tx += b.tx;
            a.rx_bytes += b.rx_bytes;
            a.tx_bytes += b.tx_bytes;
        }
    }

    /// One frame received on slot `slot`.
    #[inline]
    pub fn count_rx(&mut self, slot: crate::IfIdx) {
        self.count_rx_n(slot, 1);
    }

    /// `n` frames received on slot `slot` (a batch's counted at once).
    #[inline]
    pub fn count_rx_n(&mut self, slot: crate::IfIdx, n: u64) {
        self.rx += n;
        if let Some(c) = self.per_iface.get_mut(slot.0 as usize) {
            c.rx += n;
        }
    }

    /// `bytes` received or (`tx`) sent on slot `slot`, a batch's at once.
    pub fn count_bytes(&mut self, slot: crate::IfIdx, tx: bool, bytes: u64) {
        if let Some(c) = self.per_iface.get_mut(slot.0 as usize) {
            if tx {
                c.tx_bytes += bytes;
            } else {
                c.rx_bytes += bytes;
            }
        }
    }

    /// One frame sent on slot `slot`.
    #[inline]
    pub fn count_tx(&mut self, slot: crate::IfIdx) {
        self.tx += 1;
        if let Some(c) = self.per_iface.get_mut(slot.0 as usize) {
            c.tx += 1;
        }
    }
}
