//! One worker's flows (SPEC §9), found by a hash computed once per frame — so a batch can hash
//! all its frames and prefetch their buckets before it applies any flow (issue 14).
//!
//! **Shape.** Buckets of eight ways, each way a 32-bit tag (from the hash) and the number of a
//! slot that holds the key and the flow (56 bytes, the longer keys boxed; the hash is computed
//! again from the key where a slot is moved or let go, and the use bits lie apart, one per
//! slot). A key may live in one of two buckets chosen by its hash, and is put in the emptier
//! (two choices keep every bucket near the mean: no flow of a million is let go for want of a
//! way at half load), so a lookup reads exactly two cache lines of buckets and never walks a
//! chain, whatever keys an attacker sends: when both are full, an entry of the sixteen goes.
//! The hash is keyed by a seed drawn per table (a folded 64×64 → 128-bit multiply per pair of
//! key words, as foldhash and wyhash do), so colliding keys cannot be computed from outside.
//!
//! **Bound.** At most `limit` flows. A new flow in a full table takes the place of a flow not
//! used recently: a hit sets its slot's use bit, and a clock hand walks the slots, clearing
//! bits, until it finds one clear (second chance, as the Linux page cache ages pages). Exact
//! least-recently-used order would move list pointers in two other flows on every hit — two
//! more cache lines written per packet at a million flows.
//!
//! **Growth.** Buckets double (and every entry is placed again, by its key's hash) when the
//! table is half full, up to what `limit` needs: a small datapath stays small, and the hit path
//! never allocates.

use std::sync::Arc;

use super::{Flow, FlowKey};

const WAYS: usize = 8;

/// Eight ways: `tag << 32 | slot`, 0 when empty (tags are never 0).
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Bucket([u64; WAYS]);

#[derive(Debug)]
struct Slot {
    key: Stored,
    flow: Arc<Flow>,
}

/// A key as the table keeps it: a plain IPv4 frame's five words in place, the longer keys —
/// IPv6 (seven words), VXLAN (outer and inner headers, eleven or thirteen) — boxed at their
/// own length, so the slots of most flows do not carry the room of the largest.
#[derive(Debug)]
enum Stored {
    Plain([u64; 5]),
    Plain6(Box<[u64; 7]>),
    Vxlan(Box<[u64; 11]>),
    Vxlan6(Box<[u64; 13]>),
}

impl Stored {
    fn of(k: FlowKey) -> Stored {
        match k {
            FlowKey::Plain(w) => Stored::Plain(w),
            FlowKey::Plain6(w) => Stored::Plain6(Box::new(w)),
            FlowKey::Vxlan(w) => Stored::Vxlan(Box::new(w)),
            FlowKey::Vxlan6(w) => Stored::Vxlan6(Box::new(w)),
        }
    }

    #[inline]
    fn is(&self, k: &FlowKey) -> bool {
        match (self, k) {
            (Stored::Plain(a), FlowKey::Plain(b)) => a == b,
            (Stored::Plain6(a), FlowKey::Plain6(b)) => **a == *b,
            (Stored::Vxlan(a), FlowKey::Vxlan(b)) => **a == *b,
            (Stored::Vxlan6(a), FlowKey::Vxlan6(b)) => **a == *b,
            _ => false,
        }
    }

    fn key(&self) -> FlowKey {
        match self {
            Stored::Plain(w) => FlowKey::Plain(*w),
            Stored::Plain6(w) => FlowKey::Plain6(**w),
            Stored::Vxlan(w) => FlowKey::Vxlan(**w),
            Stored::Vxlan6(w) => FlowKey::Vxlan6(**w),
        }
    }
}

pub struct FlowTable {
    buckets: Vec<Bucket>,
    slots: Vec<Option<Slot>>,
    /// A bit per slot: used since the clock hand last passed it.
    used: Vec<u64>,
    free: Vec<u32>,
    hand: usize,
    len: usize,
    limit: usize,
    seed: [u64; 2],
    /// Flows let go to make room.
    pub evicted: u64,
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable").field("len", &self.len).field("limit", &self.limit).finish()
    }
}

impl Default for FlowTable {
    fn default() -> Self {
        FlowTable::with_limit(crate::limits::Limits::default().flows_per_worker)
    }
}

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let m = (a as u128).wrapping_mul(b as u128);
    (m as u64) ^ ((m >> 64) as u64)
}

#[inline(always)]
fn tag(h: u64) -> u64 {
    (h >> 32) | 1
}

/// Whether two keys' words are the same: word by word, without a call to `memcmp`.
#[inline(always)]
fn same<const N: usize>(a: &[u64; N], b: &[u64; N]) -> bool {
    a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

/// Ask the CPU for `lines` cache lines from `p` on.
#[inline(always)]
fn prefetch_lines(p: *const u8, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for l in 0..lines {
        // SAFETY: a prefetch reads nothing architecturally and cannot fault, whatever the
        // address; `wrapping_add` makes no claim that it lies in the object.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.wrapping_add(l * 64) as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, lines);
}

/// The slot, and its number, that a way of `homes` with tag `t` names and whose key satisfies
/// `is`.
#[inline(always)]
fn find_in<'a>(
    buckets: &[Bucket],
    slots: &'a [Option<Slot>],
    homes: [usize; 2],
    t: u64,
    is: impl Fn(&Stored) -> bool,
) -> Option<(usize, &'a Slot)> {
    let in_bucket = |bucket: usize| {
        for &e in &buckets.get(bucket)?.0 {
            if e >> 32 != t {
                continue;
            }
            let slot = e as u32 as usize;
            if let Some(Some(s)) = slots.get(slot) {
                if is(&s.key) {
                    return Some((slot, s));
                }
            }
        }
        None
    };
    in_bucket(homes[0]).or_else(|| in_bucket(homes[1]))
}

impl FlowTable {
    const FIRST_BUCKETS: usize = 8;
    /// Flows beyond which the table is taken not to fit in the caches ([`FlowTable::is_deep`]):
    /// 16 384 flows of some 300 bytes with their slots and buckets are several megabytes.
    const DEEP: usize = 16_384;

    pub fn with_limit(limit: usize) -> FlowTable {
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let s = ahash::RandomState::new();
            let mut a = s.build_hasher();
            a.write_u64(0x5eed);
            let mut b = s.build_hasher();
            b.write_u64(0xf10e);
            [a.finish() | 1, b.finish() | 1]
        };
        FlowTable {
            buckets: vec![Bucket::default(); Self::FIRST_BUCKETS],
            slots: Vec::new(),
            used: Vec::new(),
            free: Vec::new(),
            hand: 0,
            len: 0,
            limit: limit.max(1),
            seed,
            evicted: 0,
        }
    }

    /// The hash of `k` in this table.
    #[inline]
    pub fn hash(&self, k: &FlowKey) -> u64 {
        self.hash_words(k.words())
    }

    /// The hash of a key of these words (a plain IPv4 frame's five, in the vector path).
    #[inline(always)]
    pub fn hash_words(&self, w: &[u64]) -> u64 {
        let mut h = self.seed[0] ^ w.len() as u64;
        let mut pairs = w.chunks_exact(2);
        for p in &mut pairs {
            h = fold(p[0] ^ self.seed[1], p[1] ^ h);
        }
        if let [last] = pairs.remainder() {
            h = fold(last ^ self.seed[1], h ^ self.seed[0]);
        }
        h
    }

    #[inline(always)]
    fn homes(&self, h: u64) -> [usize; 2] {
        let mask = self.buckets.len() - 1;
        [h as usize & mask, (h >> 29 ^ h.rotate_left(17)) as usize & mask]
    }

    /// Ask the CPU for the two buckets of hash `h` ahead of the lookup.
    #[inline(always)]
    pub fn prefetch(&self, h: u64) {
        for b in self.homes(h) {
            if let Some(bucket) = self.buckets.get(b) {
                prefetch_lines(bucket as *const Bucket as *const u8, 1);
            }
        }
    }

    /// Whether the table has outgrown the CPU's caches, so that a batch's lookups gain from
    /// fetching slots and flows ahead too ([`FlowTable::prefetch_slot`],
    /// [`FlowTable::prefetch_flow`]); below it those cost instructions and save no wait.
    #[inline]
    pub fn is_deep(&self) -> bool {
        self.len > Self::DEEP
    }

    /// The second step of a batch's lookups, once hash `h`'s buckets were fetched: ask for the
    /// slot their first way of `h`'s tag names (the key, and the pointer to the flow).
    #[inline(always)]
    pub fn prefetch_slot(&self, h: u64) {
        if let Some(s) = self.candidate(h).and_then(|c| self.slots.get(c)) {
            prefetch_lines(s as *const Option<Slot> as *const u8, 2);
        }
    }

    /// The third step, once that slot was fetched: ask for the flow it holds.
    #[inline(always)]
    pub fn prefetch_flow(&self, h: u64) {
        if let Some(Some(s)) = self.candidate(h).and_then(|c| self.slots.get(c)) {
            prefetch_lines(Arc::as_ptr(&s.flow) as *const u8, 3);
        }
    }

    /// The slot the first way of `h`'s tag in its buckets names (the key not compared).
    #[inline(always)]
    fn candidate(&self, h: u64) -> Option<usize> {
        let t = tag(h);
        for b in self.homes(h) {
            for &e in &self.buckets.get(b)?.0 {
                if e >> 32 == t {
                    return Some(e as u32 as usize);
                }
            }
        }
        None
    }

    #[inline]
    fn find(&self, h: u64, k: &FlowKey) -> Option<usize> {
        self.find_by(h, |s| s.is(k))
    }

    /// The slot whose key has hash `h` and satisfies `is`.
    #[inline(always)]
    fn find_by(&self, h: u64, is: impl Fn(&Stored) -> bool) -> Option<usize> {
        find_in(&self.buckets, &self.slots, self.homes(h), tag(h), is).map(|(slot, _)| slot)
    }

    /// The flow of `k` (whose hash is `h`), marked used.
    #[inline]
    pub fn get_hashed(&mut self, h: u64, k: &FlowKey) -> Option<&Arc<Flow>> {
        let slot = self.find(h, k)?;
        self.set_used(slot, true);
        Some(&self.slots.get(slot)?.as_ref()?.flow)
    }

    /// The flow of a plain IPv4 frame's key `w` (whose hash is `h`), marked used: what
    /// [`FlowTable::get_hashed`] finds for `FlowKey::Plain(w)`, without the key's enum.
    #[inline(always)]
    pub fn get_plain(&mut self, h: u64, w: &[u64; 5]) -> Option<&Arc<Flow>> {
        self.get_by(h, |s| matches!(s, Stored::Plain(a) if same(a, w)))
    }

    /// [`FlowTable::get_plain`] of a plain IPv6 frame's key (`FlowKey::Plain6`).
    #[inline(always)]
    pub fn get_plain6(&mut self, h: u64, w: &[u64; 7]) -> Option<&Arc<Flow>> {
        self.get_by(h, |s| matches!(s, Stored::Plain6(a) if same(a, w)))
    }

    /// [`FlowTable::get_plain`] of a VXLAN frame's key with an IPv4 inner frame
    /// (`FlowKey::Vxlan`).
    #[inline(always)]
    pub fn get_vxlan(&mut self, h: u64, w: &[u64; 11]) -> Option<&Arc<Flow>> {
        self.get_by(h, |s| matches!(s, Stored::Vxlan(a) if same(a, w)))
    }

    /// The flow whose key has hash `h` and satisfies `is`, marked used.
    #[inline(always)]
    fn get_by(&mut self, h: u64, is: impl Fn(&Stored) -> bool) -> Option<&Arc<Flow>> {
        // The flow from the slot the key was compared in, not looked up again by its number.
        let (slot, s) = find_in(&self.buckets, &self.slots, self.homes(h), tag(h), is)?;
        if let Some(w) = self.used.get_mut(slot / 64) {
            *w |= 1 << (slot % 64);
        }
        Some(&s.flow)
    }

    /// The flow of `k`, marked used.
    pub fn get(&mut self, k: &FlowKey) -> Option<&Arc<Flow>> {
        self.get_hashed(self.hash(k), k)
    }

    pub fn insert(&mut self, k: FlowKey, flow: Arc<Flow>) {
        let h = self.hash(&k);
        if let Some(slot) = self.find(h, &k) {
            if let Some(Some(s)) = self.slots.get_mut(slot) {
                s.flow = flow;
            }
            return;
        }
        if self.len >= self.limit {
            self.evict_one();
        }
        if self.len * 2 >= self.buckets.len() * WAYS && self.buckets.len() * WAYS < self.limit * 2 {
            self.grow();
        }
        let slot = match self.free.pop() {
            Some(s) => s as usize,
            None => {
                self.slots.push(None);
                if self.slots.len() > self.used.len() * 64 {
                    self.used.push(0);
                }
                self.slots.len() - 1
            }
        };
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(Slot { key: Stored::of(k), flow });
        }
        self.set_used(slot, false);
        self.len += 1;
        self.place(h, slot);
    }

    /// Put slot `slot` (hash `h`) in a free way of one of its buckets; when both are full, an
    /// unused entry of theirs goes (or, all used, the first).
    fn place(&mut self, h: u64, slot: usize) {
        let homes = self.homes(h);
        let ways = homes.iter().flat_map(|&b| (0..WAYS).map(move |w| (b, w)));
        // The emptier of the two buckets (two choices keep the fullest bucket near the mean).
        let fill = |b: usize| self.buckets[b].0.iter().filter(|&&e| e != 0).count();
        let emptier = if fill(homes[1]) < fill(homes[0]) { homes[1] } else { homes[0] };
        let free = (0..WAYS).map(|w| (emptier, w)).find(|&(b, w)| self.buckets[b].0[w] == 0);
        let (b, w) = match free {
            Some(bw) => bw,
            None => {
                let victim = ways.clone().find(|&(b, w)| self.slot_of(b, w).is_some_and(|s| !self.is_used(s))).unwrap_or((homes[0], 0));
                let gone = self.buckets[victim.0].0[victim.1] as u32 as usize;
                self.release(gone);
                self.evicted += 1;
                for (b, w) in ways {
                    let s = self.buckets[b].0[w] as u32 as usize;
                    self.set_used(s, false);
                }
                victim
            }
        };
        self.buckets[b].0[w] = tag(h) << 32 | slot as u64;
    }

    /// The slot number in way `w` of bucket `b`, when it holds one.
    fn slot_of(&self, b: usize, w: usize) -> Option<usize> {
        let e = *self.buckets.get(b)?.0.get(w)?;
        let s = e as u32 as usize;
        (e != 0 && self.slots.get(s).is_some_and(Option::is_some)).then_some(s)
    }

    #[inline]
    fn is_used(&self, slot: usize) -> bool {
        self.used.get(slot / 64).is_some_and(|w| w >> (slot % 64) & 1 != 0)
    }

    #[inline]
    fn set_used(&mut self, slot: usize, on: bool) {
        if let Some(w) = self.used.get_mut(slot / 64) {
            let bit = 1u64 << (slot % 64);
            *w = if on { *w | bit } else { *w & !bit };
        }
    }

    /// Let go of slot `slot`: its way in the buckets and the slot itself.
    fn release(&mut self, slot: usize) {
        let Some(s) = self.slots.get_mut(slot).and_then(Option::take) else { return };
        for b in self.homes(self.hash(&s.key.key())) {
            for e in self.buckets[b].0.iter_mut() {
                if *e != 0 && *e as u32 as usize == slot {
                    *e = 0;
                }
            }
        }
        self.free.push(slot as u32);
        self.len -= 1;
    }

    /// The clock hand: the first slot not used since the hand last passed it goes.
    fn evict_one(&mut self) {
        for _ in 0..2 * self.slots.len() + 1 {
            self.hand = (self.hand + 1) % self.slots.len().max(1);
            match self.slots.get(self.hand) {
                Some(Some(_)) if self.is_used(self.hand) => self.set_used(self.hand, false),
                Some(Some(_)) => {
                    self.release(self.hand);
                    self.evicted += 1;
                    return;
                }
                _ => {}
            }
        }
    }

    /// Twice the buckets, every entry placed again by its stored hash.
    fn grow(&mut self) {
        self.buckets = vec![Bucket::default(); self.buckets.len() * 2];
        for slot in 0..self.slots.len() {
            if let Some(Some(s)) = self.slots.get(slot) {
                let h = self.hash(&s.key.key());
                self.place(h, slot);
            }
        }
    }

    pub fn remove(&mut self, k: &FlowKey) {
        if let Some(slot) = self.find(self.hash(k), k) {
            self.release(slot);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        *self = FlowTable { seed: self.seed, evicted: self.evicted, ..FlowTable::with_limit(self.limit) };
    }

    /// Every flow, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (FlowKey, &Flow)> {
        self.slots.iter().flatten().map(|s| (s.key.key(), &*s.flow))
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
