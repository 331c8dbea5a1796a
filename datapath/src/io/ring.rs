//! A `TPACKET_V3` receive ring (issue 14): blocks of frames the kernel fills and the process
//! reads in place — no copy to a buffer and no system call per frame, one `poll()` wake-up per
//! block — handed to the datapath as batches ([`RingBatch`]) whose hits are rewritten where they
//! lie and sent from there before the block goes back.
//!
//! `unsafe` here is the ring's shared memory; each block says why it is sound.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::rawsock::{set_opt, RawSocket, Received, PACKET_OUTGOING, SOL_PACKET, TP_STATUS_CSUMNOTREADY};
use crate::batch::{RxFrames, BATCH};
use crate::time::Instant;

const PACKET_RX_RING: libc::c_int = 5;
const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_KERNEL: u32 = 0;

#[repr(C)]
#[derive(Clone, Copy)]
struct TpacketReq3 {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
    tp_retire_blk_tov: u32,
    tp_sizeof_priv: u32,
    tp_feature_req_word: u32,
}

// Offsets in the ring (linux/if_packet.h): a block starts with `tpacket_block_desc`, whose
// `tpacket_hdr_v1` has the block status at byte 8, the number of frames at 12 and the offset of
// the first frame at 16. A frame starts with `tpacket3_hdr`: the offset of the next frame at 0,
// the captured length at 12, the status at 20 and the offset of the Ethernet header at 24; its
// `sockaddr_ll` follows at 48 (`TPACKET_ALIGN(sizeof(tpacket3_hdr))`), packet type at 10 there.
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST: usize = 16;
const PKT_NEXT: usize = 0;
const PKT_SNAPLEN: usize = 12;
const PKT_STATUS: usize = 20;
const PKT_MAC: usize = 24;
const PKT_SLL_PKTTYPE: usize = 48 + 10;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// A `TPACKET_V3` receive ring on a socket: blocks of frames the kernel fills and hands over
/// (a full block, or one whose `retire` time passed), read in place and handed back.
pub struct RxRing {
    map: *mut u8,
    block_size: usize,
    blocks: usize,
    next: usize,
}

// SAFETY: the mapping is owned by the ring alone (no other Rust value points into it) and the
// kernel synchronises through each block's status word; moving the ring to another thread moves
// that ownership.
unsafe impl Send for RxRing {}

impl RxRing {
    /// Put a ring of `blocks` blocks of `block_size` bytes on `sock` (which must have no ring
    /// yet); a block is handed over when full or `retire` after its first frame.
    pub fn new(sock: &RawSocket, block_size: usize, blocks: usize, retire: Duration) -> io::Result<RxRing> {
        set_opt(sock.fd(), SOL_PACKET, PACKET_VERSION, &TPACKET_V3)?;
        let frame = 2048u32;
        let req = TpacketReq3 {
            tp_block_size: block_size as u32,
            tp_block_nr: blocks as u32,
            tp_frame_size: frame,
            tp_frame_nr: (block_size * blocks) as u32 / frame,
            tp_retire_blk_tov: retire.as_millis().max(1) as u32,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        set_opt(sock.fd(), SOL_PACKET, PACKET_RX_RING, &req)?;
        let len = block_size * blocks;
        // SAFETY: a fresh shared mapping of the ring the kernel just made for this socket, of the
        // length it was asked for; checked for failure below and unmapped once, in Drop.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                sock.fd().as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(RxRing { map: map as *mut u8, block_size, blocks, next: 0 })
    }

    /// The status word of block `b`.
    fn status(&self, b: usize) -> *mut u32 {
        // SAFETY: b < blocks, so the offset is inside the mapping; the word is 4-byte aligned
        // (blocks are page-aligned).
        unsafe { self.map.add(b * self.block_size + BLOCK_STATUS) as *mut u32 }
    }

    /// Read the blocks the kernel has handed over, up to `max_blocks`, in order: `f` gets each
    /// block's frames as batches of up to [`BATCH`] ([`RingBatch`]: writable in place, with the
    /// room before each frame up to where the one before it ends), all received at `now`; each
    /// block goes back to the kernel after its last batch, so whatever `f` staged in a batch
    /// must be sent before `f` returns. Returns the frames read.
    pub fn read(&mut self, max_blocks: usize, now: Instant, mut f: impl FnMut(&mut RingBatch<'_>)) -> usize {
        let mut frames = 0;
        for _ in 0..max_blocks {
            let b = self.next;
            // SAFETY: the status word is inside the mapping (see `status`); a volatile read, as
            // the kernel writes it.
            let st = unsafe { std::ptr::read_volatile(self.status(b)) };
            if st & TP_STATUS_USER == 0 {
                break;
            }
            // Nothing of the block is read before its status said it is ours.
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            // SAFETY: block b is inside the mapping, and while its status is TP_STATUS_USER the
            // kernel does not touch it: this is the only reference to it until it is handed back
            // below.
            let block = unsafe { std::slice::from_raw_parts_mut(self.map.add(b * self.block_size), self.block_size) };
            let n = u32_at(block, BLOCK_NUM_PKTS).unwrap_or(0);
            let mut at = u32_at(block, BLOCK_FIRST).unwrap_or(0) as usize;
            // The first frame may write its longer headers from its own frame header on, never
            // into the block's (whose status word hands the block back).
            let mut lo = at;
            let mut batch = RingBatch { block, frames: [RingFrame::default(); BATCH], n: 0, now };
            for _ in 0..n {
                let blk = &*batch.block;
                let (Some(next), Some(snap), Some(status), Some(mac)) =
                    (u32_at(blk, at + PKT_NEXT), u32_at(blk, at + PKT_SNAPLEN), u32_at(blk, at + PKT_STATUS), u16_at(blk, at + PKT_MAC))
                else {
                    break;
                };
                let outgoing = blk.get(at + PKT_SLL_PKTTYPE) == Some(&PACKET_OUTGOING);
                let (start, end) = (at + mac as usize, at + mac as usize + snap as usize);
                if let (true, Some(slot)) = (start >= lo && end <= blk.len(), batch.frames.get_mut(batch.n)) {
                    let received = Received { len: end - start, csum_pending: status & TP_STATUS_CSUMNOTREADY != 0, outgoing };
                    *slot = RingFrame { lo, start, end, received };
                    batch.n += 1;
                    frames += 1;
                    // The next frame may write back to where this one ends, never into it.
                    lo = end;
                }
                if batch.n == BATCH {
                    f(&mut batch);
                    batch.n = 0;
                }
                if next == 0 {
                    break;
                }
                at += next as usize;
            }
            if batch.n > 0 {
                f(&mut batch);
            }
            // Hand the block back once everything above is done with it.
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            // SAFETY: as in the read above; from here on the kernel owns the block again.
            unsafe { std::ptr::write_volatile(self.status(b), TP_STATUS_KERNEL) };
            self.next = (b + 1) % self.blocks;
        }
        frames
    }
}

/// Up to [`BATCH`] frames of one ring block, in place ([`RxRing::read`]).
pub struct RingBatch<'a> {
    block: &'a mut [u8],
    frames: [RingFrame; BATCH],
    n: usize,
    now: Instant,
}

/// Where a frame lies in its block: from `start` to `end`, with `lo..start` free to write.
#[derive(Debug, Clone, Copy, Default)]
struct RingFrame {
    lo: usize,
    start: usize,
    end: usize,
    received: Received,
}

impl RingBatch<'_> {
    /// What the kernel said of frame `k`.
    pub fn received(&self, k: usize) -> Received {
        self.frames.get(k).map(|f| f.received).unwrap_or_default()
    }
}

impl RxFrames for RingBatch<'_> {
    fn count(&self) -> usize {
        self.n
    }

    fn frame(&self, k: usize) -> &[u8] {
        match self.frames.get(k).filter(|_| k < self.n) {
            Some(f) => self.block.get(f.start..f.end).unwrap_or_default(),
            None => &[],
        }
    }

    fn buf_mut(&mut self, k: usize) -> (&mut [u8], usize) {
        match self.frames.get(k).filter(|_| k < self.n) {
            Some(f) => (self.block.get_mut(f.lo..f.end).unwrap_or_default(), f.start - f.lo),
            None => (&mut [], 0),
        }
    }

    fn buf(&self, k: usize) -> &[u8] {
        match self.frames.get(k).filter(|_| k < self.n) {
            Some(f) => self.block.get(f.lo..f.end).unwrap_or_default(),
            None => &[],
        }
    }

    fn time(&self, _: usize) -> Instant {
        self.now
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of that length, unmapped once; no slice into it
        // outlives `read`.
        unsafe {
            libc::munmap(self.map as *mut libc::c_void, self.block_size * self.blocks);
        }
    }
}
