//! Flow install: a cacheable simulation result becomes a [`Flow`] (SPEC §9).
//!
//! The simulation's outputs are compared with the packet it was given: if every output is the
//! packet with one and the same [`Rewrite`] (MACs, addresses, ports, TOS, TTL; for IPv6 MACs,
//! traffic class, hop limit), the flow is that
//! rewrite and the list of outputs, each with its interface, policing bucket and VXLAN template.
//! A frame that came through a tunnel is tried first as a decapsulating flow (the rewrite acts on
//! the inner frame), then as a flow on the whole frame. What the flow depends on — the NAT and
//! firewall connections it passed by, the tables where the simulation found none, the learned
//! entry of its source MAC — is taken from the tables the simulation ran on, each locked in turn.
//!
//! In debug builds every new flow is applied to its first packet and must give the
//! simulation's own bytes: the cache is exact by check, not by construction.

use std::ops::Range;

use crate::fastpath::{self, TxBuf};
use crate::flow::{Flow, FlowOut, FlowState, Outputs, Rewrite};
use crate::iface::IfIdx;
use crate::sim::SimResult;
use crate::state::Tables;
use crate::time::Instant;
use crate::wire::{self, Headers};

/// A flow made from a simulation, and the part of the frame it acts on.
pub struct Installed {
    pub flow: Flow,
    pub body: Range<usize>,
    pub headers: Headers,
}

/// A packet the slow path is given: where and when it arrived, and what it is.
pub struct Packet<'a> {
    pub iface: IfIdx,
    pub frame: &'a [u8],
    pub headers: &'a Headers,
    /// The inner frame of a VXLAN frame, and its headers.
    pub inner: Option<(Range<usize>, &'a Headers)>,
    pub now: Instant,
}

/// The flow of a cacheable `res` for packet `p`, made at `epoch`. `None` when the outputs share
/// no rewrite.
pub fn install(res: &SimResult, state: &Tables, epoch: u32, p: &Packet) -> Option<Installed> {
    let (frame, h, inner) = (p.frame, p.headers, p.inner.clone());
    let decap = inner.and_then(|(r, ih)| {
        let body = frame.get(r.clone())?;
        let flow = make(res, state, epoch, true, body, ih)?;
        Some(Installed { flow, body: r, headers: *ih })
    });
    let made = decap.or_else(|| Some(Installed { flow: make(res, state, epoch, false, frame, h)?, body: 0..frame.len(), headers: *h }))?;
    debug_assert!(reproduces(&made, frame, res), "a new flow must send what its simulation sent: {:?}", made.flow);
    Some(made)
}

fn make(res: &SimResult, state: &Tables, epoch: u32, decap: bool, body: &[u8], bh: &Headers) -> Option<Flow> {
    let mut rewrite = None;
    let mut outputs = Vec::with_capacity(res.outputs.len());
    for o in &res.outputs {
        let oh = wire::parse(&o.frame).ok()?;
        let r = Rewrite::derive(body, bh, &o.frame, &oh)?;
        if rewrite.is_some_and(|prev| prev != r) {
            return None;
        }
        rewrite = Some(r);
        let (encap, sport) = match &o.encap {
            Some(t) => {
                let (shared, sport) = state.encaps().share(t);
                (Some(shared), sport)
            }
            None => (None, 0),
        };
        outputs.push(FlowOut { iface: o.iface, sport, police: o.police, encap });
    }
    // Flows are made for IPv4 and IPv6 (their keys, `flow.rs`).
    if !matches!(bh.l3, wire::L3::Ipv4(_) | wire::L3::Ipv6(_)) {
        return None;
    }
    let drop = outputs.is_empty().then(|| res.drop_reason());
    if decap && outputs.is_empty() {
        // A drop is recorded against the whole frame.
        return None;
    }
    let conn = match res.conn {
        Some(h) => Some(state.ct().conn_ref(h)?),
        None => None,
    };
    let fw_conn = match res.fw_conn {
        Some((r, h)) => Some(state.fw().get(&r)?.conn_ref(h)?),
        None => None,
    };
    let fw_absent = match res.fw_absent {
        // The simulation saw generation `g` of the table it looked in.
        Some((r, g)) => Some(state.fw().get(&r)?.watch_from(g)),
        None => None,
    };
    let rare = FlowState {
        ct_absent: res.ct_absent.map(|g| state.ct().watch_from(g)),
        fw_conn,
        fw_absent,
        binding: res.binding.clone(),
        fw_log: res.fw_log_each_packet,
    };
    Some(Flow {
        decap,
        police_in: res.police_in,
        rewrite: rewrite.unwrap_or_default(),
        outputs: Outputs::of(outputs),
        drop,
        epoch,
        conn,
        state: rare.boxed(),
        learned: crate::learn::LearnedDeps::of(&res.learned),
        mac_seen: res.mac_seen.clone(),
        hits: Default::default(),
    })
}

/// Whether applying the flow to its first packet gives the simulation's frames, byte for byte.
fn reproduces(made: &Installed, frame: &[u8], res: &SimResult) -> bool {
    let (mut by_flow, mut by_sim) = (TxBuf::default(), TxBuf::default());
    let body = frame.get(made.body.clone()).unwrap_or_default();
    fastpath::apply(&made.flow, body, &made.headers, &mut by_flow, |_| true);
    fastpath::send_simulated(res, &mut by_sim, false, |_| true);
    by_flow.iter().eq(by_sim.iter())
}
