//! One tracked connection as the hit path sees it: the per-packet state shared by the table and
//! the flows of both directions ([`ConnLive`], atomics), its timeouts, and the [`Watch`] a flow
//! keeps on a table's generation.

use super::*;

// Progress bits of [`ConnLive::tcp`]. Any protocol: the reply direction was seen. TCP: opening
// until then and until the original direction ACKs (established); closing once a FIN or RST is
// seen, whatever came before.
pub(super) const SEEN_REPLY: u8 = 1;
pub(super) const ESTABLISHED: u8 = 2;
pub(super) const CLOSING: u8 = 4;

/// What changes with every packet of a connection: when it was last seen and how far TCP got.
/// Shared between the table and the flows of both directions; updated with atomics, so workers
/// touch a connection without the state lock.
#[derive(Debug)]
pub struct ConnLive {
    pub(super) proto: u8,
    /// Packet clock, nanoseconds; only moves forward.
    pub(super) last_seen: AtomicU64,
    pub(super) tcp: AtomicU8,
    /// Set when the table lets the connection go; flows holding it are stale from then on.
    pub(super) gone: AtomicBool,
}

impl ConnLive {
    pub(super) fn new(proto: u8, now: Instant) -> ConnLive {
        ConnLive { proto, last_seen: AtomicU64::new(now.0), tcp: AtomicU8::new(0), gone: AtomicBool::new(false) }
    }

    /// An unshared copy (for a scratch copy of the table).
    pub(super) fn copy(&self) -> ConnLive {
        ConnLive {
            proto: self.proto,
            last_seen: AtomicU64::new(self.last_seen.load(Ordering::Relaxed)),
            tcp: AtomicU8::new(self.tcp.load(Ordering::Relaxed)),
            gone: AtomicBool::new(self.gone.load(Ordering::Relaxed)),
        }
    }

    pub(super) fn timeout(&self) -> Duration {
        let tcp = self.tcp.load(Ordering::Relaxed);
        match self.proto {
            IPPROTO_TCP if tcp & (ESTABLISHED | CLOSING) == ESTABLISHED => TCP_ESTABLISHED_TIMEOUT,
            IPPROTO_TCP => TCP_TRANSITORY_TIMEOUT,
            IPPROTO_ICMP | IPPROTO_ICMPV6 => ICMP_TIMEOUT,
            _ => UDP_TIMEOUT,
        }
    }

    pub(super) fn last_seen(&self) -> Instant {
        Instant(self.last_seen.load(Ordering::Relaxed))
    }

    /// Whether the other end ever answered.
    pub(super) fn replied(&self) -> bool {
        self.tcp.load(Ordering::Relaxed) & SEEN_REPLY != 0
    }

    pub(super) fn expired(&self, now: Instant) -> bool {
        now.since(self.last_seen()) > self.timeout()
    }

    /// Record a packet travelling `dir` with TCP `flags` at `now`.
    ///
    /// Writes only what changes: live mode reads the clock once per batch, so most packets find
    /// the connection already stamped, and workers on both directions keep its cache line shared
    /// instead of passing it back and forth.
    pub(super) fn record(&self, dir: Dir, flags: u8, now: Instant) {
        if self.last_seen.load(Ordering::Relaxed) < now.0 {
            self.last_seen.fetch_max(now.0, Ordering::Relaxed);
        }
        let tcp = self.tcp.load(Ordering::Relaxed);
        if self.proto != IPPROTO_TCP {
            // Other protocols only note a reply: a replied connection is not early-dropped.
            if dir == Dir::Reply && tcp & SEEN_REPLY == 0 {
                self.tcp.fetch_or(SEEN_REPLY, Ordering::Relaxed);
            }
            return;
        }
        let bit = if flags & (tcp_flags::FIN | tcp_flags::RST) != 0 {
            CLOSING
        } else if dir == Dir::Reply {
            SEEN_REPLY
        } else if flags & tcp_flags::ACK != 0 && tcp & SEEN_REPLY != 0 {
            ESTABLISHED
        } else {
            0
        };
        if tcp & bit != bit {
            self.tcp.fetch_or(bit, Ordering::Relaxed);
        }
    }
}

/// A tracked connection.
#[derive(Debug)]
pub struct Conn {
    /// The original direction, as the inside host sent it.
    pub orig: CtKey,
    /// The reply direction, as the outside host sends it (to the translated address and port).
    pub reply: CtKey,
    pub kind: SnatKind,
    pub router: RouterRef,
    pub(super) live: Arc<ConnLive>,
}

impl Clone for Conn {
    /// A copy with its own per-packet state, sharing nothing with the original.
    fn clone(&self) -> Conn {
        Conn { orig: self.orig, reply: self.reply, kind: self.kind, router: self.router, live: Arc::new(self.live.copy()) }
    }
}

impl Conn {
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.live.expired(now)
    }

    /// The translated source of the original direction (the original source for an
    /// untranslated connection).
    pub fn nat_src(&self) -> (IpAddr, u16) {
        (self.reply.dst, self.reply.dport)
    }
}

/// A flow's hold on its connection, from one direction: what a worker touches on a cache hit.
#[derive(Debug, Clone)]
pub struct ConnRef {
    pub(super) live: Arc<ConnLive>,
    pub(super) dir: Dir,
}

impl ConnRef {
    /// Record a packet of the connection, without the state lock. False when the connection is
    /// gone or expired: the caller simulates again, and the table removes it then.
    #[inline]
    pub fn touch(&self, flags: u8, now: Instant) -> bool {
        if self.live.gone.load(Ordering::Acquire) || self.live.expired(now) {
            return false;
        }
        self.live.record(self.dir, flags, now);
        true
    }
}

/// A table generation as a flow saw it: still the same while no connection was created since.
#[derive(Debug, Clone)]
pub struct Watch {
    pub(super) cell: Arc<AtomicU64>,
    pub(super) seen: u64,
}

impl Watch {
    #[inline]
    pub fn unchanged(&self) -> bool {
        self.cell.load(Ordering::Acquire) == self.seen
    }
}
