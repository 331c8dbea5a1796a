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

use crate::drop::DropReason;
use crate::flow::Flow;
use crate::iface::IfIdx;
use crate::qos::BucketId;
use crate::sim::SimResult;
use crate::wire::{self, vxlan, Ipv4};

/// Frames to send, staged per interface so that each interface's frames leave with one
/// `sendmmsg()` from where they were written (live mode), and kept in the order sent so that the
/// last input's frames can be read in order (replay, tests). Reused between packets: no
/// allocation once each interface has had its first frames.
#[derive(Debug, Default)]
pub struct TxBuf {
    /// Per interface slot: its frames back to back, and where each lies.
    ports: Vec<PortFrames>,
    /// Every frame staged, in the order sent: its slot and its place in that slot's list.
    order: Vec<(IfIdx, usize)>,
    /// Where the last input's frames begin in `order`.
    mark: usize,
}

/// The frames staged for one interface.
#[derive(Debug, Default)]
struct PortFrames {
    data: Vec<u8>,
    frames: Vec<Range<usize>>,
}

impl TxBuf {
    /// Let go of every staged frame (they were sent, or replay read them).
    pub fn clear(&mut self) {
        for p in &mut self.ports {
            p.data.clear();
            p.frames.clear();
        }
        self.order.clear();
        self.mark = 0;
    }

    /// A new input begins: what is staged stays (to be sent with what follows), and
    /// [`TxBuf::iter`] shows only what is sent from now on.
    pub fn begin(&mut self) {
        self.mark = self.order.len();
    }

    /// Append a frame: `headroom` bytes (at most [`vxlan::ENCAP_LEN`]) for the caller to write,
    /// then a copy of `body`. Returns the headroom and the copy.
    #[inline]
    fn push(&mut self, iface: IfIdx, headroom: usize, body: &[u8]) -> (&mut [u8], &mut [u8]) {
        const ZEROS: [u8; vxlan::ENCAP_LEN] = [0; vxlan::ENCAP_LEN];
        let k = iface.0 as usize;
        if self.ports.len() <= k {
            self.grow(k);
        }
        let Some(p) = self.ports.get_mut(k) else { return (&mut [], &mut []) };
        let start = p.data.len();
        let headroom = headroom.min(ZEROS.len());
        p.data.extend_from_slice(&ZEROS[..headroom]);
        p.data.extend_from_slice(body);
        p.frames.push(start..p.data.len());
        self.order.push((iface, p.frames.len() - 1));
        p.data[start..].split_at_mut(headroom)
    }

    /// Room for interface slot `k` (once per slot: out of the hot path).
    #[cold]
    fn grow(&mut self, k: usize) {
        self.ports.resize_with(k + 1, PortFrames::default);
    }

    /// Append a frame leaving by `iface`, encapsulated by `encap` when it has one.
    fn push_encap(&mut self, iface: IfIdx, encap: Option<&vxlan::EncapTemplate>, body: &[u8]) -> &mut [u8] {
        let room = if encap.is_some() { vxlan::ENCAP_LEN } else { 0 };
        let (outer, inner) = self.push(iface, room, body);
        if let Some(t) = encap {
            t.write(outer, body.len());
        }
        inner
    }

    /// Frames the last input sent.
    pub fn len(&self) -> usize {
        self.order.len() - self.mark
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether anything is staged, from this input or earlier ones.
    pub fn staged(&self) -> bool {
        !self.order.is_empty()
    }

    fn frame(&self, iface: IfIdx, n: usize) -> &[u8] {
        let p = self.ports.get(iface.0 as usize);
        p.and_then(|p| p.data.get(p.frames.get(n)?.clone())).unwrap_or_default()
    }

    /// The last input's frames, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (IfIdx, &[u8])> {
        self.order[self.mark..].iter().map(|&(i, n)| (i, self.frame(i, n)))
    }

    /// The interface of each of the last input's frames, in order.
    pub fn ifaces(&self) -> impl Iterator<Item = IfIdx> + '_ {
        self.order[self.mark..].iter().map(|(i, _)| *i)
    }

    /// Each interface slot with staged frames: its bytes and where each frame lies in them.
    pub fn by_iface(&self) -> impl Iterator<Item = (usize, &[u8], &[Range<usize>])> + '_ {
        self.ports.iter().enumerate().filter(|(_, p)| !p.frames.is_empty()).map(|(k, p)| (k, p.data.as_slice(), p.frames.as_slice()))
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
    /// The headers of that part (IPv4: flows are made for nothing else).
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
        if let Some(ip) = ipv4(&self.headers) {
            apply(&self.flow, body, ip, tx, |_| true);
        }
    }

    /// Which of `workers` applies it: the fixed FNV flow hash of its headers (the VXLAN source-port
    /// hash), so the choice is the same on every machine and a flow always goes to one worker.
    pub fn worker(&self, workers: usize) -> usize {
        vxlan::flow_hash(&self.headers) as usize % workers.max(1)
    }
}

/// Run a flow's actions on a frame (the inner frame, for one that came through a tunnel) whose
/// IPv4 header is `ip`: QoS policing (`conforms` answers for a bucket), the rewrite, the outputs.
#[inline]
pub fn apply(flow: &Flow, body: &[u8], ip: &Ipv4, tx: &mut TxBuf, conforms: impl FnMut(BucketId) -> bool) -> Outcome {
    if let Some(r) = flow.drop {
        return Outcome::Dropped(r);
    }
    police(
        flow.police_in,
        &flow.outputs,
        |o| o.police,
        conforms,
        |out| {
            let inner = tx.push_encap(out.iface, out.encap.as_ref(), body);
            let rewritten = flow.rewrite.apply(inner, ip);
            // A flow applies only to frames that parsed under its key, so its headers are there:
            // the datapath fuzz target and the suites check this in debug builds.
            debug_assert!(rewritten.is_ok(), "a flow's rewrite out of range: {rewritten:?}");
        },
    )
}

/// QoS as a flow and its first packet both meet it: the bucket of the port the packet entered
/// by, then each output's, asked in that order; `send` writes each output that conforms.
/// Dropped as policed when nothing conforms.
#[inline]
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
            tx.push_encap(o.iface, o.encap.as_ref(), &o.frame);
        },
    )
}

/// Send a simulation's own frames as they are, whatever they were for (timers, traces).
pub fn send_frames(res: &SimResult, tx: &mut TxBuf) {
    for o in &res.outputs {
        tx.push_encap(o.iface, o.encap.as_ref(), &o.frame);
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

/// The IPv4 header of a frame a flow acts on; flows are only made for IPv4 (`flow::FlowKey`).
#[inline]
pub fn ipv4(h: &wire::Headers) -> Option<&Ipv4> {
    match &h.l3 {
        wire::L3::Ipv4(ip) => Some(ip),
        _ => None,
    }
}
