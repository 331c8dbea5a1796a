//! A batch of received frames (issue 14): up to [`BATCH`] frames of one interface, each in a
//! buffer the datapath may write, with headroom in front, as live mode reads them and as replay
//! and the benches fill them. [`crate::Datapath::process_batch`] takes any [`RxFrames`]: a hit is
//! applied in place in its frame's buffer and sent from there ([`crate::fastpath::TxBuf`] stages
//! it by its place in the batch), so the frame is never copied unless it needs more room in
//! front than it has.

use crate::time::Instant;

/// Frames per batch: what live mode reads per poll of one socket.
pub const BATCH: usize = 64;
/// Room in front of every frame of an [`RxBatch`], so a flow that makes the frame longer (VXLAN,
/// fip64 to IPv6) can write its headers in place.
pub const HEADROOM: usize = 128;

/// Received frames in buffers of the process's own: frame `k` lies in [`RxFrames::buf_mut`]`(k)`
/// from an offset on; the bytes before it are headroom a flow may write its longer headers into.
pub trait RxFrames {
    fn count(&self) -> usize;
    /// Frame `k` (empty past the end).
    fn frame(&self, k: usize) -> &[u8];
    /// Frame `k`'s buffer, up to the frame's end, and where the frame begins in it.
    fn buf_mut(&mut self, k: usize) -> (&mut [u8], usize);
    /// Frame `k`'s buffer, as [`RxFrames::buf_mut`] gives it, read-only.
    fn buf(&self, k: usize) -> &[u8];
    /// When frame `k` arrived, on the packet clock.
    fn time(&self, k: usize) -> Instant;
}

/// Up to [`BATCH`] frames, each at [`HEADROOM`] in its own buffer. Reused: no allocation once made.
#[derive(Debug)]
pub struct RxBatch {
    bufs: Vec<Box<[u8]>>,
    lens: [usize; BATCH],
    times: [Instant; BATCH],
    n: usize,
}

impl RxBatch {
    /// A batch whose frames may be up to `frame_max` bytes long.
    pub fn new(frame_max: usize) -> RxBatch {
        RxBatch::of(BATCH, frame_max)
    }

    /// A batch of at most `frames` frames (up to [`BATCH`]) of up to `frame_max` bytes.
    pub fn of(frames: usize, frame_max: usize) -> RxBatch {
        RxBatch {
            bufs: (0..frames.min(BATCH)).map(|_| vec![0; HEADROOM + frame_max].into_boxed_slice()).collect(),
            lens: [0; BATCH],
            times: [Instant(0); BATCH],
            n: 0,
        }
    }

    pub fn clear(&mut self) {
        self.n = 0;
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn is_full(&self) -> bool {
        self.n == self.bufs.len()
    }

    /// Copy `frame`, which arrived at `now`, in as the next frame; false (and nothing copied)
    /// when the batch is full or the frame longer than its buffers.
    pub fn push(&mut self, frame: &[u8], now: Instant) -> bool {
        let Some(buf) = self.bufs.get_mut(self.n) else { return false };
        let Some(room) = buf.get_mut(HEADROOM..HEADROOM + frame.len()) else { return false };
        room.copy_from_slice(frame);
        self.lens[self.n] = frame.len();
        self.times[self.n] = now;
        self.n += 1;
        true
    }

    /// The buffers a receive call fills, each from [`HEADROOM`]: after it, [`RxBatch::set_lens`].
    pub fn rx_bufs(&mut self) -> impl Iterator<Item = &mut [u8]> {
        self.bufs.iter_mut().map(|b| b.get_mut(HEADROOM..).unwrap_or_default())
    }

    /// A receive call wrote these frame lengths, in order, at `now`.
    pub fn set_lens(&mut self, lens: impl IntoIterator<Item = usize>, now: Instant) {
        self.n = 0;
        for ((slot, time), len) in self.lens.iter_mut().zip(self.times.iter_mut()).zip(lens).take(self.bufs.len()) {
            *slot = len;
            *time = now;
            self.n += 1;
        }
    }

    /// Frame `k`, writable.
    pub fn frame_mut(&mut self, k: usize) -> &mut [u8] {
        let (buf, at) = self.buf_mut(k);
        buf.get_mut(at..).unwrap_or_default()
    }

    /// Frame `k`'s buffer and length, `None` past the last frame.
    #[inline(always)]
    fn slot(&self, k: usize) -> Option<(&[u8], usize)> {
        match (self.bufs.get(k), self.lens.get(k)) {
            (Some(b), Some(&len)) if k < self.n => Some((b, len)),
            _ => None,
        }
    }
}

impl RxFrames for RxBatch {
    fn count(&self) -> usize {
        self.n
    }

    #[inline(always)]
    fn frame(&self, k: usize) -> &[u8] {
        self.slot(k).and_then(|(b, len)| b.get(HEADROOM..HEADROOM + len)).unwrap_or_default()
    }

    #[inline(always)]
    fn buf_mut(&mut self, k: usize) -> (&mut [u8], usize) {
        let len = self.slot(k).map(|(_, len)| len);
        match (self.bufs.get_mut(k), len) {
            (Some(b), Some(len)) => match b.get_mut(..HEADROOM + len) {
                Some(b) => (b, HEADROOM),
                None => (&mut [], 0),
            },
            _ => (&mut [], 0),
        }
    }

    #[inline(always)]
    fn buf(&self, k: usize) -> &[u8] {
        self.slot(k).and_then(|(b, len)| b.get(..HEADROOM + len)).unwrap_or_default()
    }

    fn time(&self, k: usize) -> Instant {
        self.times.get(k).copied().unwrap_or_default()
    }
}

/// No frames: what [`crate::fastpath::TxBuf`] resolves its frames against when none were
/// applied in place (single frames, replay with workers).
pub struct NoRx;

impl RxFrames for NoRx {
    fn count(&self) -> usize {
        0
    }
    fn frame(&self, _: usize) -> &[u8] {
        &[]
    }
    fn buf_mut(&mut self, _: usize) -> (&mut [u8], usize) {
        (&mut [], 0)
    }
    fn buf(&self, _: usize) -> &[u8] {
        &[]
    }
    fn time(&self, _: usize) -> Instant {
        Instant(0)
    }
}
