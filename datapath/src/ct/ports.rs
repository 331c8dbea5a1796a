//! Which SNAT ports are taken, per translated address, protocol and remote end, so that choosing
//! a port — or learning that none is free — never probes the pool one port at a time.
//!
//! A mapping's reply tuple is `(proto, remote ip, remote port) → (nat ip, nat port)`; two mappings
//! may share a nat port only when their remote ends differ (as Linux's and OVS's SNAT do). So the
//! set of taken ports belongs to one [`PortKey`]. Most keys hold a few ports: a sorted vector of
//! them ([`SPARSE_MAX`] at most, so a search is a binary search and a short walk). A key that
//! holds more gets a two-level bitmap of the whole pool (8 KiB), where the first free port at or
//! after a given one is found with a few word operations; it goes back to a vector when it holds
//! fewer than half of [`SPARSE_MAX`] again. The vector keeps memory at two bytes per mapping for
//! the common case; the bitmap bounds the work for the flood case, and there can be at most one
//! bitmap per [`SPARSE_MAX`] mappings.

use std::collections::HashMap;
use std::net::IpAddr;

use super::CtKey;

/// Taken ports a key keeps in a sorted vector before it gets a bitmap.
pub const SPARSE_MAX: usize = 128;

/// The remote end and translated address a set of ports belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortKey {
    proto: u8,
    remote: IpAddr,
    remote_port: u16,
    nat_ip: IpAddr,
}

impl PortKey {
    /// The key of a reply tuple (`remote → nat ip:port`).
    pub fn of_reply(reply: &CtKey) -> PortKey {
        PortKey { proto: reply.proto, remote: reply.src, remote_port: reply.sport, nat_ip: reply.dst }
    }
}

const WORDS: usize = 65536 / 64;

/// Taken ports of a busy key: a bit per pool port (set: taken; bits past the pool's end are set
/// so they are never chosen), and a bit per word (set: the word is full).
#[derive(Debug, Clone)]
struct Bitmap {
    words: Box<[u64; WORDS]>,
    full: [u64; WORDS / 64],
}

impl Bitmap {
    fn new(span: usize) -> Bitmap {
        let mut b = Bitmap { words: Box::new([0; WORDS]), full: [0; WORDS / 64] };
        for i in span..65536 {
            b.set(i);
        }
        b
    }

    fn set(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] |= 1 << (i % 64);
        if self.words[w] == u64::MAX {
            self.full[w / 64] |= 1 << (w % 64);
        }
    }

    fn clear(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] &= !(1 << (i % 64));
        self.full[w / 64] &= !(1 << (w % 64));
    }

    /// The first clear bit at or after `i`, not wrapping.
    fn next_clear(&self, i: usize) -> Option<usize> {
        let w = i / 64;
        let here = !self.words[w] & (u64::MAX << (i % 64));
        if here != 0 {
            return Some(w * 64 + here.trailing_zeros() as usize);
        }
        // The next word that is not full, through the summary.
        let mut s = (w + 1) / 64;
        let mut mask = u64::MAX << ((w + 1) % 64);
        while s < self.full.len() {
            let open = !self.full[s] & mask;
            if open != 0 {
                let w = s * 64 + open.trailing_zeros() as usize;
                return Some(w * 64 + (!self.words[w]).trailing_zeros() as usize);
            }
            s += 1;
            mask = u64::MAX;
        }
        None
    }

    fn ports(&self, span: usize) -> Vec<u16> {
        (0..span).filter(|&i| self.words[i / 64] & (1 << (i % 64)) != 0).map(|i| i as u16).collect()
    }
}

#[derive(Debug, Clone)]
enum Taken {
    /// Offsets into the pool, sorted.
    Sparse(Vec<u16>),
    Dense {
        bits: Bitmap,
        n: usize,
    },
}

/// The taken ports of every key, for a pool `lo..=hi`.
#[derive(Debug, Clone)]
pub struct PortSets {
    lo: u16,
    span: usize,
    sets: HashMap<PortKey, Taken, ahash::RandomState>,
}

impl PortSets {
    pub fn new((lo, hi): (u16, u16)) -> PortSets {
        PortSets { lo, span: (hi - lo) as usize + 1, sets: HashMap::default() }
    }

    fn offset(&self, port: u16) -> Option<usize> {
        port.checked_sub(self.lo).map(usize::from).filter(|&o| o < self.span)
    }

    /// The first port of the pool at or after `from` (wrapping) that `key` has not taken; `None`
    /// when it has taken them all.
    pub fn first_free(&self, key: &PortKey, from: u16) -> Option<u16> {
        let start = self.offset(from).unwrap_or(0);
        let found = match self.sets.get(key) {
            None => Some(start),
            Some(Taken::Sparse(v)) => {
                let after = |s: usize| {
                    // Walk the run of taken ports that starts at `s`, if any.
                    let mut at = s;
                    let mut i = v.partition_point(|&p| (p as usize) < s);
                    while v.get(i).is_some_and(|&p| p as usize == at) {
                        at += 1;
                        i += 1;
                    }
                    (at < self.span).then_some(at)
                };
                after(start).or_else(|| if v.len() < self.span { after(0) } else { None })
            }
            Some(Taken::Dense { bits, n }) if *n < self.span => bits.next_clear(start).or_else(|| bits.next_clear(0)),
            Some(Taken::Dense { .. }) => None,
        };
        found.map(|o| self.lo + o as u16)
    }

    pub fn take(&mut self, key: PortKey, port: u16) {
        let Some(o) = self.offset(port) else { return };
        let span = self.span;
        let t = self.sets.entry(key).or_insert_with(|| Taken::Sparse(Vec::new()));
        match t {
            Taken::Sparse(v) => {
                if let Err(i) = v.binary_search(&(o as u16)) {
                    v.insert(i, o as u16);
                }
                if v.len() > SPARSE_MAX {
                    let mut bits = Bitmap::new(span);
                    v.iter().for_each(|&p| bits.set(p as usize));
                    *t = Taken::Dense { n: v.len(), bits };
                }
            }
            Taken::Dense { bits, n } => {
                if bits.words[o / 64] & (1 << (o % 64)) == 0 {
                    bits.set(o);
                    *n += 1;
                }
            }
        }
    }

    pub fn release(&mut self, key: &PortKey, port: u16) {
        let Some(o) = self.offset(port) else { return };
        let Some(t) = self.sets.get_mut(key) else { return };
        let empty = match t {
            Taken::Sparse(v) => {
                if let Ok(i) = v.binary_search(&(o as u16)) {
                    v.remove(i);
                }
                v.is_empty()
            }
            Taken::Dense { bits, n } => {
                if bits.words[o / 64] & (1 << (o % 64)) != 0 {
                    bits.clear(o);
                    *n -= 1;
                }
                if *n < SPARSE_MAX / 2 {
                    *t = Taken::Sparse(bits.ports(self.span));
                }
                false
            }
        };
        if empty {
            self.sets.remove(key);
        }
    }

    /// Ports `key` has taken.
    #[cfg(test)]
    fn count(&self, key: &PortKey) -> usize {
        match self.sets.get(key) {
            None => 0,
            Some(Taken::Sparse(v)) => v.len(),
            Some(Taken::Dense { n, .. }) => *n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: PortKey = PortKey {
        proto: 17,
        remote: IpAddr::V4(std::net::Ipv4Addr::new(8, 8, 8, 8)),
        remote_port: 53,
        nat_ip: IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 2)),
    };

    /// The sets agree with a plain model of taken ports through growth into a bitmap and back,
    /// wrapping, and a full pool.
    #[test]
    fn agrees_with_a_model() {
        for (lo, hi) in [(1024u16, 65535u16), (2000, 2300), (60000, 60063)] {
            let mut s = PortSets::new((lo, hi));
            let mut model = std::collections::BTreeSet::new();
            let mut x: u32 = 99;
            let mut rnd = || {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            };
            let span = (hi - lo) as u32 + 1;
            for step in 0..20_000 {
                let from = lo + (rnd() % span) as u16;
                let want = (0..span).map(|i| lo + ((from - lo) as u32 + i).rem_euclid(span) as u16).find(|p| !model.contains(p));
                assert_eq!(s.first_free(&K, from), want, "step {step} pool {lo}-{hi}");
                // Fill up most of the time, release sometimes, so both shapes and a full pool occur.
                if rnd() % 3 != 0 {
                    if let Some(p) = want {
                        s.take(K, p);
                        model.insert(p);
                    }
                } else if let Some(&p) = model.iter().nth((rnd() as usize) % model.len().max(1)) {
                    s.release(&K, p);
                    model.remove(&p);
                }
                assert_eq!(s.count(&K), model.len());
                if model.len() as u32 == span && step % 2 == 0 {
                    for p in model.clone().into_iter().step_by(2) {
                        s.release(&K, p);
                        model.remove(&p);
                    }
                }
            }
        }
    }

    #[test]
    fn a_full_pool_is_known_at_once() {
        let mut s = PortSets::new((1024, 65535));
        for p in 1024..=65535 {
            s.take(K, p);
        }
        assert_eq!(s.first_free(&K, 5000), None);
        s.release(&K, 4000);
        assert_eq!(s.first_free(&K, 5000), Some(4000));
        // Another remote end has the whole pool.
        assert_eq!(s.first_free(&PortKey { remote_port: 54, ..K }, 5000), Some(5000));
    }
}
