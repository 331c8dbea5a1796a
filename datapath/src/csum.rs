//! Internet checksums: the full sum (RFC 1071) and incremental updates (RFC 1624).
//!
//! An incremental update carries a *delta*: the one's-complement sum of `~old + new` over the
//! 16-bit words that changed. Flows precompute their delta at install; applying it is one
//! addition and a fold, `HC' = ~(~HC + delta)` (RFC 1624 eqn. 3).

/// One's-complement sum of `data` as big-endian 16-bit words, not folded or inverted.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // Adding big-endian 32-bit words into 64 bits and folding gives the same one's-complement
    // sum as adding 16-bit words (RFC 1071 §2(C)), in half the additions.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as u64;
    }
    let mut rest = words.remainder().chunks_exact(2);
    for c in &mut rest {
        acc += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = rest.remainder() {
        acc += (*last as u64) << 8;
    }
    fold64(acc)
}

#[inline]
fn fold64(acc: u64) -> u32 {
    // 64 → 33 bits → 17 bits → 16 bits: three folds always suffice.
    let s = (acc & 0xffff_ffff) + (acc >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    ((s & 0xffff) + (s >> 16)) as u32
}

/// Fold a 32-bit sum to 16 bits (branch-free: two folds always suffice).
#[inline]
pub fn fold(s: u32) -> u16 {
    let s = (s & 0xffff) + (s >> 16);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// The checksum field value for data whose sum is `s`.
#[inline]
pub fn finish(s: u32) -> u16 {
    !fold(s)
}

/// An accumulated change to a checksummed region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delta(u32);

impl Delta {
    pub const ZERO: Delta = Delta(0);

    /// A 16-bit word changes from `old` to `new`.
    #[inline]
    pub fn word(self, old: u16, new: u16) -> Delta {
        Delta(fold(self.0 + (!old as u32) + new as u32) as u32)
    }

    /// A 32-bit value (an address) changes.
    #[inline]
    pub fn dword(self, old: u32, new: u32) -> Delta {
        self.word((old >> 16) as u16, (new >> 16) as u16).word(old as u16, new as u16)
    }

    /// Both deltas at once.
    #[inline]
    pub fn plus(self, other: Delta) -> Delta {
        Delta(fold(self.0 + other.0) as u32)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0 || self.0 == 0xffff
    }

    /// Apply to a checksum field value. A delta is folded to 16 bits already, so the sum of
    /// the two needs one fold, not two.
    #[inline]
    pub fn apply(self, csum: u16) -> u16 {
        let s = (!csum) as u32 + self.0;
        !((s & 0xffff) + (s >> 16)) as u16
    }

    /// Apply to a UDP checksum field, where 0 means "no checksum" and stays 0, and a computed
    /// 0 is sent as 0xffff (RFC 768).
    #[inline]
    pub fn apply_udp(self, csum: u16) -> u16 {
        if csum == 0 {
            return 0;
        }
        match self.apply(csum) {
            0 => 0xffff,
            c => c,
        }
    }
}

/// IPv4 pseudo-header sum for TCP/UDP.
#[inline]
pub fn pseudo_header(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u32 {
    sum(&src) + sum(&dst) + proto as u32 + len as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny fixed PRNG so the property tests are reproducible without a dependency.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn word_sum_equals_halfword_sum() {
        let mut rng = XorShift(7);
        for len in 0..64 {
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let mut acc: u64 = 0;
            for c in data.chunks(2) {
                acc += ((c[0] as u64) << 8) | c.get(1).map_or(0, |&b| b as u64);
            }
            assert_eq!(fold(sum(&data)), fold(fold64(acc)), "length {len}");
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        assert_eq!(fold(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])), 0xddf2);
    }

    #[test]
    fn incremental_matches_full_recomputation() {
        let mut rng = XorShift(0x9e3779b97f4a7c15);
        for _ in 0..20_000 {
            let mut data = [0u8; 20];
            for b in data.iter_mut() {
                *b = rng.next() as u8;
            }
            data[10] = 0;
            data[11] = 0;
            let c = finish(sum(&data));
            data[10..12].copy_from_slice(&c.to_be_bytes());
            // Change a random 32-bit field at an even offset other than the checksum.
            let off = [0usize, 4, 12, 16][(rng.next() % 4) as usize];
            let old = u32::from_be_bytes(data[off..off + 4].try_into().unwrap());
            let new = rng.next() as u32;
            data[off..off + 4].copy_from_slice(&new.to_be_bytes());
            let updated = Delta::ZERO.dword(old, new).apply(c);
            data[10] = 0;
            data[11] = 0;
            let full = finish(sum(&data));
            // One's complement has two zeros; both verify.
            assert!(updated == full || (updated ^ full) == 0xffff && (updated == 0 || full == 0), "{updated:04x} vs {full:04x}");
            data[10..12].copy_from_slice(&updated.to_be_bytes());
            assert!(fold(sum(&data)) == 0xffff, "the updated header verifies");
        }
    }
}
