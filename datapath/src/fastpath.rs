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

/// Frames sent for one input, in order; reused between packets.
#[derive(Debug, Default)]
pub struct TxBuf {
    data: Vec<u8>,
    frames: Vec<(IfIdx, Range<usize>)>,
}

impl TxBuf {
    pub fn clear(&mut self) {
        self.data.clear();
        self.frames.clear();
    }

    /// Append a frame: `headroom` bytes (at most [`vxlan::ENCAP_LEN`]) for the caller to write,
    /// then a copy of `body`. Returns the headroom and the copy.
    #[inline]
    fn push(&mut self, iface: IfIdx, headroom: usize, body: &[u8]) -> (&mut [u8], &mut [u8]) {
        const ZEROS: [u8; vxlan::ENCAP_LEN] = [0; vxlan::ENCAP_LEN];
        let start = self.data.len();
        let headroom = headroom.min(ZEROS.len());
        self.data.extend_from_slice(&ZEROS[..headroom]);
        self.data.extend_from_slice(body);
        self.frames.push((iface, start..self.data.len()));
        self.data[start..].split_at_mut(headroom)
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

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (IfIdx, &[u8])> {
        self.frames.iter().map(|(i, r)| (*i, &self.data[r.clone()]))
    }

    /// The interface of every frame, in order.
    pub fn ifaces(&self) -> impl Iterator<Item = IfIdx> + '_ {
        self.frames.iter().map(|(i, _)| *i)
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
pub fn apply(flow: &Flow, body: &[u8], ip: &Ipv4, tx: &mut TxBuf, mut conforms: impl FnMut(BucketId) -> bool) -> Outcome {
    if let Some(r) = flow.drop {
        return Outcome::Dropped(r);
    }
    if flow.police_in.is_some_and(|b| !conforms(b)) {
        return Outcome::Dropped(DropReason::QosPoliced);
    }
    let mut sent = false;
    for out in &flow.outputs {
        if out.police.is_some_and(|b| !conforms(b)) {
            continue;
        }
        sent = true;
        let inner = tx.push_encap(out.iface, out.encap.as_ref(), body);
        flow.rewrite.apply(inner, ip);
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
pub fn send_simulated(res: &SimResult, tx: &mut TxBuf, policed: bool, mut conforms: impl FnMut(BucketId) -> bool) -> Outcome {
    if !policed {
        for o in &res.outputs {
            tx.push_encap(o.iface, o.encap.as_ref(), &o.frame);
        }
        return outcome_of(res);
    }
    if res.outputs.is_empty() {
        return outcome_of(res);
    }
    if res.police_in.is_some_and(|b| !conforms(b)) {
        return Outcome::Dropped(DropReason::QosPoliced);
    }
    let mut sent = false;
    for o in &res.outputs {
        if o.police.is_some_and(|b| !conforms(b)) {
            continue;
        }
        sent = true;
        tx.push_encap(o.iface, o.encap.as_ref(), &o.frame);
    }
    if sent {
        Outcome::Forwarded
    } else {
        Outcome::Dropped(DropReason::QosPoliced)
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
        Outcome::Dropped(res.drop.unwrap_or(DropReason::NoDestination))
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
