//! What a worker does for the tap (`tap.rs`) with a frame the tap's filter takes: for `trace
//! --live`, before the frame is processed, the cached flow it will take or the simulation's
//! walk (on a copy of the state: what the miss will do); for `capture --drops`, the frame as it
//! arrived, kept until it is processed, and queued with its reason if that dropped it.

use crate::drop::DropCounters;
use crate::iface::IfIdx;
use crate::tap::{Event, Mode, Spec};
use crate::time::Instant;

use crate::batch::RxFrames;

use super::vector::Classified;
use super::{Datapath, Src};

/// A frame the tap watches across its processing.
pub(super) struct Seen {
    drops: DropCounters,
    frame: Vec<u8>,
}

impl Datapath {
    /// [`Datapath::process_frames`]'s chunk while the tap is armed: each frame in order through
    /// the general door, the tap looking at those its filter takes. Kept out of line, so the
    /// batch's own loop is the same whether the tap exists or not.
    #[inline(never)]
    #[cold]
    pub(super) fn process_tapped(&mut self, iface: IfIdx, rx: &mut impl RxFrames, range: std::ops::Range<usize>, t: &Spec) {
        for k in range {
            self.batch_marks.push(self.tx.staged_count());
            let now = rx.time(k);
            let c = self.classify(iface, rx.frame(k));
            let watched = t.filter.takes(iface, rx.frame(k));
            let seen = if watched { self.tap_before(t, iface, &c, rx.frame(k), now) } else { None };
            let (buf, at) = rx.buf_mut(k);
            self.process_classified(iface, Src::Rx { buf, at, k }, &c, now, false);
            if let Some(seen) = seen {
                self.tap_after(t, iface, seen, now);
            }
        }
    }

    /// Before frame `frame` (from `iface`, classified as `c`) is processed.
    fn tap_before(&mut self, t: &Spec, iface: IfIdx, c: &Classified, frame: &[u8], now: Instant) -> Option<Seen> {
        match t.mode {
            Mode::Drops(_) => Some(Seen { drops: self.stats.drops.clone(), frame: frame.to_vec() }),
            Mode::Trace => {
                // The event is made before it is counted taken, so a reader that sees none left
                // finds every one queued.
                if t.remaining() > 0 {
                    let lines = self.trace_lines(iface, c, frame, now);
                    let e = Event::Trace { iface: self.snap.ifs.get(iface).name.clone(), lines };
                    if t.take_one() {
                        self.shared.tap().put(e);
                    }
                }
                if t.remaining() == 0 {
                    self.shared.tap().disarm();
                }
                None
            }
        }
    }

    /// After the frame was processed: a drop it caused, queued.
    fn tap_after(&mut self, t: &Spec, iface: IfIdx, seen: Seen, now: Instant) {
        let Mode::Drops(want) = &t.mode else { return };
        let reason = crate::DropReason::ALL.iter().copied().find(|&r| self.stats.drops.get(r) > seen.drops.get(r));
        if let Some(r) = reason.filter(|r| want.is_none_or(|w| w == *r)) {
            if t.take_one() {
                let iface = self.snap.ifs.get(iface).name.clone();
                self.shared.tap().put(Event::Drop { iface, reason: r, at: now.0, frame: seen.frame });
            }
            if t.remaining() == 0 {
                self.shared.tap().disarm();
            }
        }
    }

    /// What happens to the frame: the fresh cached flow it takes, or the simulation's walk.
    fn trace_lines(&mut self, iface: IfIdx, c: &Classified, frame: &[u8], now: Instant) -> Vec<String> {
        let epoch = self.shared.epoch();
        if let Some(k) = &c.key {
            if let Some(f) = self.flows.get_hashed(c.hash, k).filter(|f| f.epoch == epoch && f.learned.fresh(&self.gens)) {
                let r = crate::report::flow_record(k, f, &self.snap.ifs, epoch, &self.gens);
                return vec![
                    format!("packet on {}: {}", r.in_iface, crate::wire::describe::describe(frame)),
                    format!("  cached flow: {}", r.line()),
                ];
            }
        }
        let mut lines = self.shared.trace_packet(iface, frame, now).lines();
        lines.insert(1, "  not cached: the simulation".into());
        lines
    }
}
