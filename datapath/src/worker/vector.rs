//! The vector path (issue 14): a batch of frames parsed, keyed and hashed, their flows'
//! buckets prefetched, then each taken in order by [`Datapath`]'s one door — a hit applied in
//! place in its receive buffer where it can be.

use crate::batch::{RxFrames, BATCH};
use crate::drop::DropReason;
use crate::flow::FlowKey;
use crate::iface::IfIdx;
use crate::wire::{self, vxlan, Frag, L3};

use super::express::Kind;
use super::{Datapath, Src};

/// A frame's headers (or why it does not parse), a VXLAN frame's inner headers, its flow key
/// and the key's hash in this worker's table.
pub(super) struct Classified {
    pub(super) h: Result<wire::Headers, DropReason>,
    pub(super) inner: Option<(std::ops::Range<usize>, wire::Headers, vxlan::Vxlan)>,
    pub(super) key: Option<FlowKey>,
    pub(super) hash: u64,
}

impl Datapath {
    /// Process a batch of frames that arrived on `iface`, each at its time: all of them parsed,
    /// keyed and hashed first, their flows' buckets prefetched, then each taken in order — a hit
    /// applied (in place in its receive buffer when it has one output and room enough), a miss
    /// simulated — so frames keep their order and every frame meets the state the ones before
    /// it left. What they send stays in [`Datapath::tx`] until [`Datapath::sent`]; frames applied
    /// in place are read from `rx` ([`TxBuf::by_iface_in`]), which must not change before then.
    pub fn process_batch(&mut self, iface: IfIdx, rx: &mut impl RxFrames) {
        self.process_frames(iface, rx, 0..rx.count());
    }

    /// [`Datapath::process_batch`] of frames `range` of `rx` (live mode leaves out what it
    /// takes another way: frames this host sent, super-frames it cuts).
    pub fn process_frames(&mut self, iface: IfIdx, rx: &mut impl RxFrames, range: std::ops::Range<usize>) {
        let batching = std::mem::replace(&mut self.batching, true);
        self.batch_marks.clear();
        let mut at = range.start;
        while at < range.end {
            let end = range.end.min(at + BATCH);
            self.process_chunk(iface, rx, at..end);
            at = end;
        }
        self.batch_marks.push(self.tx.staged_count());
        self.batching = batching;
    }

    /// [`Datapath::process_frames`] of at most [`BATCH`] frames: read all, then take each.
    #[inline(always)]
    fn process_chunk(&mut self, iface: IfIdx, rx: &mut impl RxFrames, range: std::ops::Range<usize>) {
        let mut lanes = self.lanes.take().unwrap_or_default();
        let mut classified = std::mem::take(&mut self.classified);
        classified.clear();
        // With the tap armed, every frame takes the general door, where the tap looks at it
        // (`worker/tap.rs`), by a loop of its own: this one stays as it is.
        if let Some(tap) = self.shared.tap().spec() {
            return self.process_tapped(iface, rx, range, &tap);
        }
        // The express lane needs the flow cache, and gives no trace.
        let express = self.cache && !self.trace;
        for (lane, k) in lanes.0.iter_mut().zip(range.clone()) {
            let frame = rx.frame(k);
            if express {
                self.lane(iface, frame, lane);
            } else {
                lane.kind = Kind::Door;
            }
            match lane.kind {
                Kind::Door => {
                    let c = self.classify(iface, frame);
                    if c.key.is_some() {
                        self.flows.prefetch(c.hash);
                    }
                    classified.push(c);
                }
                _ => self.flows.prefetch(lane.hash),
            }
        }
        let n = range.len().min(BATCH);
        let keyed = || lanes.0.iter().take(n).filter(|l| l.kind != Kind::Door).map(|l| l.hash);
        // A table larger than the caches: fetch the slots, then the flows, of the whole batch
        // before taking any, so their waits overlap (VPP's dual-loop prefetch, by stages).
        if express && self.flows.is_deep() {
            keyed().for_each(|h| self.flows.prefetch_slot(h));
            keyed().for_each(|h| self.flows.prefetch_flow(h));
        }
        // The general door's records, in the order of the frames they are for.
        let mut door = classified.iter();
        let mut taken = 0;
        for (lane, k) in lanes.0.iter().zip(range) {
            self.batch_marks.push(self.tx.staged_count());
            let now = rx.time(k);
            let fresh;
            let c = match lane.kind {
                Kind::Door => match door.next() {
                    Some(c) => c,
                    None => continue,
                },
                _ if self.express(rx, k, lane, now) => {
                    taken += 1;
                    continue;
                }
                _ => {
                    fresh = self.classify(iface, rx.frame(k));
                    &fresh
                }
            };
            let (buf, at) = rx.buf_mut(k);
            self.process_classified(iface, Src::Rx { buf, at, k }, c, now, false);
        }
        self.taken(iface, taken);
        self.lanes = Some(lanes);
        self.classified = classified;
    }

    /// What frame `k` of the last batch sent (its timers' frames first), in order; `rx` is the
    /// batch (for [`Datapath::process_frames`], `k` counts from the range's start).
    pub fn batch_sent<'a>(&'a self, k: usize, rx: &'a impl RxFrames) -> impl Iterator<Item = (IfIdx, &'a [u8])> {
        let range = match (self.batch_marks.get(k), self.batch_marks.get(k + 1)) {
            (Some(&a), Some(&b)) => a..b,
            _ => 0..0,
        };
        self.tx.range_in(range, rx)
    }

    /// A frame's headers and key, before its flow is looked up: a batch finds them for all its
    /// frames first, and prefetches their buckets.
    #[inline(always)]
    pub(super) fn classify(&self, iface: IfIdx, frame: &[u8]) -> Classified {
        let h = match wire::parse(frame) {
            Ok(h) => h,
            Err(r) => return Classified { h: Err(r), inner: None, key: None, hash: 0 },
        };
        // A VXLAN frame is matched by its outer and its inner headers; its flow may act on the
        // inner frame (it decapsulates) or on the whole (it is routed as it is).
        let mut inner = None;
        let mut keyable = true;
        if let (L3::Ipv4(ip), Some((v, off))) = (&h.l3, vxlan::view(frame, &h)) {
            if ip.frag == Frag::Whole {
                match frame.get(off..ip.end()).map(wire::parse) {
                    Some(Ok(ih)) => inner = Some((off..ip.end(), ih, v)),
                    // The simulation reads the VNI and the inner frame, which no key holds
                    // (found by the datapath fuzz target): simulate every such frame.
                    _ => keyable = false,
                }
            }
        }
        let key = match &inner {
            _ if !keyable => None,
            Some((_, ih, v)) => FlowKey::vxlan(iface, &h, *v, ih),
            None => FlowKey::of(iface, &h),
        };
        let hash = key.as_ref().map_or(0, |k| self.flows.hash(k));
        Classified { h: Ok(h), inner, key, hash }
    }
}
