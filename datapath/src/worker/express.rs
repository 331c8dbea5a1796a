//! The vector path's express lane (issue 14): the frames most traffic is made of — whole IPv4
//! TCP and UDP, not VXLAN — read into five key words and a hash that stay in registers, and
//! their fresh flows with one output applied in place, without the general door's headers,
//! classification record and outcome. It is a shortcut, not a second datapath: the frame is
//! parsed by [`wire::parse_ipv4_frame`], the IPv4 arm of the one parser, keyed by the words a
//! [`crate::flow::FlowKey::Plain`] holds, and a hit does what [`Datapath::process_or_defer`]
//! does for it, in the same order. Whatever the lane does not take — another kind of frame, a
//! miss, a stale flow, a flow that floods, drops, logs or does not fit in place, a due timer —
//! it leaves untouched for the general door, which then finds everything as it was (the pcap
//! suites and the datapath fuzz target compare the two byte for byte).

use std::sync::atomic::Ordering::Relaxed;

use crate::batch::RxFrames;
use crate::fastpath::{InPlace, Outcome};
use crate::flow::{FlowKey, Outputs};
use crate::iface::IfIdx;
use crate::rewrite::Rewrite;
use crate::time::Instant;
use crate::wire::{self, vxlan, Frag, L4};

use super::Datapath;

/// The low 48 bits: a MAC in a key word.
const MAC48: u64 = (1 << 48) - 1;

/// What the lane keeps of a frame between reading it and taking its flow: its key's words,
/// their hash and the TCP flags (0 for UDP).
#[derive(Debug, Clone, Copy)]
pub(super) struct Lane {
    words: [u64; 5],
    pub(super) hash: u64,
    flags: u8,
}

impl Datapath {
    /// The lane's reading of `frame`, from `iface`: `None` for what it leaves to the general
    /// door (not a whole IPv4 TCP or UDP frame, VXLAN, malformed).
    #[inline(always)]
    pub(super) fn lane(&self, iface: IfIdx, frame: &[u8]) -> Option<Lane> {
        let ip = wire::parse_ipv4_frame(frame)?.ok()?.ip;
        let flags = match ip.l4 {
            _ if ip.frag != Frag::Whole => return None,
            L4::Tcp { flags, .. } => flags,
            L4::Udp { dport, .. } if dport != vxlan::PORT => 0,
            _ => return None,
        };
        // The MACs as key words straight from the frame: two loads, not twelve bytes.
        let eth = frame.first_chunk::<{ wire::ETH_LEN }>()?;
        let mac = |at: usize| eth.get(at..at + 8).map_or(0, |b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
        let words = crate::flow::plain4(iface, mac(6) & MAC48, mac(0) & MAC48, &ip)?;
        Some(Lane { words, hash: self.flows.hash_words(&words), flags })
    }

    /// Frame `k` of `rx`, read by the lane as `lane`, taken through its fresh flow, applied in
    /// place: true when it was (counted and staged), false when the frame is left, untouched,
    /// for the general door. A flow found stale is let go, as the general door lets it go.
    #[inline(always)]
    pub(super) fn express(&mut self, iface: IfIdx, rx: &mut impl RxFrames, k: usize, lane: &Lane, now: Instant) -> bool {
        if self.shared.timers_due(now) {
            return false;
        }
        let Some(flow) = self.flows.get_plain(lane.hash, &lane.words) else { return false };
        if flow.epoch != self.shared.epoch() || !flow.learned.fresh(&self.gens) {
            self.flows.remove(&FlowKey::Plain(lane.words));
            return false;
        }
        let (Rewrite::V4(rewrite), Outputs::One(out), false) = (&flow.rewrite, &flow.outputs, flow.logs()) else { return false };
        let (buf, at) = rx.buf_mut(k);
        let len = buf.len().saturating_sub(at);
        let Some(plan) = InPlace::plan(flow, at..at + len, 0..len, 0) else { return false };
        // Checked last: it touches the flow's connections.
        if !flow.holds(lane.flags, now) {
            self.flows.remove(&FlowKey::Plain(lane.words));
            return false;
        }
        self.tx.begin();
        self.stats.count_rx(iface);
        if let Some(m) = &flow.mac_seen {
            m.touch(now);
        }
        self.stats.flow_hits += 1;
        flow.hits.store(flow.hits.load(Relaxed) + 1, Relaxed);
        self.stats.hits_in_place += 1;
        let qos = &self.snap.qos;
        match plan.apply(flow, buf, &mut self.tx, k, |b| qos.conforms(b, len, now), |f| rewrite.apply_bytes(f, None)) {
            Outcome::Dropped(r) => self.stats.drops.incr(r),
            _ => {
                self.stats.forwarded += 1;
                self.stats.count_tx(out.iface);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// Whatever the lane reads, the general door reads the same: a key of the same words, with
    /// the same hash. Frames of every kind the lane takes, with every byte of their headers
    /// changed in turn to a few values (and the IPv4 checksum made right) (the lane must turn down what the door does not key).
    #[test]
    fn the_lane_keys_what_the_general_door_keys() {
        let snap = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/fip-dnat-inbound/snapshot.json");
        let topo = rules::compile::load_topology(&snap).unwrap();
        let dp = Datapath::new(std::sync::Arc::new(topo), "host-a", &Default::default()).unwrap();
        let b = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
        let mut frames = Vec::new();
        for (n, payload) in [(0, &b""[..]), (1, b"payload of a few bytes")] {
            let mut v = Vec::new();
            b().udp(1234 + n, 80).write(&mut v, payload).unwrap();
            frames.push(v);
            let mut v = Vec::new();
            b().tcp(1234 + n, 80, 1, 1000).syn().write(&mut v, payload).unwrap();
            frames.push(v);
            let mut v = Vec::new();
            b().udp(1234, vxlan::PORT).write(&mut v, payload).unwrap();
            frames.push(v);
            let mut v = Vec::new();
            b().icmpv4_echo_request(7, 1).write(&mut v, payload).unwrap();
            frames.push(v);
        }
        let (mut taken, mut left) = (0, 0);
        for f in &frames {
            for at in 0..f.len().min(64) {
                for x in [0u8, 1, 0x45, 0x46, 0xff, f[at] ^ 0x20, f[at].wrapping_add(1)] {
                    let mut g = f.clone();
                    g[at] = x;
                    // As changed, with the IPv4 checksum made right again, and one byte short.
                    let mut fixed = g.clone();
                    let hlen = (fixed[14] & 0x0f) as usize * 4;
                    if fixed.len() >= 14 + hlen.max(20) {
                        fixed[24..26].fill(0);
                        let c = crate::csum::finish(crate::csum::sum(&fixed[14..14 + hlen.max(20)]));
                        fixed[24..26].copy_from_slice(&c.to_be_bytes());
                    }
                    for g in [g.clone(), fixed, g[..g.len() - 1].to_vec()] {
                        let c = dp.classify(IfIdx(3), &g);
                        match dp.lane(IfIdx(3), &g) {
                            Some(l) => {
                                taken += 1;
                                assert_eq!(c.key, Some(FlowKey::Plain(l.words)), "frame {g:02x?}");
                                assert_eq!(c.hash, l.hash);
                                assert!(c.inner.is_none());
                            }
                            None => left += 1,
                        }
                    }
                }
            }
        }
        assert!(taken > 1000 && left > 1000, "taken {taken}, left {left}");
    }
}
