//! The running datapath's tap (issue 16): `trace --live` — the next packets that match a filter,
//! each with the cached flow it took or the simulation's walk — and `capture --drops` — the
//! next dropped frames with their reasons. Armed and read from the control socket; a worker
//! looks at one atomic per batch while it is off, and while it is on takes its batches by the
//! general door (no express lane), frame by frame. What a worker finds goes into a bounded queue
//! a reader drains: a full queue loses the event and counts it, so a busy datapath never waits
//! for the reader and never grows memory for it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::drop::DropReason;
use crate::iface::IfIdx;
use crate::wire::{self, L3, L4};

/// Events held for the reader at most.
const QUEUE: usize = 4096;

/// What the tap looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Packets that match, each traced.
    Trace,
    /// Frames dropped, of one reason or any.
    Drops(Option<DropReason>),
}

/// Which frames the tap takes: arriving on `iface` (any, if `None`) and matching every header
/// field given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub iface: Option<IfIdx>,
    pub proto: Option<u8>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

impl Filter {
    /// Whether `frame`, arriving on `iface`, is one the filter takes (a frame that does not
    /// parse is taken only by a filter of no header field).
    pub fn takes(&self, iface: IfIdx, frame: &[u8]) -> bool {
        if self.iface.is_some_and(|i| i != iface) {
            return false;
        }
        if self.proto.is_none() && self.src.is_none() && self.dst.is_none() && self.sport.is_none() && self.dport.is_none() {
            return true;
        }
        let Ok(h) = wire::parse(frame) else { return false };
        let (proto, src, dst, l4) = match &h.l3 {
            L3::Ipv4(ip) => (ip.proto, IpAddr::V4(ip.src), IpAddr::V4(ip.dst), &ip.l4),
            L3::Ipv6(ip) => (ip.proto, IpAddr::V6(ip.src), IpAddr::V6(ip.dst), &ip.l4),
            _ => return false,
        };
        let ports = match l4 {
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport, .. } => Some((*sport, *dport)),
            _ => None,
        };
        self.proto.is_none_or(|p| p == proto)
            && self.src.is_none_or(|a| a == src)
            && self.dst.is_none_or(|a| a == dst)
            && self.sport.is_none_or(|p| ports.is_some_and(|(s, _)| s == p))
            && self.dport.is_none_or(|p| ports.is_some_and(|(_, d)| d == p))
    }
}

/// What the tap is armed with, and how many events it still takes.
#[derive(Debug)]
pub struct Spec {
    pub mode: Mode,
    pub filter: Filter,
    remaining: AtomicUsize,
}

impl Spec {
    /// Take one event if any is left to take.
    pub fn take_one(&self) -> bool {
        self.remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
    }

    pub fn remaining(&self) -> usize {
        self.remaining.load(Ordering::Acquire)
    }
}

/// One thing the tap saw.
#[derive(Debug, Clone)]
pub enum Event {
    /// A packet traced: the interface, then the lines that say what happened to it.
    Trace { iface: String, lines: Vec<String> },
    /// A frame dropped: the interface, the reason, the packet clock (ns) and the frame.
    Drop { iface: String, reason: DropReason, at: u64, frame: Vec<u8> },
}

/// The tap, shared by the workers and the control socket.
#[derive(Debug)]
pub struct Tap {
    armed: AtomicBool,
    spec: Mutex<Option<Arc<Spec>>>,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    lost: AtomicU64,
    /// When its reader last armed or read it (wall clock, ns): a reader gone for
    /// [`Tap::ABANDONED`] (killed before it let the tap go) no longer holds it.
    read_at: AtomicU64,
}

impl Default for Tap {
    fn default() -> Self {
        let (tx, rx) = bounded(QUEUE);
        Tap { armed: AtomicBool::new(false), spec: Mutex::new(None), tx, rx, lost: AtomicU64::new(0), read_at: AtomicU64::new(0) }
    }
}

impl Tap {
    /// How long a reader may go without reading before another may take the tap.
    pub const ABANDONED: std::time::Duration = std::time::Duration::from_secs(5);

    fn touch(&self) {
        self.read_at.store(crate::time::Instant::wall().0, Ordering::Relaxed);
    }

    /// What the tap is armed with, if it is: one relaxed load when it is not.
    #[inline]
    pub fn spec(&self) -> Option<Arc<Spec>> {
        if !self.armed.load(Ordering::Relaxed) {
            return None;
        }
        self.spec.lock().ok()?.clone()
    }

    /// Arm it for `count` events (what was queued before is let go); refused while it is armed
    /// (one trace or capture at a time: a second would take the first's events).
    pub fn arm(&self, mode: Mode, filter: Filter, count: usize) -> Result<(), &'static str> {
        let Ok(mut s) = self.spec.lock() else { return Err("the tap is broken") };
        let idle = crate::time::Instant::wall().0.saturating_sub(self.read_at.load(Ordering::Relaxed));
        if s.is_some() && idle < Self::ABANDONED.as_nanos() as u64 {
            return Err("a live trace or capture is running; one at a time");
        }
        self.touch();
        while self.rx.try_recv().is_ok() {}
        self.lost.store(0, Ordering::Relaxed);
        *s = Some(Arc::new(Spec { mode, filter, remaining: AtomicUsize::new(count) }));
        self.armed.store(true, Ordering::Release);
        Ok(())
    }

    /// Stop taking events (those queued stay for the reader); the tap may be armed again once
    /// the reader lets it go ([`Tap::release`]).
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
    }

    /// Disarm it and let it go: the next trace or capture may arm it.
    pub fn release(&self) {
        self.disarm();
        if let Ok(mut s) = self.spec.lock() {
            *s = None;
        }
    }

    /// Queue an event; a full queue loses it (counted).
    pub fn put(&self, e: Event) {
        if self.tx.try_send(e).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The events queued so far; events still to take (0 once disarmed); events lost.
    pub fn take(&self) -> (Vec<Event>, usize, u64) {
        self.touch();
        let remaining = self.spec().map_or(0, |s| s.remaining());
        let events = self.rx.try_iter().collect();
        (events, remaining, self.lost.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp(src: [u8; 4], sport: u16) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(src, [10, 0, 0, 2], 64).udp(sport, 53).write(&mut v, b"x").unwrap();
        v
    }

    #[test]
    fn a_filter_takes_what_matches_every_field_given() {
        let f = udp([10, 0, 0, 1], 4000);
        assert!(Filter::default().takes(IfIdx(0), &f) && Filter::default().takes(IfIdx(0), b"junk"), "no field: everything");
        let on = |i| Filter { iface: Some(IfIdx(i)), ..Filter::default() };
        assert!(on(1).takes(IfIdx(1), &f) && !on(1).takes(IfIdx(2), &f));
        let by = Filter { proto: Some(17), src: Some([10, 0, 0, 1].into()), sport: Some(4000), dport: Some(53), ..Filter::default() };
        assert!(by.takes(IfIdx(0), &f));
        assert!(!by.takes(IfIdx(0), &udp([10, 0, 0, 9], 4000)) && !by.takes(IfIdx(0), &udp([10, 0, 0, 1], 4001)));
        assert!(!Filter { proto: Some(6), ..Filter::default() }.takes(IfIdx(0), &f));
        assert!(!by.takes(IfIdx(0), b"junk"), "a header field: only what parses");
    }

    #[test]
    fn one_user_at_a_time_a_bounded_queue_and_a_count() {
        let tap = Tap::default();
        assert!(tap.spec().is_none(), "off");
        tap.arm(Mode::Trace, Filter::default(), 2).unwrap();
        assert!(tap.arm(Mode::Drops(None), Filter::default(), 1).is_err(), "a second user is refused");
        let spec = tap.spec().expect("armed");
        assert!(spec.take_one() && spec.take_one() && !spec.take_one(), "two, then no more");
        for _ in 0..QUEUE + 3 {
            tap.put(Event::Trace { iface: "i".into(), lines: vec![] });
        }
        let (events, _, lost) = tap.take();
        assert_eq!((events.len(), lost), (QUEUE, 3), "a full queue loses, and counts");
        tap.release();
        assert!(tap.spec().is_none() && tap.arm(Mode::Trace, Filter::default(), 1).is_ok(), "let go, it can be armed again");
    }
}
