//! QoS policing (SPEC §8): a token bucket per port and direction, on the packet clock.
//!
//! A bucket holds up to `depth` bits and fills at `rate` bit/s; a frame of `n` bytes (the
//! Ethernet frame as received, without FCS) passes when `8·n` bits are there and takes them,
//! else it is dropped (`qos_policed`). So over any window of `w` seconds what passes is at most
//! `rate·w + depth`. Buckets start full. Arithmetic is integer, in bit·nanoseconds, so a replay
//! is exact. Time is an argument: the bucket never reads a clock.
//!
//! Thread safety: [`QosBuckets`] is shared (an `Arc`) by every worker that sees a port's
//! traffic; each bucket has its own mutex, held only for the few instructions of one update.

use std::sync::{Arc, Mutex};

use rules::compile::qos::BucketSpec;
use rules::compile::{PortRef, Topology};

use crate::time::Instant;

const NS: u128 = 1_000_000_000;

/// One token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_bps: u128,
    /// Capacity, in bit·ns (bits × 10⁹).
    depth: u128,
    tokens: u128,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(spec: BucketSpec) -> Self {
        let depth = spec.depth_bits as u128 * NS;
        TokenBucket { rate_bps: spec.rate_bps as u128, depth, tokens: depth, last: None }
    }

    /// Take `bytes` at `now`; false when the frame does not conform.
    #[inline]
    pub fn take(&mut self, bytes: usize, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.0.saturating_sub(last.0) as u128;
            self.tokens = (self.tokens + elapsed * self.rate_bps).min(self.depth);
        }
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
        let cost = bytes as u128 * 8 * NS;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// Which direction of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the VM.
    Egress = 0,
    /// To the VM.
    Ingress = 1,
}

/// A bucket's index in [`QosBuckets`], kept plus one so that a flow's `Option<BucketId>` is
/// four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketId(std::num::NonZeroU32);

impl BucketId {
    pub fn of(port: PortRef, dir: Direction) -> BucketId {
        BucketId(std::num::NonZeroU32::new((port.0 * 2 + dir as u32).saturating_add(1)).unwrap_or(std::num::NonZeroU32::MAX))
    }

    fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// The buckets of every port with a bandwidth limit.
#[derive(Debug, Default)]
pub struct QosBuckets {
    buckets: Vec<Option<Mutex<TokenBucket>>>,
}

impl QosBuckets {
    pub fn for_topology(t: &Topology) -> Arc<QosBuckets> {
        let mut buckets = Vec::with_capacity(t.qos.len() * 2);
        for q in &t.qos {
            buckets.push(q.egress.map(|s| Mutex::new(TokenBucket::new(s))));
            buckets.push(q.ingress.map(|s| Mutex::new(TokenBucket::new(s))));
        }
        Arc::new(QosBuckets { buckets })
    }

    /// The bucket of `port` in `dir`, when it has a limit.
    pub fn bucket(&self, port: PortRef, dir: Direction) -> Option<BucketId> {
        let id = BucketId::of(port, dir);
        self.buckets.get(id.index())?.as_ref().map(|_| id)
    }

    /// Police a frame of `bytes` at `now`.
    #[inline]
    pub fn conforms(&self, id: BucketId, bytes: usize, now: Instant) -> bool {
        match self.buckets.get(id.index()) {
            Some(Some(b)) => match b.lock() {
                Ok(mut b) => b.take(bytes, now),
                Err(poisoned) => poisoned.into_inner().take(bytes, now),
            },
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §8: fed at three times its rate for 5 s, a 10 Mbit/s bucket passes at most
    /// rate × window + depth, and (since it is fed more than it passes) not less than 90 % of it.
    #[test]
    fn a_bucket_holds_the_bound_of_section_8() {
        let spec = BucketSpec { rate_bps: 10_000_000, depth_bits: 8_000_000 };
        let mut b = TokenBucket::new(spec);
        let frame = 1500usize;
        // 30 Mbit/s of 1500-byte frames: one every 400 µs.
        let gap_ns = (frame as u64 * 8) * 1_000_000_000 / 30_000_000;
        let mut passed_bits = 0u64;
        let mut t = 0u64;
        while t < 5_000_000_000 {
            if b.take(frame, Instant(t)) {
                passed_bits += frame as u64 * 8;
            }
            t += gap_ns;
        }
        let bound = spec.rate_bps * 5 + spec.depth_bits;
        assert!(passed_bits <= bound, "{passed_bits} > {bound}");
        assert!(passed_bits * 10 >= bound * 9, "{passed_bits} < 90% of {bound}");
    }

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(BucketSpec { rate_bps: 8_000, depth_bits: 8_000 });
        // A full bucket passes 1000 bytes at once, then nothing until it refills.
        assert!(b.take(1000, Instant(0)));
        assert!(!b.take(1, Instant(0)));
        assert!(!b.take(500, Instant(400_000_000)));
        assert!(b.take(500, Instant(500_000_000)));
    }
}
