//! The flow cache (SPEC §9): every packet after a flow's first takes its cached actions.
//!
//! **Key.** A flow is keyed by the ingress interface and the header fields the simulation reads:
//! MACs, IPv4 addresses, TOS, protocol, fragment position, L4 ports (ICMP type, code and
//! identifier) and TTL; for a VXLAN frame, those of both the outer and the inner frame, and the
//! VNI and flags. TTL is kept as `min(ttl, 17)`: routers only compare it with 1 and at most 16 devices
//! are walked, so every larger value behaves the same. ARP is never cached.
//!
//! **Actions.** The simulation's outputs are turned into one [`Rewrite`] (new MACs, addresses,
//! ports or identifier, TTL decrement, with the IPv4 and L4 checksum deltas computed once) and a
//! list of outputs, each optionally with a VXLAN outer-header template. Applying a flow is a copy,
//! a few stores and incremental checksum updates; no allocation once the transmit buffer is warm.
//!
//! **Validity.** A flow remembers the datapath epoch (bumped by a new snapshot and by every learned
//! MAC or ARP entry), the connection table generation when the simulation saw a mapping missing,
//! and the connection it belongs to. A hit whose dependencies changed is simulated again. A hit
//! also stamps the learned entry of its source MAC, so a talking MAC does not age out.
//!
//! Thread safety: a flow table belongs to one worker and is taken `&mut`; what a flow depends on
//! is read through atomics (the epoch, [`Watch`], [`ConnRef`]), so a hit takes no lock.

use crate::csum::Delta;
use crate::ct::{ConnRef, Watch};
use crate::drop::DropReason;
use crate::iface::IfIdx;
use crate::wire::ipv4::{self, Ipv4Mut, OutOfRange};
use crate::wire::{self, vxlan::EncapTemplate, Frag, Headers, Ipv4, L3, L4};

/// TTL values above this behave alike (see the module header).
pub const TTL_CLASS_MAX: u8 = 17;

/// What a flow is matched by, packed into words so the hit path hashes and compares few bytes:
/// five words for a plain frame; for a VXLAN frame, five for its outer headers, five for its
/// inner headers, and one for the VNI and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowKey {
    Plain([u64; 5]),
    Vxlan([u64; 11]),
}

#[inline]
fn mac_word(m: [u8; 6], hi: u16) -> u64 {
    u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], hi as u8, (hi >> 8) as u8])
}

/// The five words of an IPv4 frame's headers; `None` for ARP and ICMP errors.
#[inline]
fn words(in_if: IfIdx, h: &Headers) -> Option<[u64; 5]> {
    let L3::Ipv4(ip) = &h.l3 else { return None };
    let (l4a, l4b) = match ip.l4 {
        L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => (sport, dport),
        L4::Icmp { typ, .. } if wire::icmp_is_error(typ) => return None,
        L4::Icmp { typ, code, rest } => (u16::from_be_bytes([typ, code]), u16::from_be_bytes([rest[0], rest[1]])),
        L4::None => (0, 0),
    };
    let frag = match ip.frag {
        Frag::Whole => 0u64,
        Frag::First => 1,
        Frag::Later => 2,
    };
    Some([
        in_if.0 as u64 | (ip.proto as u64) << 16 | (ip.ttl.min(TTL_CLASS_MAX) as u64) << 24 | frag << 32,
        mac_word(h.eth_src, l4a),
        mac_word(h.eth_dst, l4b),
        (u32::from(ip.src) as u64) << 32 | u32::from(ip.dst) as u64,
        ip.tos as u64,
    ])
}

/// The fields of five key words, for people.
fn describe_words(w: &[u64]) -> String {
    let mac = |x: u64| {
        let b = x.to_le_bytes();
        (format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5]), u16::from_le_bytes([b[6], b[7]]))
    };
    let (src_mac, a) = mac(w[1]);
    let (dst_mac, b) = mac(w[2]);
    let proto = (w[0] >> 16) as u8;
    let l4 = match proto {
        6 | 17 => format!(" {}:{a} → {b}", if proto == 6 { "tcp" } else { "udp" }),
        1 => format!(" icmp type {} code {} id {b}", a >> 8, a & 0xff),
        p => format!(" proto {p}"),
    };
    let frag = ["", " first-fragment", " later-fragment", ""][((w[0] >> 32) & 3) as usize];
    format!(
        "{src_mac} → {dst_mac} {} → {} tos {:#04x} ttl{}{}{l4}{frag}",
        std::net::Ipv4Addr::from((w[3] >> 32) as u32),
        std::net::Ipv4Addr::from(w[3] as u32),
        w[4] as u8,
        if (w[0] >> 24) as u8 >= TTL_CLASS_MAX { ">=" } else { "=" },
        (w[0] >> 24) as u8,
    )
}

impl FlowKey {
    /// The ingress interface and the matched fields, for `edgepath flows`.
    pub fn describe(&self) -> (IfIdx, String) {
        match self {
            FlowKey::Plain(w) => (IfIdx(w[0] as u16), describe_words(w)),
            FlowKey::Vxlan(w) => (
                IfIdx(w[0] as u16),
                format!("{} vxlan vni {} flags {:#04x} [{}]", describe_words(&w[0..5]), w[10] >> 8, w[10] as u8, describe_words(&w[5..10])),
            ),
        }
    }

    /// The key of an IPv4 frame; `None` for ARP and ICMP errors, which are always simulated.
    #[inline]
    pub fn of(in_if: IfIdx, h: &Headers) -> Option<FlowKey> {
        words(in_if, h).map(FlowKey::Plain)
    }

    /// The key of a VXLAN frame: its outer headers (`outer`), its VXLAN header and its inner
    /// headers (`inner`).
    #[inline]
    pub fn vxlan(in_if: IfIdx, outer: &Headers, v: wire::vxlan::Vxlan, inner: &Headers) -> Option<FlowKey> {
        let (o, i) = (words(in_if, outer)?, words(in_if, inner)?);
        Some(FlowKey::Vxlan([o[0], o[1], o[2], o[3], o[4], i[0], i[1], i[2], i[3], i[4], (v.vni as u64) << 8 | v.flags as u64]))
    }
}

/// The header changes a flow makes, with their checksum deltas precomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rewrite {
    pub eth: Option<([u8; 6], [u8; 6])>,
    /// A new TOS byte (DSCP marking keeps the packet's ECN bits; the key fixes them).
    pub tos: Option<u8>,
    pub src: Option<[u8; 4]>,
    pub dst: Option<[u8; 4]>,
    pub ttl_dec: u8,
    /// Up to two 16-bit stores at offsets from the L4 header (ports, ICMP identifier).
    pub l4_writes: [(u8, u16); 2],
    pub l4_nwrites: u8,
    /// The L4 checksum to update: its offset from the L4 header, and whether UDP's zero rule
    /// applies. Fixed by the key (protocol, fragment position).
    l4_csum: Option<(u8, bool)>,
    ip_delta: Delta,
    l4_delta: Delta,
}

impl Rewrite {
    /// The rewrite that turns `orig` (headers `h0`) into `done` (headers `h1`). `None` when the
    /// two differ in a way a rewrite cannot express (the caller then does not cache).
    pub fn derive(orig: &[u8], h0: &Headers, done: &[u8], h1: &Headers) -> Option<Rewrite> {
        let (L3::Ipv4(a), L3::Ipv4(b)) = (&h0.l3, &h1.l3) else {
            return None;
        };
        if a.hlen != b.hlen || a.total_len != b.total_len || a.proto != b.proto || a.frag != b.frag || b.ttl > a.ttl {
            return None;
        }
        let mut r = Rewrite::default();
        if (h0.eth_src, h0.eth_dst) != (h1.eth_src, h1.eth_dst) {
            r.eth = Some((h1.eth_src, h1.eth_dst));
        }
        let mut ip_d = Delta::ZERO;
        let mut pseudo_d = Delta::ZERO;
        if a.tos != b.tos {
            r.tos = Some(b.tos);
            let first = *orig.get(wire::ETH_LEN)?;
            ip_d = ip_d.word(u16::from_be_bytes([first, a.tos]), u16::from_be_bytes([first, b.tos]));
        }
        if a.src != b.src {
            r.src = Some(b.src.octets());
            let d = Delta::ZERO.dword(u32::from(a.src), u32::from(b.src));
            ip_d = ip_d.plus(d);
            pseudo_d = pseudo_d.plus(d);
        }
        if a.dst != b.dst {
            r.dst = Some(b.dst.octets());
            let d = Delta::ZERO.dword(u32::from(a.dst), u32::from(b.dst));
            ip_d = ip_d.plus(d);
            pseudo_d = pseudo_d.plus(d);
        }
        r.ttl_dec = a.ttl - b.ttl;
        // Lowering TTL by k lowers the TTL/protocol word by k·256 whatever the TTL was.
        ip_d = ip_d.plus(Delta::ZERO.word((r.ttl_dec as u16) << 8, 0));
        let offsets: &[u8] = match a.l4 {
            L4::Tcp { .. } | L4::Udp { .. } => &[0, 2],
            L4::Icmp { typ: wire::ICMP_ECHO_REQUEST | wire::ICMP_ECHO_REPLY, .. } => &[4],
            L4::Icmp { .. } => {
                // ICMP errors are translated through their quote and never cached.
                if orig.get(a.l4_off()..a.end()) != done.get(b.l4_off()..b.end()) {
                    return None;
                }
                &[]
            }
            L4::None => &[],
        };
        let mut l4_d = if matches!(a.l4, L4::Tcp { .. } | L4::Udp { .. }) { pseudo_d } else { Delta::ZERO };
        for &o in offsets {
            let at = a.l4_off() + o as usize;
            let old = u16::from_be_bytes([*orig.get(at)?, *orig.get(at + 1)?]);
            let new = u16::from_be_bytes([*done.get(at)?, *done.get(at + 1)?]);
            if old != new {
                r.l4_writes[r.l4_nwrites as usize] = (o, new);
                r.l4_nwrites += 1;
                l4_d = l4_d.plus(Delta::ZERO.word(old, new));
            }
        }
        r.ip_delta = ip_d;
        r.l4_delta = l4_d;
        r.l4_csum = ipv4::l4_checksum(&a.l4).map(|(c, udp)| (c.start as u8, udp));
        Some(r)
    }

    /// The changes, for people: `set(field=value,…)` and `ttl-N`, or nothing.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((s, d)) = self.eth {
            let m = |m: [u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
            parts.push(format!("eth_src={},eth_dst={}", m(s), m(d)));
        }
        if let Some(t) = self.tos {
            parts.push(format!("tos={t:#04x}"));
        }
        if let Some(s) = self.src {
            parts.push(format!("ip_src={}", std::net::Ipv4Addr::from(s)));
        }
        if let Some(d) = self.dst {
            parts.push(format!("ip_dst={}", std::net::Ipv4Addr::from(d)));
        }
        for &(o, v) in &self.l4_writes[..self.l4_nwrites as usize] {
            parts.push(format!("l4[{o}]={v}"));
        }
        let mut out = if parts.is_empty() { String::new() } else { format!("set({}),", parts.join(",")) };
        if self.ttl_dec > 0 {
            out.push_str(&format!("ttl-{},", self.ttl_dec));
        }
        out
    }

    /// Apply to a frame whose headers parsed as `ip` (a packet of the flow's key): stores,
    /// then the precomputed checksum deltas. The key fixed the headers' shape, so every write is
    /// in range; one that is not is an error, not a write skipped.
    #[inline]
    pub fn apply(&self, b: &mut [u8], ip: &Ipv4) -> Result<(), OutOfRange> {
        if let Some((src, dst)) = self.eth {
            ipv4::put(b, wire::ETH_DST, &dst)?;
            ipv4::put(b, wire::ETH_SRC, &src)?;
        }
        let len = b.len();
        let mut v = Ipv4Mut::new(b.get_mut(wire::ETH_LEN..).ok_or(OutOfRange { at: 0..wire::ETH_LEN, len })?)?;
        if let Some(t) = self.tos {
            v.put_tos(t);
        }
        if let Some(s) = self.src {
            v.put_src(s);
        }
        if let Some(d) = self.dst {
            v.put_dst(d);
        }
        if self.ttl_dec > 0 {
            v.put_ttl_dec(self.ttl_dec);
        }
        v.patch_checksum(self.ip_delta);
        let l4 = v.payload_mut();
        for &(o, val) in self.l4_writes.get(..self.l4_nwrites as usize).unwrap_or_default() {
            ipv4::put(l4, o as usize..o as usize + 2, &val.to_be_bytes())?;
        }
        // TCP and UDP checksums cover the pseudo-header (address changes) and the ports; the
        // ICMP checksum covers the identifier only.
        if let Some((c, udp)) = self.l4_csum {
            ipv4::patch(l4, c as usize..c as usize + 2, self.l4_delta, udp)?;
            if let L4::Icmp { .. } = ip.l4 {
                v.icmp_zero_message((ip.total_len as usize).saturating_sub(ip.hlen));
            }
        }
        Ok(())
    }
}

/// Where a flow sends its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowOut {
    pub iface: IfIdx,
    /// QoS ingress policing of the port it leaves by.
    pub police: Option<crate::qos::BucketId>,
    pub encap: Option<EncapTemplate>,
}

/// A cached flow.
#[derive(Debug)]
pub struct Flow {
    /// The flow acts on the inner frame of a VXLAN frame (it decapsulates).
    pub decap: bool,
    /// QoS egress policing of the port the packets come from.
    pub police_in: Option<crate::qos::BucketId>,
    pub rewrite: Rewrite,
    pub outputs: Vec<FlowOut>,
    /// Why the flow drops, when it has no outputs.
    pub drop: Option<DropReason>,
    pub epoch: u64,
    /// The NAT table's generation when the simulation found a mapping missing.
    pub ct_absent: Option<Watch>,
    /// The NAT connection the flow belongs to.
    pub conn: Option<ConnRef>,
    /// The firewall connection the flow passes by, and the firewall table's generation when the
    /// simulation found none (SPEC §6.2).
    pub fw_conn: Option<ConnRef>,
    pub fw_absent: Option<Watch>,
    /// A deny the flow logs for every packet (§8).
    pub fw_log: Option<crate::sim::firewall::FwLog>,
    /// The learned entry of the packets' source MAC: each hit keeps it from aging out.
    pub mac_seen: Option<crate::learn::MacSeen>,
    /// Packets that took this flow from the cache.
    pub hits: std::sync::atomic::AtomicU64,
}

impl Flow {
    /// A flow that touches no shared state when applied — no connection, no policing, no log —
    /// so any worker can apply it.
    pub fn is_pure(&self) -> bool {
        self.conn.is_none()
            && self.fw_conn.is_none()
            && self.fw_log.is_none()
            && self.police_in.is_none()
            && self.outputs.iter().all(|o| o.police.is_none())
    }
}

/// One worker's flows, at most [`crate::limits::Limits::flows_per_worker`] of them: a new flow
/// in a full table takes the place of the least recently used one (SPEC §9), as OVS's flow
/// limit evicts idle flows rather than flushing. A hit moves its flow to the front of the
/// recency list — a few pointer stores, no allocation (the `lru` crate).
pub struct FlowTable {
    map: lru::LruCache<FlowKey, std::sync::Arc<Flow>, ahash::RandomState>,
    limit: usize,
    /// Flows let go to make room.
    pub evicted: u64,
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable").field("len", &self.map.len()).field("limit", &self.limit).finish()
    }
}

impl Default for FlowTable {
    fn default() -> Self {
        FlowTable::with_limit(crate::limits::Limits::default().flows_per_worker)
    }
}

impl FlowTable {
    pub fn with_limit(limit: usize) -> FlowTable {
        FlowTable { map: lru::LruCache::unbounded_with_hasher(ahash::RandomState::default()), limit: limit.max(1), evicted: 0 }
    }

    /// The flow of `k`, now the most recently used.
    #[inline]
    pub fn get(&mut self, k: &FlowKey) -> Option<&std::sync::Arc<Flow>> {
        self.map.get(k)
    }

    pub fn insert(&mut self, k: FlowKey, f: std::sync::Arc<Flow>) {
        if self.map.len() >= self.limit && !self.map.contains(&k) {
            self.map.pop_lru();
            self.evicted += 1;
        }
        self.map.put(k, f);
    }

    pub fn remove(&mut self, k: &FlowKey) {
        self.map.pop(k);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Every flow, most recently used first.
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &Flow)> {
        self.map.iter().map(|(k, f)| (k, &**f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, ttl: u8, udp: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src, dst, ttl);
        let mut v = Vec::new();
        if udp {
            b.udp(sport, dport).write(&mut v, b"payload!").unwrap();
        } else {
            b.tcp(sport, dport, 1, 1000).write(&mut v, b"payload!").unwrap();
        }
        v
    }

    /// A derived rewrite applied to the original gives exactly what the rewritten packet
    /// looks like when built from scratch (full checksum recomputation).
    #[test]
    fn rewrite_matches_full_recomputation() {
        let mut x: u32 = 12345;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for i in 0..2000 {
            let udp = i % 2 == 0;
            let (s, d, sp, dp) = (rnd().to_be_bytes(), rnd().to_be_bytes(), rnd() as u16, rnd() as u16);
            let ttl = 2 + (rnd() % 250) as u8;
            let orig = frame(s, d, sp, dp, ttl, udp);
            let (s2, d2, sp2) = (if i % 3 == 0 { s } else { rnd().to_be_bytes() }, rnd().to_be_bytes(), rnd() as u16);
            let mut want = frame(s2, d2, sp2, dp, ttl - 1, udp);
            want[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
            let h0 = wire::parse(&orig).unwrap();
            let h1 = wire::parse(&want).unwrap();
            let r = Rewrite::derive(&orig, &h0, &want, &h1).unwrap();
            let mut got = orig.clone();
            let L3::Ipv4(ip) = h0.l3 else { panic!() };
            r.apply(&mut got, &ip).expect("a rewrite of a whole frame is in range");
            // A checksum of 0x0000 and 0xffff are the same number; compare after normalising.
            let norm = |mut v: Vec<u8>, off: usize| {
                if v[off] == 0xff && v[off + 1] == 0xff {
                    v[off] = 0;
                    v[off + 1] = 0;
                }
                v
            };
            let c = if udp { 14 + 20 + 6 } else { 14 + 20 + 16 };
            assert_eq!(norm(norm(got, 24), c), norm(norm(want, 24), c), "case {i}");
        }
    }
}
