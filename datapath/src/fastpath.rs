//! The fast path's half of a packet: a cached flow's actions applied to a frame, and the
//! transmit buffer both paths write their frames to.
//!
//! [`apply`] is the whole of a hit once the flow is found fresh: QoS policing, the precomputed
//! rewrite (stores and incremental checksum updates), the outputs with their VXLAN templates. A
//! miss sends the simulation's own frames ([`send_simulated`]), policed the way its flow would
//! police them, so a flow and the simulation it came from send the same bytes (checked at
//! install, `install.rs`).

use std::ops::Range;
use std::sync::Arc;

use crate::batch::{NoRx, RxFrames};
use crate::drop::DropReason;
use crate::flow::{Flow, FlowOut};
use crate::iface::IfIdx;
use crate::qos::BucketId;
use crate::sim::SimResult;
use crate::wire::{self, vxlan};

/// The most a frame is given in front of its copy: a VXLAN header and a translated IPv6
/// header's 20 extra bytes.
const MAX_HEADROOM: usize = vxlan::ENCAP_LEN + 20;

/// Frames to send, kept in the order sent, each with the interface it leaves by: written back to
/// back into one buffer, or — a hit applied in place ([`apply_in_place`]) — left where it was
/// received, in a batch's buffer ([`RxFrames`]), and named by its place there. Live mode keeps a
/// batch's frames here and sends each interface's with one `sendmmsg()` straight from where
/// they lie ([`TxBuf::by_iface_in`]); replay and tests read the last input's frames in order
/// ([`TxBuf::iter`], [`TxBuf::iter_in`]). Reused between packets: no allocation once it has held
/// its largest batch.
#[derive(Debug, Default)]
pub struct TxBuf {
    data: Vec<u8>,
    /// Every frame staged, in the order sent.
    frames: Vec<Staged>,
    /// Where the last input's frames begin in `frames`.
    mark: usize,
}

/// An outer header to write before a frame: a simulation's own, or a flow output's.
#[derive(Clone, Copy)]
enum Encap<'a> {
    Sim(&'a vxlan::EncapTemplate),
    Flow(&'a crate::flow::FlowOut),
}

/// One staged frame: where it lies, and its interface.
#[derive(Debug, Clone)]
struct Staged {
    iface: IfIdx,
    at: Place,
}

#[derive(Debug, Clone)]
enum Place {
    /// In [`TxBuf::data`].
    Own(Range<usize>),
    /// In the buffer of frame `k` of the batch being processed ([`RxFrames::buf`]).
    Rx { k: usize, at: Range<usize> },
}

impl TxBuf {
    /// Let go of every staged frame (they were sent, or replay read them).
    pub fn clear(&mut self) {
        self.data.clear();
        self.frames.clear();
        self.mark = 0;
    }

    /// A new input begins: what is staged stays (to be sent with what follows), and
    /// [`TxBuf::iter`] shows only what is sent from now on.
    pub fn begin(&mut self) {
        self.mark = self.frames.len();
    }

    /// Append a frame: `headroom` bytes (at most [`MAX_HEADROOM`]) for the caller to write,
    /// then a copy of `body`. Returns the whole frame.
    #[inline]
    fn push(&mut self, iface: IfIdx, headroom: usize, body: &[u8]) -> &mut [u8] {
        const ZEROS: [u8; MAX_HEADROOM] = [0; MAX_HEADROOM];
        let start = self.data.len();
        let headroom = headroom.min(ZEROS.len());
        self.data.extend_from_slice(&ZEROS[..headroom]);
        self.data.extend_from_slice(body);
        self.frames.push(Staged { iface, at: Place::Own(start..self.data.len()) });
        &mut self.data[start..]
    }

    /// Stage bytes `at` of batch frame `k`'s buffer, written there in place, leaving by `iface`.
    #[inline]
    fn stage_rx(&mut self, iface: IfIdx, k: usize, at: Range<usize>) {
        self.frames.push(Staged { iface, at: Place::Rx { k, at } });
    }

    /// Every staged frame's interface and length (what it sends, counted once a batch).
    pub fn lens(&self) -> impl Iterator<Item = (IfIdx, usize)> + '_ {
        self.frames.iter().map(|s| match &s.at {
            Place::Own(at) | Place::Rx { at, .. } => (s.iface, at.len()),
        })
    }

    /// Frames staged so far, of every input (where the next input's begin).
    pub fn staged_count(&self) -> usize {
        self.frames.len()
    }

    /// Append a frame leaving by `iface`, encapsulated by `encap` when it has one, with `grow`
    /// bytes of room before `body` for a header that becomes longer. Returns the inner frame.
    fn push_encap(&mut self, iface: IfIdx, encap: Option<Encap>, body: &[u8], grow: usize) -> &mut [u8] {
        let room = if encap.is_some() { vxlan::ENCAP_LEN } else { 0 };
        let (outer, inner) = self.push(iface, room + grow, body).split_at_mut(room);
        match encap {
            Some(Encap::Sim(t)) => t.write(outer, inner.len()),
            Some(Encap::Flow(o)) => o.write_encap(outer, inner.len()),
            None => {}
        }
        inner
    }

    /// Frames the last input sent.
    pub fn len(&self) -> usize {
        self.frames.len() - self.mark
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether anything is staged, from this input or earlier ones.
    pub fn staged(&self) -> bool {
        !self.frames.is_empty()
    }

    fn bytes<'a>(&'a self, s: &Staged, rx: &'a impl RxFrames) -> &'a [u8] {
        match &s.at {
            Place::Own(at) => self.data.get(at.clone()).unwrap_or_default(),
            Place::Rx { k, at } => rx.buf(*k).get(at.clone()).unwrap_or_default(),
        }
    }

    /// The last input's frames, in the order sent, when none was applied in place (a single
    /// frame's input: [`crate::Datapath::process`]).
    pub fn iter(&self) -> impl Iterator<Item = (IfIdx, &[u8])> {
        self.iter_in(&NoRx)
    }

    /// The last input's frames, in the order sent; those applied in place lie in `rx`, the batch
    /// they were received in.
    pub fn iter_in<'a>(&'a self, rx: &'a impl RxFrames) -> impl Iterator<Item = (IfIdx, &'a [u8])> {
        self.range_in(self.mark..self.frames.len(), rx)
    }

    /// Staged frames `range` (by [`TxBuf::staged_count`] before and after an input), in order.
    pub fn range_in<'a>(&'a self, range: Range<usize>, rx: &'a impl RxFrames) -> impl Iterator<Item = (IfIdx, &'a [u8])> {
        self.frames.get(range).unwrap_or_default().iter().map(move |s| (s.iface, self.bytes(s, rx)))
    }

    /// The interface of each of the last input's frames, in order.
    pub fn ifaces(&self) -> impl Iterator<Item = IfIdx> + '_ {
        self.frames[self.mark..].iter().map(|s| s.iface)
    }

    /// Every staged frame grouped by interface: each interface once (in the order of its first
    /// frame), with its frames in the order sent; those applied in place lie in `rx`. Grouping
    /// costs a scan per batch, not per packet.
    pub fn by_iface_in<'a, R: RxFrames>(&'a self, rx: &'a R) -> impl Iterator<Item = (IfIdx, impl Iterator<Item = &'a [u8]> + Clone)> {
        self.frames.iter().enumerate().filter(|(n, s)| !self.frames[..*n].iter().any(|e| e.iface == s.iface)).map(move |(n, s)| {
            let iface = s.iface;
            (iface, self.frames[n..].iter().filter(move |e| e.iface == iface).map(move |e| self.bytes(e, rx)))
        })
    }

    /// [`TxBuf::by_iface_in`] when nothing was applied in place.
    pub fn by_iface(&self) -> impl Iterator<Item = (IfIdx, impl Iterator<Item = &[u8]> + Clone)> {
        self.by_iface_in(&NoRx)
    }
}

/// How one input ended (SPEC §4): every input is exactly one of forwarded, handled or dropped.
/// One that waits for ARP is counted when it leaves or is dropped; a deferred one is counted by
/// its flow and applied later, by a worker.
#[derive(Debug)]
pub enum Outcome {
    /// It left on at least one interface.
    Forwarded,
    /// The datapath consumed it: ARP answered or learned, an echo request answered.
    Handled,
    /// It waits for an ARP answer.
    Waiting,
    Dropped(DropReason),
    /// It takes a pure cached flow (see [`crate::Datapath::process_or_defer`]): counted as its
    /// flow says; [`crate::Datapath::tx`] holds what its timers sent, and the job's frames follow
    /// them.
    Deferred(PureJob),
}

/// A cached pure flow's packet, to be applied by any worker.
#[derive(Debug, Clone)]
pub struct PureJob {
    pub flow: Arc<Flow>,
    /// The part of the frame the flow acts on (the inner frame of a decapsulating flow).
    pub body: Range<usize>,
    /// The headers of that part (IPv4 or IPv6: flows are made for nothing else).
    pub headers: wire::Headers,
}

impl PureJob {
    /// How its input ended: forwarded, or dropped as its flow says (counted when deferred).
    pub fn outcome(&self) -> Outcome {
        match self.flow.drop {
            Some(r) => Outcome::Dropped(r),
            None => Outcome::Forwarded,
        }
    }

    /// Write the flow's frames for `frame` (the input as given to `process_or_defer`) to `tx`.
    pub fn apply(&self, frame: &[u8], tx: &mut TxBuf) {
        let body = frame.get(self.body.clone()).unwrap_or_default();
        apply(&self.flow, body, &self.headers, tx, |_| true);
    }

    /// Which of `workers` applies it: the fixed FNV flow hash of its headers (the VXLAN source-port
    /// hash), so the choice is the same on every machine and a flow always goes to one worker.
    pub fn worker(&self, workers: usize) -> usize {
        vxlan::flow_hash(&self.headers) as usize % workers.max(1)
    }
}

/// Run a flow's actions on a frame (the inner frame, for one that came through a tunnel) whose
/// headers are `h`: QoS policing (`conforms` answers for a bucket), the rewrite, the outputs.
#[inline]
pub fn apply(flow: &Flow, body: &[u8], h: &wire::Headers, tx: &mut TxBuf, conforms: impl FnMut(BucketId) -> bool) -> Outcome {
    if let Some(r) = flow.drop {
        return Outcome::Dropped(r);
    }
    police(
        flow.police_in,
        &flow.outputs,
        |o| o.police,
        conforms,
        |out| {
            let (copy, grow) = flow.rewrite.copy(h, body.len());
            let inner = tx.push_encap(out.iface, out.encap.is_some().then_some(Encap::Flow(out)), body.get(copy).unwrap_or_default(), grow);
            let rewritten = flow.rewrite.apply(inner, h);
            // A flow applies only to frames that parsed under its key, so its headers are there:
            // the datapath fuzz target and the suites check this in debug builds.
            debug_assert!(rewritten.is_ok(), "a flow's rewrite out of range: {rewritten:?}");
        },
    )
}

/// [`apply`], in place: batch frame `k`, whose part the flow acts on lies at `body` in `buf` (its
/// receive buffer), is rewritten where it lies — its longer headers, if any, written into the
/// headroom before it — and staged from there. `None` when the flow sends more than one copy, or
/// drops, or the frame has less room in front than the flow's headers need: the caller copies.
#[inline]
pub fn apply_in_place(
    flow: &Flow,
    buf: &mut [u8],
    body: Range<usize>,
    h: &wire::Headers,
    tx: &mut TxBuf,
    k: usize,
    conforms: impl FnMut(BucketId) -> bool,
) -> Option<Outcome> {
    let (copy, grow) = flow.rewrite.copy(h, body.len());
    let at = InPlace::plan(flow, body, copy, grow)?;
    Some(at.apply(flow, buf, tx, k, conforms, |inner| flow.rewrite.apply(inner, h)))
}

/// Where a flow's one output is written in a frame's receive buffer (see [`apply_in_place`]):
/// planned before anything is touched, so a caller that finds it does not fit can still take
/// another way.
#[derive(Debug, Clone, Copy)]
pub struct InPlace<'a> {
    /// The flow's one output.
    out: &'a FlowOut,
    first: usize,
    end: usize,
    /// The outer headers' room before the (rewritten) frame.
    room: usize,
}

impl<'a> InPlace<'a> {
    /// The plan for a flow whose part of the frame lies at `body` in its buffer, of which it
    /// copies `copy` (relative to `body`) with `grow` bytes more in front. `None` when the flow
    /// does not send exactly one copy, or drops, or there is not room enough in front.
    #[inline(always)]
    pub fn plan(flow: &'a Flow, body: Range<usize>, copy: Range<usize>, grow: usize) -> Option<InPlace<'a>> {
        let crate::flow::Outputs::One(out) = &flow.outputs else { return None };
        if flow.drop.is_some() {
            return None;
        }
        let room = if out.encap.is_some() { vxlan::ENCAP_LEN } else { 0 };
        let end = body.start.checked_add(copy.end).filter(|&e| e <= body.end && copy.start <= copy.end)?;
        let first = (body.start + copy.start).checked_sub(room + grow)?;
        Some(InPlace { out, first, end, room })
    }

    /// Police as [`apply`] does and write the flow's one output where planned: its outer headers,
    /// then `rewrite` of the frame behind them; staged from `buf`, batch frame `k`'s buffer.
    #[inline(always)]
    pub fn apply(
        self,
        flow: &Flow,
        buf: &mut [u8],
        tx: &mut TxBuf,
        k: usize,
        conforms: impl FnMut(BucketId) -> bool,
        rewrite: impl FnOnce(&mut [u8]) -> Result<(), wire::ipv4::OutOfRange>,
    ) -> Outcome {
        if !self.conforms(flow, conforms) {
            return Outcome::Dropped(DropReason::QosPoliced);
        }
        if let Some(inner) = self.frame(buf) {
            let rewritten = rewrite(inner);
            debug_assert!(rewritten.is_ok(), "a flow's rewrite out of range: {rewritten:?}");
            self.stage(tx, k);
        }
        Outcome::Forwarded
    }

    /// `police` of one output: whether the packet conforms to the bucket of the port it came
    /// from, then to its output's (asked in that order; the second not when the first refuses).
    #[inline(always)]
    pub fn conforms(&self, flow: &Flow, mut conforms: impl FnMut(BucketId) -> bool) -> bool {
        flow.police_in.is_none_or(&mut conforms) && self.out.police.is_none_or(conforms)
    }

    /// The frame in `buf` with its outer headers written, the part behind them for the caller
    /// to rewrite; `None` when `buf` is not the buffer planned for.
    #[inline(always)]
    pub fn frame<'b>(&self, buf: &'b mut [u8]) -> Option<&'b mut [u8]> {
        let (outer, inner) = buf.get_mut(self.first..self.end)?.split_at_mut(self.room);
        self.out.write_encap(outer, inner.len());
        Some(inner)
    }

    /// Stage the frame, written, from batch frame `k`'s buffer.
    #[inline(always)]
    pub fn stage(&self, tx: &mut TxBuf, k: usize) {
        tx.stage_rx(self.out.iface, k, self.first..self.end);
    }
}

/// QoS as a flow and its first packet both meet it: the bucket of the port the packet entered
/// by, then each output's, asked in that order; `send` writes each output that conforms.
/// Dropped as policed when nothing conforms.
#[inline(always)]
fn police<O>(
    police_in: Option<BucketId>,
    outputs: &[O],
    bucket: impl Fn(&O) -> Option<BucketId>,
    mut conforms: impl FnMut(BucketId) -> bool,
    mut send: impl FnMut(&O),
) -> Outcome {
    if police_in.is_some_and(|b| !conforms(b)) {
        return Outcome::Dropped(DropReason::QosPoliced);
    }
    let mut sent = false;
    for o in outputs {
        if bucket(o).is_some_and(|b| !conforms(b)) {
            continue;
        }
        sent = true;
        send(o);
    }
    if sent {
        Outcome::Forwarded
    } else {
        Outcome::Dropped(DropReason::QosPoliced)
    }
}

/// Send a simulation's own frames. `policed` when the result became a flow: then they are
/// policed as the flow polices (the same buckets asked in the same order, so the first packet
/// and the later ones meet the same QoS), and the outcome is the one [`apply`] gives.
pub fn send_simulated(res: &SimResult, tx: &mut TxBuf, policed: bool, conforms: impl FnMut(BucketId) -> bool) -> Outcome {
    if !policed {
        send_frames(res, tx);
        return outcome_of(res);
    }
    if res.outputs.is_empty() {
        return outcome_of(res);
    }
    police(
        res.police_in,
        &res.outputs,
        |o| o.police,
        conforms,
        |o| {
            tx.push_encap(o.iface, o.encap.as_ref().map(Encap::Sim), &o.frame, 0);
        },
    )
}

/// Send a simulation's own frames as they are, whatever they were for (timers, traces).
pub fn send_frames(res: &SimResult, tx: &mut TxBuf) {
    for o in &res.outputs {
        tx.push_encap(o.iface, o.encap.as_ref().map(Encap::Sim), &o.frame, 0);
    }
}

/// The outcome of a simulation, from what it did.
pub fn outcome_of(res: &SimResult) -> Outcome {
    if res.queued {
        Outcome::Waiting
    } else if res.own_outputs > 0 {
        Outcome::Forwarded
    } else if res.handled {
        Outcome::Handled
    } else {
        Outcome::Dropped(res.drop_reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_frames_group_by_interface_in_order() {
        let mut tx = TxBuf::default();
        tx.push_encap(IfIdx(2), None, b"a", 0);
        tx.begin();
        tx.push_encap(IfIdx(1), None, b"b", 0);
        tx.push_encap(IfIdx(2), None, b"c", 0);
        let last: Vec<_> = tx.iter().collect();
        assert_eq!(last, [(IfIdx(1), &b"b"[..]), (IfIdx(2), &b"c"[..])], "iter shows the last input's frames");
        let groups: Vec<(IfIdx, Vec<&[u8]>)> = tx.by_iface().map(|(i, f)| (i, f.collect())).collect();
        assert_eq!(groups, [(IfIdx(2), vec![&b"a"[..], b"c"]), (IfIdx(1), vec![&b"b"[..]])], "each interface once, all its frames");
        tx.clear();
        assert!(!tx.staged() && tx.by_iface().next().is_none());
    }
}
