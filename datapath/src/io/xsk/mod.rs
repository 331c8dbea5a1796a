//! An AF_XDP socket on one queue of one interface (issue 14): frames the kernel's XDP hook
//! redirects into a memory area of the process's own (the umem), read there in batches
//! ([`XskBatch`], rewritten in place like a ring block's), and frames sent by writing them into
//! the umem and handing their descriptors to the kernel.
//!
//! The redirect program is libxdp's own (`xsk_def_prog`, from Debian's `libxdp1`), which libxdp
//! attaches when the first socket of an interface is made and detaches with the last; edgepath
//! carries no BPF program. libxdp is opened when a socket is first asked for (`dlopen`), so a
//! host without it runs on the AF_PACKET rings; only the control path goes through it — the
//! rings' producer and consumer steps are here, as `xsk.h` has them inline (acquire loads of the
//! other side's index, release stores of ours).
//!
//! `unsafe` here is libxdp's calls and the shared memory of the umem and rings; each block says
//! why it is sound.

use std::ffi::{c_int, c_void, CString};
use std::io;

use super::rawsock::Received;
use crate::batch::{RxFrames, BATCH};
use crate::time::Instant;

use sys::{
    lib, Desc, Ring, SocketConfig, UmemConfig, CHUNK, CHUNKS, RING, SOL_XDP, XDP_OPTIONS, XDP_OPTIONS_ZEROCOPY, XDP_USE_NEED_WAKEUP,
};

mod sys;

/// An AF_XDP socket with its umem.
pub struct Xsk {
    area: *mut u8,
    umem: *mut c_void,
    sock: *mut c_void,
    // libxdp keeps pointers to these until the socket and umem are deleted: boxed, never moved.
    fill: Box<Ring>,
    comp: Box<Ring>,
    rx: Box<Ring>,
    tx: Box<Ring>,
    fd: c_int,
    /// Send chunks not in flight.
    free: Vec<u64>,
    zero_copy: bool,
}

// SAFETY: the umem, the rings and the socket belong to this value alone; moving it to another
// thread moves that ownership (libxdp's objects are not tied to a thread).
unsafe impl Send for Xsk {}

impl Xsk {
    /// A socket on queue `queue` of interface `name` (zero-copy where the driver has it, else
    /// copy), its umem's receive half given to the kernel. Errors say why, for the one log line
    /// of the fallback.
    pub fn open(name: &str, queue: u32) -> io::Result<Xsk> {
        let lib = lib().map_err(io::Error::other)?;
        let len = CHUNK * CHUNKS;
        // SAFETY: a fresh private anonymous mapping, checked for failure; unmapped in Drop.
        let area = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if area == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut x = Xsk {
            area: area as *mut u8,
            umem: std::ptr::null_mut(),
            sock: std::ptr::null_mut(),
            fill: Ring::zeroed(),
            comp: Ring::zeroed(),
            rx: Ring::zeroed(),
            tx: Ring::zeroed(),
            fd: -1,
            free: (CHUNKS / 2..CHUNKS).map(|c| (c * CHUNK) as u64).collect(),
            zero_copy: false,
        };
        let ucfg = UmemConfig { fill_size: RING, comp_size: RING, frame_size: CHUNK as u32, frame_headroom: 0, flags: 0 };
        // SAFETY: the area is len bytes, page-aligned; the rings are boxed and outlive the umem.
        let r = unsafe { (lib.umem_create)(&mut x.umem, area, len as u64, &mut *x.fill, &mut *x.comp, &ucfg) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(-r));
        }
        let ifname = CString::new(name).map_err(|_| io::Error::other("interface name"))?;
        let scfg = SocketConfig { rx_size: RING, tx_size: RING, libxdp_flags: 0, xdp_flags: 0, bind_flags: XDP_USE_NEED_WAKEUP };
        // A socket of this queue closed a moment ago is let go lazily: `EBUSY` for ~200 ms.
        let mut r = 0;
        for _ in 0..10 {
            // SAFETY: a live umem, a NUL-terminated name, boxed rings that outlive the socket.
            r = unsafe { (lib.socket_create)(&mut x.sock, ifname.as_ptr(), queue, x.umem, &mut *x.rx, &mut *x.tx, &scfg) };
            if r != -libc::EBUSY {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if r != 0 {
            return Err(io::Error::from_raw_os_error(-r));
        }
        // SAFETY: a live socket.
        x.fd = unsafe { (lib.socket_fd)(x.sock) };
        let mut opts = 0u32;
        let mut optlen = size_of::<u32>() as libc::socklen_t;
        // SAFETY: XDP_OPTIONS writes one u32 into `opts`, whose size is given.
        if unsafe { libc::getsockopt(x.fd, SOL_XDP, XDP_OPTIONS, &mut opts as *mut u32 as *mut c_void, &mut optlen) } == 0 {
            x.zero_copy = opts & XDP_OPTIONS_ZEROCOPY != 0;
        }
        let n = (CHUNKS / 2) as u32;
        let at = x.fill.reserve(n).ok_or_else(|| io::Error::other("fill ring smaller than the receive chunks"))?;
        for c in 0..n {
            // SAFETY: a reserved fill entry.
            unsafe { *x.fill.slot::<u64>(at.wrapping_add(c)) = c as u64 * CHUNK as u64 };
        }
        x.fill.submit(n);
        Ok(x)
    }

    /// Take a redirect program a killed run left on interface `ifindex` off it, before this
    /// process makes its first socket there; true when there was one.
    pub fn clear_stale(ifindex: u32) -> bool {
        lib().is_ok_and(|l| l.detach_stale(ifindex))
    }

    /// The socket, to poll.
    pub fn fd(&self) -> c_int {
        self.fd
    }

    /// Whether the driver gave zero-copy (else the kernel copies into the umem).
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Read what arrived, in batches of up to [`BATCH`], all received at `now`: `f` gets each
    /// batch (its frames writable in place, with their chunk's room before them), and whatever
    /// it staged must be sent before it returns — the chunks go back to the kernel then. Returns
    /// the frames read.
    pub fn read(&mut self, now: Instant, mut f: impl FnMut(&mut XskBatch<'_>)) -> usize {
        let mut frames = 0;
        loop {
            let (n, at) = self.rx.peek(BATCH as u32);
            if n == 0 {
                break;
            }
            let mut batch = XskBatch { xsk: self, descs: [(0, 0); BATCH], n: 0, now };
            for i in 0..n {
                // SAFETY: an rx entry the kernel produced (peeked above).
                let d = unsafe { *batch.xsk.rx.slot::<Desc>(at.wrapping_add(i)) };
                if let Some(slot) = batch.descs.get_mut(batch.n) {
                    *slot = (d.addr, d.len);
                    batch.n += 1;
                }
            }
            f(&mut batch);
            let (descs, got) = (batch.descs, batch.n);
            // Once released, the kernel may write new entries where these were: what goes back
            // on the fill ring is taken from the batch's copy, not from the rx ring.
            self.rx.release(n);
            // The chunks read go back to the kernel for more.
            if let Some(fill_at) = self.fill.reserve(got as u32) {
                for (i, &(addr, _)) in (0..).zip(descs.iter().take(got)) {
                    // SAFETY: a reserved fill entry.
                    unsafe { *self.fill.slot::<u64>(fill_at.wrapping_add(i)) = addr & !(CHUNK as u64 - 1) };
                }
                self.fill.submit(got as u32);
            }
            frames += n as usize;
        }
        if self.fill.needs_wakeup() {
            // SAFETY: a zero-length receive on our socket only wakes the kernel's fill side.
            unsafe { libc::recvfrom(self.fd, std::ptr::null_mut(), 0, libc::MSG_DONTWAIT, std::ptr::null_mut(), std::ptr::null_mut()) };
        }
        frames
    }

    /// Send `frames`, each copied into a send chunk; returns how many were refused (no chunk
    /// or descriptor free, or too long for a chunk).
    pub fn send<'a>(&mut self, frames: impl IntoIterator<Item = &'a [u8]>) -> usize {
        self.reclaim();
        let mut refused = 0;
        let mut queued = 0;
        for f in frames {
            let (Some(chunk), true) = (self.free.last().copied(), f.len() <= CHUNK) else {
                refused += 1;
                continue;
            };
            let Some(at) = self.tx.reserve(1) else {
                refused += 1;
                continue;
            };
            self.free.pop();
            // SAFETY: the chunk is ours (not in flight) and CHUNK bytes long, f fits; the
            // descriptor entry is reserved.
            unsafe {
                std::ptr::copy_nonoverlapping(f.as_ptr(), self.area.add(chunk as usize), f.len());
                *self.tx.slot::<Desc>(at) = Desc { addr: chunk, len: f.len() as u32, options: 0 };
            }
            self.tx.submit(1);
            queued += 1;
        }
        if queued > 0 {
            self.kick();
        }
        refused
    }

    /// Have the kernel send what is queued: in copy mode a kick sends up to 32 frames, and says
    /// `EAGAIN` while more remain.
    fn kick(&mut self) {
        for _ in 0..(RING / 32) {
            if !self.tx.needs_wakeup() {
                return;
            }
            // SAFETY: a zero-length send on our socket only wakes its transmit side.
            let r = unsafe { libc::sendto(self.fd, std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
            if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
                return;
            }
            self.reclaim();
        }
    }

    /// Sent chunks back to the free list.
    fn reclaim(&mut self) {
        let (n, at) = self.comp.peek(RING);
        for i in 0..n {
            // SAFETY: a completion entry the kernel produced.
            self.free.push(unsafe { *self.comp.slot::<u64>(at.wrapping_add(i)) } & !(CHUNK as u64 - 1));
        }
        if n > 0 {
            self.comp.release(n);
        }
    }
}

impl Drop for Xsk {
    fn drop(&mut self) {
        if let Ok(lib) = lib() {
            // SAFETY: the socket and umem made in `open` (or null), deleted once, the socket
            // first; the last socket of an interface takes libxdp's program off it.
            unsafe {
                if !self.sock.is_null() {
                    (lib.socket_delete)(self.sock);
                }
                if !self.umem.is_null() {
                    (lib.umem_delete)(self.umem);
                }
            }
        }
        // SAFETY: the mapping made in `open`, of that length, unmapped once, after the kernel
        // let go of it with the socket and umem.
        unsafe { libc::munmap(self.area as *mut c_void, CHUNK * CHUNKS) };
    }
}

/// Up to [`BATCH`] frames received on an [`Xsk`], in place in its umem ([`Xsk::read`]).
pub struct XskBatch<'a> {
    xsk: &'a mut Xsk,
    descs: [(u64, u32); BATCH],
    n: usize,
    now: Instant,
}

impl XskBatch<'_> {
    /// What the kernel says of frame `k`: nothing but its length (an XDP socket sees no
    /// checksum offload and no frames this host sent).
    pub fn received(&self, k: usize) -> Received {
        Received { len: self.frame(k).len(), csum_pending: false, outgoing: false }
    }

    /// Frame `k`'s chunk up to the frame's end, and where the frame begins in it.
    fn place(&self, k: usize) -> Option<(usize, usize, usize)> {
        let &(addr, len) = self.descs.get(k).filter(|_| k < self.n)?;
        let chunk = addr as usize & !(CHUNK - 1);
        let end = addr as usize + len as usize;
        (end <= chunk + CHUNK && chunk + CHUNK <= CHUNK * CHUNKS).then_some((chunk, addr as usize, end))
    }

    fn bytes(&self, from: usize, to: usize) -> &[u8] {
        // SAFETY: from..to lies in one chunk of the umem (`place`), which the kernel handed over
        // and does not touch until the chunk goes back on the fill ring after the batch.
        unsafe { std::slice::from_raw_parts(self.xsk.area.add(from), to - from) }
    }
}

impl RxFrames for XskBatch<'_> {
    fn count(&self) -> usize {
        self.n
    }

    fn frame(&self, k: usize) -> &[u8] {
        self.place(k).map_or(&[], |(_, at, end)| self.bytes(at, end))
    }

    fn buf_mut(&mut self, k: usize) -> (&mut [u8], usize) {
        match self.place(k) {
            // SAFETY: as in `bytes`; `&mut self` makes it the only view of the chunk.
            Some((chunk, at, end)) => (unsafe { std::slice::from_raw_parts_mut(self.xsk.area.add(chunk), end - chunk) }, at - chunk),
            None => (&mut [], 0),
        }
    }

    fn buf(&self, k: usize) -> &[u8] {
        self.place(k).map_or(&[], |(chunk, _, end)| self.bytes(chunk, end))
    }

    fn time(&self, _: usize) -> Instant {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::rawsock::RawSocket;
    use std::process::Command;
    use std::time::Duration;

    fn ip(args: &[&str]) -> bool {
        Command::new("ip").args(args).status().is_ok_and(|s| s.success())
    }

    /// Frames from a veth's peer arrive in the socket's umem, are rewritten in place, and what
    /// it sends arrives at the peer: AF_XDP in copy mode on veth, through libxdp's program.
    #[test]
    fn an_xdp_socket_on_veth_receives_and_sends() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || lib().is_err() {
            eprintln!("skipped: needs root and libxdp1 ({:?})", lib().err());
            return;
        }
        let (a, b) = (format!("xska{}", std::process::id() % 100_000), format!("xskb{}", std::process::id() % 100_000));
        assert!(ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]), "veth pair");
        // Deleted however the test ends.
        struct Veth(String);
        impl Drop for Veth {
            fn drop(&mut self) {
                ip(&["link", "del", &self.0]);
            }
        }
        let _veth = Veth(a.clone());
        for i in [&a, &b] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
            assert!(ip(&["link", "set", i, "up"]));
        }
        let run = || -> Result<(), String> {
            let mut x = Xsk::open(&a, 0).map_err(|e| format!("open: {e}"))?;
            let peer = RawSocket::open(&b, Duration::from_millis(200)).map_err(|e| format!("peer: {e}"))?;
            let frame = |n: u8| {
                let mut f = vec![0x02, 0, 0, 0, 0, 0xaa, 0x02, 0, 0, 0, 0, 0xbb, 0x88, 0xb5];
                f.extend_from_slice(&[n; 50]);
                f
            };
            let sent: Vec<Vec<u8>> = (1..=3).map(frame).collect();
            assert_eq!(peer.send_many(sent.iter().map(Vec::as_slice)), 0, "the peer sends");
            let mut got: Vec<Vec<u8>> = Vec::new();
            for _ in 0..50 {
                x.read(Instant(0), |rx| {
                    for k in 0..rx.count() {
                        let (buf, at) = rx.buf_mut(k);
                        assert!(at >= 50, "room in front of a received frame: {at}");
                        if buf.get(at + 12..at + 14) == Some(&[0x88, 0xb5][..]) {
                            got.push(buf[at..].to_vec());
                            // In place: the headers the datapath would write.
                            buf[at - 4..at].copy_from_slice(b"EDGE");
                        }
                    }
                });
                if got.len() == sent.len() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(got, sent, "every frame arrives, in order, whole");
            let back = frame(9);
            assert_eq!(x.send([back.as_slice()]), 0, "queued");
            let mut bufs = vec![0u8; 2048];
            let mut meta = Vec::new();
            for _ in 0..50 {
                let mut slots = [bufs.as_mut_slice()];
                if peer.recv_many(&mut slots, &mut meta, true).map_err(|e| e.to_string())? > 0
                    && meta.first().is_some_and(|r| bufs.get(..r.len) == Some(back.as_slice()))
                {
                    return Ok(());
                }
            }
            Err("what the socket sent never reached the peer".into())
        };
        if let Err(e) = run() {
            panic!("{e}");
        }
    }
}
