//! A batch of received frames (issue 14): up to [`BATCH`] frames of one interface, each in a
//! buffer of its own with [`HEADROOM`] bytes in front, as live mode reads them (`recvmmsg()`
//! writes each frame after the headroom) and as replay and the benches fill it. The datapath
//! processes a batch with [`crate::Datapath::process_batch`].

/// Frames per batch: what live mode reads per poll of one socket.
pub const BATCH: usize = 64;
/// Room in front of every frame, so a flow that makes the frame longer (VXLAN, fip64 to IPv6)
/// can write its headers in place.
pub const HEADROOM: usize = 128;

/// Up to [`BATCH`] frames, each at [`HEADROOM`] in its buffer. Reused: no allocation once made.
#[derive(Debug)]
pub struct RxBatch {
    bufs: Vec<Box<[u8]>>,
    lens: [usize; BATCH],
    n: usize,
}

impl RxBatch {
    /// A batch whose frames may be up to `frame_max` bytes long.
    pub fn new(frame_max: usize) -> RxBatch {
        RxBatch { bufs: (0..BATCH).map(|_| vec![0; HEADROOM + frame_max].into_boxed_slice()).collect(), lens: [0; BATCH], n: 0 }
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
        self.n == BATCH
    }

    /// Copy `frame` in as the next frame; false (and nothing copied) when the batch is full or
    /// the frame longer than its buffers.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        let Some(buf) = self.bufs.get_mut(self.n) else { return false };
        let Some(room) = buf.get_mut(HEADROOM..HEADROOM + frame.len()) else { return false };
        room.copy_from_slice(frame);
        self.lens[self.n] = frame.len();
        self.n += 1;
        true
    }

    /// The buffers a receive call fills, each from [`HEADROOM`]: after it, [`RxBatch::set_lens`].
    pub fn rx_bufs(&mut self) -> impl Iterator<Item = &mut [u8]> {
        self.bufs.iter_mut().map(|b| b.get_mut(HEADROOM..).unwrap_or_default())
    }

    /// A receive call wrote these frame lengths, in order.
    pub fn set_lens(&mut self, lens: impl IntoIterator<Item = usize>) {
        self.n = 0;
        for (slot, len) in self.lens.iter_mut().zip(lens) {
            *slot = len;
            self.n += 1;
        }
    }

    /// Frame `k`.
    pub fn frame(&self, k: usize) -> &[u8] {
        match (self.bufs.get(k), self.lens.get(k)) {
            (Some(b), Some(&len)) if k < self.n => b.get(HEADROOM..HEADROOM + len).unwrap_or_default(),
            _ => &[],
        }
    }

    /// Frame `k`, writable.
    pub fn frame_mut(&mut self, k: usize) -> &mut [u8] {
        match (self.bufs.get_mut(k), self.lens.get(k)) {
            (Some(b), Some(&len)) if k < self.n => b.get_mut(HEADROOM..HEADROOM + len).unwrap_or_default(),
            _ => &mut [],
        }
    }
}
