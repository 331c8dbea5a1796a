//! An AF_PACKET socket bound to one interface, promiscuous, that reports what pnet does not:
//! whether the kernel left a frame's L4 checksum pending (`TP_STATUS_CSUMNOTREADY`, read from
//! `PACKET_AUXDATA`), and whether a frame is one this host sent (`PACKET_OUTGOING`).
//!
//! Frames are read either with `recvmmsg()` into the caller's buffers or from a `TPACKET_V3`
//! ring (`ring.rs`).
//!
//! `unsafe` here is the socket calls of libc; each block says why it is sound.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

// Linux ABI values (linux/if_packet.h, linux/socket.h); stable since 2.6.
pub(super) const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_AUXDATA: libc::c_int = 8;
pub(super) const PACKET_OUTGOING: u8 = 4;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_FANOUT_HASH: libc::c_int = 0;
const PACKET_FANOUT_FLAG_DEFRAG: libc::c_int = 0x8000;
pub(super) const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const ETH_P_ALL: u16 = 0x0003;

#[repr(C)]
#[derive(Clone, Copy)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// A received frame's length and what the kernel said of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Received {
    pub len: usize,
    /// The TCP/UDP checksum is still to be computed (offload).
    pub csum_pending: bool,
    /// A frame this host sent on the interface, not one that arrived.
    pub outgoing: bool,
}

/// One interface's raw socket.
pub struct RawSocket {
    fd: OwnedFd,
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `setsockopt(fd, level, opt, value)`, the value being a plain C struct or integer.
pub(super) fn set_opt<T: Copy>(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: the pointer and length describe `value`, a live plain-data value, for the call.
    check(unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, value as *const T as *const libc::c_void, size_of::<T>() as u32) })
        .map(drop)
}

impl RawSocket {
    pub(super) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The descriptor, to poll.
    pub fn raw_fd(&self) -> libc::c_int {
        self.fd.as_raw_fd()
    }

    /// Open, bind to `name`, turn on promiscuous mode and auxiliary data; reads time out after
    /// `timeout`.
    pub fn open(name: &str, timeout: Duration) -> io::Result<RawSocket> {
        let cname = std::ffi::CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
        // SAFETY: cname is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface {name}")));
        }
        RawSocket::open_index(ifindex, timeout)
    }

    /// A socket on the interface with index `ifindex` — the link netlink reported, not whatever
    /// holds its name by the time the socket is bound.
    pub fn open_index(ifindex: u32, timeout: Duration) -> io::Result<RawSocket> {
        let ifindex = ifindex as libc::c_int;
        // SAFETY: plain socket(2); the returned descriptor is owned by the OwnedFd below.
        let raw = check(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, ETH_P_ALL.to_be() as libc::c_int) })?;
        // SAFETY: raw is a fresh descriptor we own and close exactly once through OwnedFd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value, then filled in.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: the pointer and length describe `sll`, which lives across the call.
        check(unsafe { libc::bind(fd.as_raw_fd(), &sll as *const _ as *const libc::sockaddr, size_of::<libc::sockaddr_ll>() as u32) })?;
        let mreq = PacketMreq { mr_ifindex: ifindex, mr_type: PACKET_MR_PROMISC, mr_alen: 0, mr_address: [0; 8] };
        let one: libc::c_int = 1;
        let tv = libc::timeval { tv_sec: timeout.as_secs() as libc::time_t, tv_usec: timeout.subsec_micros() as libc::suseconds_t };
        set_opt(&fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)?;
        set_opt(&fd, SOL_PACKET, PACKET_AUXDATA, &one)?;
        // Frames this host sends are not wanted back (Linux 4.20+; older kernels refuse the
        // option, and the packet type still marks them). Frames sent go straight to the driver,
        // past the qdisc layer, as a switch's ports do (Linux 3.14+; best effort).
        let _ = set_opt(&fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one);
        let _ = set_opt(&fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one);
        set_opt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        Ok(RawSocket { fd })
    }

    /// Join fanout group `group` of this interface: the kernel spreads the interface's frames over
    /// the group's sockets by a hash of the flow (`PACKET_FANOUT_HASH`; with
    /// `PACKET_FANOUT_FLAG_DEFRAG`, fragments of one datagram are reassembled for the hash and
    /// reach the same socket). The group is made by its first member.
    pub fn join_fanout(&self, group: u16) -> io::Result<()> {
        let arg: libc::c_int = group as libc::c_int | (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16;
        set_opt(&self.fd, SOL_PACKET, PACKET_FANOUT, &arg)
    }

    /// The socket's pending error (`SO_ERROR`), cleared by reading it.
    pub fn take_error(&self) -> Option<io::Error> {
        let mut err: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: err and len are live locals; the kernel writes at most len bytes into err.
        let r = unsafe {
            libc::getsockopt(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ERROR, &mut err as *mut _ as *mut libc::c_void, &mut len)
        };
        (r == 0 && err != 0).then(|| io::Error::from_raw_os_error(err))
    }

    /// Throw away what is queued now (frames a socket received before it joined its fanout
    /// group, which its peers saw too).
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: buf is live for the call and its length is given; MSG_TRUNC only reports.
        while unsafe {
            libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_DONTWAIT | libc::MSG_TRUNC)
        } >= 0
        {}
    }

    /// Receive up to `bufs.len()` frames with one `recvmmsg()`: with `wait`, waiting for the first
    /// only (up to the socket's timeout), else only what is queued. `out` receives one entry per
    /// frame, in `bufs` order; returns how many (0 on timeout or when none was queued).
    pub fn recv_many(&self, bufs: &mut [&mut [u8]], out: &mut Vec<Received>, wait: bool) -> io::Result<usize> {
        const MAX: usize = 64;
        let n = bufs.len().min(MAX);
        out.clear();
        // SAFETY: sockaddr_ll is plain data, for which all zeroes is a valid value.
        let mut from: [libc::sockaddr_ll; MAX] = unsafe { zeroed() };
        // SAFETY: iovec is plain data (a null pointer and a zero length when zeroed); filled in
        // below before the call.
        let mut iov: [libc::iovec; MAX] = unsafe { zeroed() };
        let mut control = [[0u64; 8]; MAX];
        // SAFETY: mmsghdr is plain data (null pointers and zero lengths when zeroed); filled in
        // below before the call.
        let mut msgs: [libc::mmsghdr; MAX] = unsafe { zeroed() };
        for k in 0..n {
            iov[k] = libc::iovec { iov_base: bufs[k].as_mut_ptr() as *mut libc::c_void, iov_len: bufs[k].len() };
            let h = &mut msgs[k].msg_hdr;
            h.msg_name = &mut from[k] as *mut _ as *mut libc::c_void;
            h.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
            h.msg_iov = &mut iov[k];
            h.msg_iovlen = 1;
            h.msg_control = control[k].as_mut_ptr() as *mut libc::c_void;
            h.msg_controllen = size_of::<[u64; 8]>();
        }
        let flags = if wait { libc::MSG_WAITFORONE } else { libc::MSG_DONTWAIT };
        // SAFETY: msgs[..n] point at live locals (from, iov → bufs, control), each sized as
        // stated; recvmmsg writes within those bounds and returns how many it filled.
        let got = unsafe { libc::recvmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), n as u32, flags, std::ptr::null_mut()) };
        if got < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        for k in 0..got as usize {
            let mut csum_pending = false;
            // SAFETY: the control buffer of message k, which recvmmsg filled within its
            // msg_controllen; the cmsg macros stay inside it.
            unsafe {
                let h = &msgs[k].msg_hdr;
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    if (*c).cmsg_level == SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                        let aux = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const TpacketAuxdata);
                        csum_pending = aux.tp_status & TP_STATUS_CSUMNOTREADY != 0;
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
            }
            let len = (msgs[k].msg_len as usize).min(bufs[k].len());
            out.push(Received { len, csum_pending, outgoing: from[k].sll_pkttype == PACKET_OUTGOING });
        }
        Ok(got as usize)
    }

    /// Send `frames` with as few `sendmmsg()` calls as it takes (up to 64 frames a call);
    /// returns how many were refused.
    pub fn send_many<'a>(&self, frames: impl IntoIterator<Item = &'a [u8]>) -> usize {
        const MAX: usize = 64;
        let mut refused = 0;
        let mut frames = frames.into_iter().peekable();
        while frames.peek().is_some() {
            // SAFETY: iovec is plain data (a null pointer and a zero length when zeroed).
            let mut iov: [libc::iovec; MAX] = unsafe { zeroed() };
            // SAFETY: mmsghdr is plain data (null pointers and zero lengths when zeroed).
            let mut msgs: [libc::mmsghdr; MAX] = unsafe { zeroed() };
            let mut n = 0;
            for (f, (v, m)) in frames.by_ref().zip(iov.iter_mut().zip(msgs.iter_mut())) {
                *v = libc::iovec { iov_base: f.as_ptr() as *mut libc::c_void, iov_len: f.len() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                n += 1;
            }
            let mut done = 0;
            while done < n {
                // SAFETY: msgs[done..n] point at iovecs of frames borrowed for `'a`, which
                // outlives the call; the socket is bound, so no address is needed.
                let sent = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs[done..].as_mut_ptr(), (n - done) as u32, 0) };
                if sent <= 0 {
                    // The frame at `done` was refused (too large, link down): count it, go on.
                    tracing::trace!(error = %std::io::Error::last_os_error(), len = iov[done].iov_len, "send refused");
                    refused += 1;
                    done += 1;
                } else {
                    done += sent as usize;
                }
            }
        }
        refused
    }
}

/// Several sockets waited on together with `poll()`.
pub struct PollSet {
    fds: Vec<libc::pollfd>,
}

/// A way to wake a thread out of [`PollSet::wait`] (an eventfd): the supervisor rings it after it
/// gives a worker something to do, so a new interface is taken at once rather than at the next
/// tick.
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain eventfd(2); the returned descriptor is owned by the OwnedFd below.
        let raw = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: raw is a fresh descriptor we own and close exactly once through OwnedFd.
        Ok(Waker { fd: unsafe { OwnedFd::from_raw_fd(raw) } })
    }

    /// Wake the thread polling it.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`, which lives across the call.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
    }

    /// Take the wake-ups that came.
    pub fn clear(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads at most 8 bytes into `n`, which lives across the call.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), &mut n as *mut u64 as *mut libc::c_void, 8) };
    }
}

impl PollSet {
    /// The sockets, then `waker` if any (its entry is past the sockets').
    pub fn new<'a>(socks: impl IntoIterator<Item = &'a RawSocket>, waker: Option<&Waker>) -> PollSet {
        PollSet::of_fds(socks.into_iter().map(|s| s.fd.as_raw_fd()), waker)
    }

    /// [`PollSet::new`] of any descriptors (AF_XDP sockets among them).
    pub fn of_fds(fds: impl IntoIterator<Item = libc::c_int>, waker: Option<&Waker>) -> PollSet {
        let fds = fds.into_iter().chain(waker.map(|w| w.fd.as_raw_fd()));
        PollSet { fds: fds.map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect() }
    }

    /// Wait until a socket has frames or `timeout` passes; returns how many have.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<usize> {
        // SAFETY: fds points at self.fds.len() pollfd entries owned by self; poll writes revents.
        let n = unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, timeout.as_millis() as libc::c_int) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
        }
        Ok(n as usize)
    }

    /// Whether socket `k` had frames at the last wait.
    pub fn ready(&self, k: usize) -> bool {
        self.fds.get(k).is_some_and(|f| f.revents & libc::POLLIN != 0)
    }

    /// Whether socket `k` reported an error at the last wait (its interface went down): until
    /// [`RawSocket::take_error`] reads it, every wait returns at once.
    pub fn failed(&self, k: usize) -> bool {
        self.fds.get(k).is_some_and(|f| f.revents & libc::POLLERR != 0)
    }
}
