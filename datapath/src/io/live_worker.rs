//! The live worker loop (SPEC §2, §9): one thread per worker, run to completion. It polls its
//! sockets — one per interface, in that interface's fanout group — reads what arrived in batches
//! of up to 64 frames (in place from a `TPACKET_V3` ring, or by `recvmmsg()` into buffers with
//! headroom), cuts TCP super-frames, completes pending checksums, hands each batch to the vector
//! path with the clock read once per poll ([`Datapath::process_frames`]: hits rewritten where
//! they were received), and sends each interface's frames with one `sendmmsg()` from where they
//! lie. Between batches it answers the supervisor ([`Ask`]): counters, flows, a socket to take
//! or to close.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::bind::RING_BLOCKS;
use super::rawsock::{PollSet, RawSocket, Received, Waker};
use super::ring::RxRing;
use super::summary::WorkerLoad;
use super::xsk::Xsk;
use crate::batch::{RxBatch, RxFrames};
use crate::iface::IfIdx;
use crate::time::Instant;
use crate::{Datapath, Stats};

/// Frames per `recvmmsg()` and per batch.
pub use crate::batch::BATCH;
/// Bytes per receive buffer: a whole TCP super-frame (64 KiB of IP and its Ethernet header).
const BUF: usize = 65536 + 64;
/// How often idle threads look at the stop flag and at questions.
pub(super) const TICK: Duration = Duration::from_millis(100);

/// A question for a worker, answered between batches.
pub(super) enum Ask {
    /// Its counters, cached flows and packet rate.
    Load(Sender<(Stats, WorkerLoad)>),
    /// Its flows, one per line.
    Flows(Sender<Vec<crate::report::FlowRecord>>),
    /// Take this socket for the interface in this slot (answered once it is polled).
    Bind(IfIdx, Box<Port>, Sender<()>),
    /// Close the socket of this slot (answered once it is closed).
    Unbind(IfIdx, Sender<()>),
}

/// A worker's socket on one interface.
pub struct Port {
    pub(super) sock: RawSocket,
    pub(super) ring: Option<RxRing>,
    /// An AF_XDP socket on this worker's queue (`run --io xdp`): frames arrive there, and leave
    /// by it.
    pub(super) xsk: Option<Xsk>,
    pub(super) mtu: usize,
}

/// Packets per second received by one worker, over about the last second.
#[derive(Default)]
struct Rate {
    at: Instant,
    rx: u64,
    pps: f64,
}

impl Rate {
    fn update(&mut self, now: Instant, rx: u64) {
        let dt = now.since(self.at);
        if dt >= Duration::from_secs(1) {
            self.pps = if self.at.0 == 0 { 0.0 } else { (rx - self.rx) as f64 / dt.as_secs_f64() };
            self.at = now;
            self.rx = rx;
        }
    }
}

/// One worker: poll its sockets, process what arrives in batches, send per interface, and
/// answer questions — and take or close sockets as interfaces come and go — between batches,
/// until `stop`. Returns the worker and how many batches it read.
pub(super) fn worker(mut dp: Datapath, asks: Receiver<Ask>, waker: &Waker, stop: Arc<AtomicBool>) -> (Datapath, u64) {
    let mut batches = 0u64;
    // ports[slot]: this worker's socket on the interface in that slot, if it is bound.
    let mut ports: Vec<Option<Box<Port>>> = Vec::new();
    let mut gso = Gso::default();
    let mut batch = RxBatch::new(BUF);
    let mut meta = Vec::with_capacity(BATCH);
    // The poll set and, for each of its entries, the slot it is for.
    let mut order: Vec<usize> = Vec::new();
    let mut poll = PollSet::new([], Some(waker));
    let mut rate = Rate::default();
    // A batch's frames stay where the datapath wrote them until one sendmmsg() per interface.
    dp.set_batching(true);
    while !stop.load(Ordering::Relaxed) {
        let mut rebuilt = false;
        waker.clear();
        while let Ok(ask) = asks.try_recv() {
            match ask {
                Ask::Load(reply) => {
                    let s = dp.stats();
                    let load = WorkerLoad { rx: s.rx, tx: s.tx, flows: dp.flow_count(), batches, pps: Some(rate.pps) };
                    let _ = reply.send((s.clone(), load));
                }
                Ask::Flows(reply) => {
                    let _ = reply.send(dp.flows_report());
                }
                Ask::Bind(slot, port, done) => {
                    let k = slot.0 as usize;
                    if ports.len() <= k {
                        ports.resize_with(k + 1, || None);
                    }
                    ports[k] = Some(port);
                    rebuilt = true;
                    let _ = done.send(());
                }
                Ask::Unbind(slot, done) => {
                    if let Some(p) = ports.get_mut(slot.0 as usize) {
                        *p = None;
                    }
                    rebuilt = true;
                    let _ = done.send(());
                }
            }
        }
        if rebuilt {
            order = ports.iter().enumerate().filter(|(_, p)| p.is_some()).map(|(k, _)| k).collect();
            // An interface's frames arrive on its AF_XDP socket when it has one.
            let fds = ports.iter().flatten().map(|p| p.xsk.as_ref().map_or_else(|| p.sock.raw_fd(), Xsk::fd));
            poll = PollSet::of_fds(fds, Some(waker));
        }
        if let Err(e) = poll.wait(TICK) {
            tracing::error!(error = %e, "poll failed");
            break;
        }
        dp.refresh();
        let at = Instant::wall();
        rate.update(at, dp.stats().rx);
        // ARP retries and give-ups are due whether packets arrive or not.
        dp.tick(at);
        if dp.tx().staged() {
            flush(&mut dp, &mut ports, None, &crate::batch::NoRx);
        }
        for (e, &k) in order.iter().enumerate() {
            let i = IfIdx(k as u16);
            // Taken out while its frames are read, so that what they send can be flushed to
            // every port, this one included.
            let Some(mut port) = ports.get_mut(k).and_then(Option::take) else { continue };
            let Port { sock, ring, xsk, mtu } = &mut *port;
            if poll.failed(e) {
                if let Some(err) = sock.take_error() {
                    tracing::warn!(interface = %dp.interfaces().get(i).name, error = %err, "interface error");
                }
            }
            if poll.ready(e) {
                let mtu = *mtu;
                if let Some(x) = xsk.as_mut() {
                    // In place in the umem; sent before the chunks go back to the kernel.
                    let read = x.read(at, |rx| {
                        let meta: [Received; BATCH] = std::array::from_fn(|k| rx.received(k));
                        take(&mut dp, &mut gso, i, mtu, rx, &meta);
                        flush(&mut dp, &mut ports, Some((k, sock)), &*rx);
                    });
                    batches += (read > 0) as u64;
                } else if let Some(ring) = ring.as_mut() {
                    // A block's frames in batches, in place in the ring; each batch's frames are
                    // sent before its block goes back.
                    let read = ring.read(RING_BLOCKS, at, |rx| {
                        let meta: [Received; BATCH] = std::array::from_fn(|k| rx.received(k));
                        take(&mut dp, &mut gso, i, mtu, rx, &meta);
                        flush(&mut dp, &mut ports, Some((k, sock)), &*rx);
                    });
                    batches += (read > 0) as u64;
                } else {
                    let got = {
                        let mut bufs = batch.rx_bufs();
                        let mut slots: [&mut [u8]; BATCH] = std::array::from_fn(|_| bufs.next().unwrap_or_default());
                        sock.recv_many(&mut slots, &mut meta, false)
                    };
                    match got {
                        Ok(n) => {
                            batches += (n > 0) as u64;
                            batch.set_lens(meta.iter().map(|r| r.len), at);
                            take(&mut dp, &mut gso, i, mtu, &mut batch, &meta);
                            flush(&mut dp, &mut ports, Some((k, sock)), &batch);
                        }
                        Err(e) => tracing::error!(interface = %dp.interfaces().get(i).name, error = %e, "receive failed"),
                    }
                }
            }
            if let Some(p) = ports.get_mut(k) {
                *p = Some(port);
            }
        }
    }
    (dp, batches)
}

/// Where a worker cuts TCP super-frames ([`crate::wire::gso`]); reused.
#[derive(Default)]
struct Gso {
    data: Vec<u8>,
    segs: Vec<std::ops::Range<usize>>,
}

/// A batch that arrived on `i`, whose MTU is `mtu` (`meta`: what the kernel said of each
/// frame): frames this host sent are left out, a TCP super-frame is cut into segments and those
/// processed one by one in its place, a pending checksum is completed where the frame lies, and
/// the rest go through the vector path in order. What they send stays staged in the datapath's
/// transmit buffer — or, applied in place, in `rx` — until [`flush`].
fn take(dp: &mut Datapath, gso: &mut Gso, i: IfIdx, mtu: usize, rx: &mut impl RxFrames, meta: &[Received]) {
    let mut from = 0;
    let mut bytes = 0;
    for (k, r) in meta.iter().enumerate().take(rx.count()) {
        let len = rx.frame(k).len();
        bytes += if r.outgoing { 0 } else { len as u64 };
        let super_frame = len > crate::wire::ETH_LEN + mtu;
        if r.outgoing || super_frame {
            dp.process_frames(i, rx, from..k);
            from = k + 1;
            if !r.outgoing {
                cut(dp, gso, i, mtu, rx.frame(k), rx.time(k));
            }
            continue;
        }
        if r.csum_pending {
            let (buf, at) = rx.buf_mut(k);
            crate::wire::complete_pending_checksum(buf.get_mut(at..).unwrap_or_default());
        }
    }
    dp.process_frames(i, rx, from..rx.count());
    dp.count_rx_bytes(i, bytes);
}

/// A TCP super-frame, cut into segments of `mtu` and each processed; one that cannot be cut is
/// processed whole (and dropped as too long where it must leave).
fn cut(dp: &mut Datapath, gso: &mut Gso, i: IfIdx, mtu: usize, frame: &[u8], at: Instant) {
    gso.data.clear();
    gso.segs.clear();
    if crate::wire::gso::segment_tcp(frame, mtu, &mut gso.data, &mut gso.segs) {
        dp.count_gso_cut();
        for r in &gso.segs {
            let seg = gso.data.get(r.clone()).unwrap_or_default();
            dp.process(i, seg, at);
        }
        return;
    }
    dp.process(i, frame, at);
}

/// An interface's MTU (`/sys/class/net/NAME/mtu`), 1500 when it cannot be read.
pub(super) fn mtu(name: &str) -> usize {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1500)
}

/// Send what the datapath staged, one `sendmmsg()` per interface straight from where it lies
/// (its transmit buffer, or `rx` for hits applied in place) — by the interface's AF_XDP socket
/// when it has one — and count its bytes and what was refused. `taken` is a port the caller holds out of
/// `ports` while it reads it (its frames leave by its AF_PACKET socket). Frames for an interface
/// this worker has no socket on (it went between the flow's making and now) count as refused.
fn flush(dp: &mut Datapath, ports: &mut [Option<Box<Port>>], taken: Option<(usize, &RawSocket)>, rx: &impl RxFrames) {
    let mut refused = 0;
    dp.count_tx_bytes();
    for (o, frames) in dp.tx().by_iface_in(rx) {
        let o = o.0 as usize;
        refused += match (taken, ports.get_mut(o).and_then(Option::as_mut)) {
            (Some((k, s)), _) if k == o => s.send_many(frames),
            (_, Some(p)) => match p.xsk.as_mut() {
                Some(x) => x.send(frames),
                None => p.sock.send_many(frames),
            },
            (_, None) => frames.count(),
        };
    }
    dp.sent();
    if refused > 0 {
        tracing::debug!(refused, "sends refused");
        dp.count_tx_errors(refused as u64);
    }
}

/// Where a worker's questions go, and how it is woken to read them.
pub(super) struct Asker {
    pub(super) tx: Sender<Ask>,
    pub(super) waker: Arc<Waker>,
}

/// Ask every worker the same question and collect the answers (a worker that does not answer
/// within two seconds is left out).
pub(super) fn ask_all<T>(asks: &[Asker], mut make: impl FnMut(Sender<T>) -> Ask) -> Vec<T> {
    let mut waits = Vec::new();
    for a in asks {
        let (tx, rx) = bounded(1);
        if a.tx.send_timeout(make(tx), Duration::from_secs(2)).is_ok() {
            a.waker.wake();
            waits.push(rx);
        }
    }
    waits.into_iter().filter_map(|rx| rx.recv_timeout(Duration::from_secs(2)).ok()).collect()
}
