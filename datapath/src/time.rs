//! The packet clock. Every timer reads an [`Instant`] handed in by its caller: replay passes
//! the pcap timestamp of the packet being processed, live mode reads the clock once per batch.
//! Nothing in the datapath reads a clock itself, so a replay is deterministic.

use std::time::Duration;

/// Nanoseconds on the packet clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    pub fn from_duration(d: Duration) -> Instant {
        Instant(d.as_nanos().min(u64::MAX as u128) as u64)
    }

    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.as_nanos().min(u64::MAX as u128) as u64))
    }

    /// The wall clock as a packet clock (Unix time). Only live I/O reads it, once per poll, and
    /// hands it in; the datapath never calls it.
    pub fn wall() -> Instant {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Instant::from_duration(since_epoch)
    }

    /// Time since `earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}
