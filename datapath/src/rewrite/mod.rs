//! What a flow does to the headers of its packets (SPEC §9): one [`Rewrite`] derived at
//! install from the packet and what the simulation made of it, applied to every later packet
//! with stores and the checksum deltas computed once. IPv4 ([`Rewrite4`]): MACs, addresses,
//! ports or echo identifier, TOS, TTL; IPv6 ([`Rewrite6`], routed untranslated, SPEC §10.2):
//! MACs, traffic class, hop limit — IPv6 has no header checksum and nothing the pseudo-header
//! covers changes, so there is no delta to carry.

mod xlate;

use crate::csum::Delta;
use crate::wire::ipv4::{self, Ipv4Mut, OutOfRange};
use crate::wire::ipv6::{self, Ipv6Mut};
use crate::wire::{self, Headers, Ipv4, Ipv6, L3, L4};

/// The header changes of a flow. A translation's header template is boxed: fip64 flows are
/// few, and every other flow would carry its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    V4(Rewrite4),
    V6(Rewrite6),
    /// fip64, IPv6 → IPv4 (SPEC §11).
    To4(Box<xlate::To4>),
    /// fip64, IPv4 → IPv6.
    To6(Box<xlate::To6>),
}

impl Default for Rewrite {
    fn default() -> Self {
        Rewrite::V4(Rewrite4::default())
    }
}

impl Rewrite {
    /// The rewrite that turns `orig` (headers `h0`) into `done` (headers `h1`). `None` when the
    /// two differ in a way a rewrite cannot express (the caller then does not cache).
    pub fn derive(orig: &[u8], h0: &Headers, done: &[u8], h1: &Headers) -> Option<Rewrite> {
        match (&h0.l3, &h1.l3) {
            (L3::Ipv4(a), L3::Ipv4(b)) => Rewrite4::derive(orig, h0, a, done, h1, b).map(Rewrite::V4),
            (L3::Ipv6(a), L3::Ipv6(b)) => Rewrite6::derive(orig, h0, a, done, h1, b).map(Rewrite::V6),
            (L3::Ipv6(a), L3::Ipv4(b)) => xlate::To4::derive(orig, a, done, h1, b).map(|r| Rewrite::To4(Box::new(r))),
            (L3::Ipv4(a), L3::Ipv6(b)) => xlate::To6::derive(orig, a, done, h1, b).map(|r| Rewrite::To6(Box::new(r))),
            _ => None,
        }
    }

    /// How the fast path copies a frame (`len` bytes, headers `h`) for this rewrite: the bytes
    /// it copies, and the room it leaves before the copy. A translation changes the IP header's
    /// length by 20 and ends the frame where the IP packet ends (`xlate.rs`, as the simulation
    /// builds it); the rest keep the frame as it is.
    #[inline]
    pub fn copy(&self, h: &Headers, len: usize) -> (std::ops::Range<usize>, usize) {
        match (self, &h.l3) {
            (_, L3::Ipv6(ip)) => self.copy6(ip, len),
            (_, L3::Ipv4(ip)) => self.copy4(ip, len),
            _ => (0..len, 0),
        }
    }

    /// [`Rewrite::copy`] of an IPv4 frame whose IPv4 headers are `ip`.
    #[inline(always)]
    pub fn copy4(&self, ip: &Ipv4, len: usize) -> (std::ops::Range<usize>, usize) {
        match self {
            Rewrite::To6(_) => (0..ip.end().min(len), 20),
            _ => (0..len, 0),
        }
    }

    /// Apply to a frame whose headers are `h` (a packet of the flow's key): stores, then the
    /// precomputed checksum deltas. The key fixed the headers' shape, so every write is in
    /// range; one that is not is an error, not a write skipped. A rewrite of the other family
    /// than the frame's is an error too.
    #[inline]
    pub fn apply(&self, b: &mut [u8], h: &Headers) -> Result<(), OutOfRange> {
        match (self, &h.l3) {
            (_, L3::Ipv4(ip)) => self.apply4(b, ip),
            (_, L3::Ipv6(ip)) => self.apply6(b, ip),
            _ => Err(OutOfRange { at: 0..wire::ETH_LEN, len: b.len() }),
        }
    }

    /// [`Rewrite::copy`] of an IPv6 frame whose IPv6 headers are `ip`.
    #[inline(always)]
    pub fn copy6(&self, ip: &Ipv6, len: usize) -> (std::ops::Range<usize>, usize) {
        match self {
            Rewrite::To4(_) => (20..ip.end().min(len).max(20), 0),
            _ => (0..len, 0),
        }
    }

    /// [`Rewrite::apply`] to an IPv6 frame whose IPv6 headers are `ip`.
    #[inline(always)]
    pub fn apply6(&self, b: &mut [u8], ip: &Ipv6) -> Result<(), OutOfRange> {
        match self {
            Rewrite::V6(r) => r.apply(b, ip),
            Rewrite::To4(r) => r.apply(b, ip),
            _ => Err(OutOfRange { at: 0..wire::ETH_LEN, len: b.len() }),
        }
    }

    /// [`Rewrite::apply`] to an IPv4 frame whose IPv4 headers are `ip`.
    #[inline(always)]
    pub fn apply4(&self, b: &mut [u8], ip: &Ipv4) -> Result<(), OutOfRange> {
        match self {
            Rewrite::V4(r) => r.apply(b, ip),
            Rewrite::To6(r) => r.apply(b, ip),
            _ => Err(OutOfRange { at: 0..wire::ETH_LEN, len: b.len() }),
        }
    }

    /// The changes, for people: `set(field=value,…)` and `ttl-N`, or nothing.
    pub fn describe(&self) -> String {
        match self {
            Rewrite::V4(r) => r.describe(),
            Rewrite::V6(r) => r.describe(),
            Rewrite::To4(r) => r.describe(),
            Rewrite::To6(r) => r.describe(),
        }
    }
}

/// The header changes of an IPv6 flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rewrite6 {
    pub eth: Option<Macs>,
    /// A new traffic class (DSCP marking keeps the ECN bits; the key fixes them).
    pub tclass: Option<u8>,
    pub hop_limit_dec: u8,
}

impl Rewrite6 {
    fn derive(orig: &[u8], h0: &Headers, a: &Ipv6, done: &[u8], h1: &Headers, b: &Ipv6) -> Option<Rewrite6> {
        // Anything past the hop limit and traffic class must be the same bytes.
        let same = |r: std::ops::Range<usize>| orig.get(r.clone()).is_some() && orig.get(r.clone()) == done.get(r);
        let fixed = wire::ETH_LEN + ipv6::field::PAYLOAD_LEN.start;
        let hop = wire::ETH_LEN + ipv6::field::HOP_LIMIT;
        if orig.len() != done.len() || b.hop_limit > a.hop_limit || !same(fixed..hop) || !same(hop + 1..orig.len()) {
            return None;
        }
        // The flow label (the low 20 bits of the first word) is kept.
        if orig.get(wire::ETH_LEN + 1).map(|x| x & 0x0f) != done.get(wire::ETH_LEN + 1).map(|x| x & 0x0f)
            || orig.get(wire::ETH_LEN + 2..wire::ETH_LEN + 4) != done.get(wire::ETH_LEN + 2..wire::ETH_LEN + 4)
        {
            return None;
        }
        Some(Rewrite6 {
            eth: ((h0.eth_src, h0.eth_dst) != (h1.eth_src, h1.eth_dst)).then(|| Macs::new(h1.eth_src, h1.eth_dst)),
            tclass: (a.tclass != b.tclass).then_some(b.tclass),
            hop_limit_dec: a.hop_limit - b.hop_limit,
        })
    }

    #[inline]
    fn apply(&self, b: &mut [u8], ip: &Ipv6) -> Result<(), OutOfRange> {
        self.apply_at(b, ip.l4_rel)
    }

    /// [`Rewrite6::apply`] by where the upper layer begins (all it reads of the headers).
    #[inline(always)]
    pub fn apply_at(&self, b: &mut [u8], l4_rel: u16) -> Result<(), OutOfRange> {
        put_eth(b, self.eth)?;
        let mut v = Ipv6Mut::new(l3_mut(b)?, l4_rel as usize)?;
        if let Some(tc) = self.tclass {
            v.set_tclass(tc);
        }
        for _ in 0..self.hop_limit_dec {
            v.dec_hop_limit();
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let fields = self.tclass.map(|t| format!("tclass={t:#04x}")).into_iter().collect();
        render(self.eth, fields, "hop_limit", self.hop_limit_dec)
    }
}

/// Store a rewrite's new MACs, when it has them.
#[inline]
fn put_eth(b: &mut [u8], eth: Option<Macs>) -> Result<(), OutOfRange> {
    if let Some(m) = eth {
        let len = b.len();
        *b.first_chunk_mut::<12>().ok_or(OutOfRange { at: 0..12, len })? = m.0;
    }
    Ok(())
}

/// A frame's new MACs as its Ethernet header holds them, destination then source: stored with
/// one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Macs([u8; 12]);

impl Macs {
    pub fn new(src: [u8; 6], dst: [u8; 6]) -> Macs {
        let mut m = [0; 12];
        m[wire::ETH_DST].copy_from_slice(&dst);
        m[wire::ETH_SRC].copy_from_slice(&src);
        Macs(m)
    }

    pub fn src(&self) -> [u8; 6] {
        let m = &self.0;
        [m[6], m[7], m[8], m[9], m[10], m[11]]
    }

    pub fn dst(&self) -> [u8; 6] {
        let m = &self.0;
        [m[0], m[1], m[2], m[3], m[4], m[5]]
    }
}

/// The bytes after the Ethernet header.
#[inline]
fn l3_mut(b: &mut [u8]) -> Result<&mut [u8], OutOfRange> {
    let len = b.len();
    b.get_mut(wire::ETH_LEN..).ok_or(OutOfRange { at: 0..wire::ETH_LEN, len })
}

/// A MAC as `flows` writes it.
fn mac_text(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// How `flows` shows a rewrite: `set(eth_src=…,eth_dst=…,fields…),` then `limit-N,` for a
/// TTL or hop limit lowered by N; nothing for a rewrite that changes nothing.
fn render(eth: Option<Macs>, fields: Vec<String>, limit: &str, dec: u8) -> String {
    let parts: Vec<String> =
        eth.map(|m| format!("eth_src={},eth_dst={}", mac_text(m.src()), mac_text(m.dst()))).into_iter().chain(fields).collect();
    let mut out = if parts.is_empty() { String::new() } else { format!("set({}),", parts.join(",")) };
    if dec > 0 {
        out.push_str(&format!("{limit}-{dec},"));
    }
    out
}

/// The header changes an IPv4 flow makes, with their checksum deltas precomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rewrite4 {
    pub eth: Option<Macs>,
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

impl Rewrite4 {
    fn derive(orig: &[u8], h0: &Headers, a: &Ipv4, done: &[u8], h1: &Headers, b: &Ipv4) -> Option<Rewrite4> {
        if a.hlen != b.hlen || a.total_len != b.total_len || a.proto != b.proto || a.frag != b.frag || b.ttl > a.ttl {
            return None;
        }
        let mut r = Rewrite4::default();
        if (h0.eth_src, h0.eth_dst) != (h1.eth_src, h1.eth_dst) {
            r.eth = Some(Macs::new(h1.eth_src, h1.eth_dst));
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

    fn describe(&self) -> String {
        let mut parts = Vec::new();
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
        render(self.eth, parts, "ttl", self.ttl_dec)
    }

    #[inline]
    fn apply(&self, b: &mut [u8], ip: &Ipv4) -> Result<(), OutOfRange> {
        let icmp = matches!(ip.l4, L4::Icmp { .. }).then(|| (ip.total_len as usize).saturating_sub(ip.hlen));
        self.apply_bytes(b, icmp)
    }

    /// [`Rewrite4::apply`] by the frame's bytes alone (the IPv4 header's length is in them):
    /// `icmp` is an ICMP message's length, `None` for other protocols. The Ethernet and fixed
    /// IPv4 headers are checked in the frame once and then written as arrays, so the stores
    /// need no more checks.
    #[inline(always)]
    pub fn apply_bytes(&self, b: &mut [u8], icmp: Option<usize>) -> Result<(), OutOfRange> {
        let len = b.len();
        let short = |at: std::ops::Range<usize>| OutOfRange { at, len };
        let (eth, l3) = b.split_first_chunk_mut::<{ wire::ETH_LEN }>().ok_or_else(|| short(0..wire::ETH_LEN))?;
        if let (Some(m), Some(macs)) = (self.eth, eth.first_chunk_mut::<12>()) {
            *macs = m.0;
        }
        let hlen = l3.first().map_or(0, |&v| (v & 0x0f) as usize * 4);
        if hlen < ipv4::field::MIN_LEN || hlen > l3.len() {
            return Err(short(wire::ETH_LEN..wire::ETH_LEN + hlen.max(ipv4::field::MIN_LEN)));
        }
        let (hdr, l4) = l3.split_at_mut(hlen);
        let Some(ip) = hdr.first_chunk_mut::<{ ipv4::field::MIN_LEN }>() else { return Err(short(0..len + 1)) };
        if let Some(t) = self.tos {
            ip[ipv4::field::TOS] = t;
        }
        if let Some(s) = self.src {
            ip[ipv4::field::SRC].copy_from_slice(&s);
        }
        if let Some(d) = self.dst {
            ip[ipv4::field::DST].copy_from_slice(&d);
        }
        ip[ipv4::field::TTL] = ip[ipv4::field::TTL].wrapping_sub(self.ttl_dec);
        let c = &mut ip[ipv4::field::CHECKSUM];
        let sum = self.ip_delta.apply(u16::from_be_bytes([c[0], c[1]]));
        c.copy_from_slice(&sum.to_be_bytes());
        for &(o, val) in self.l4_writes.get(..self.l4_nwrites as usize).unwrap_or_default() {
            ipv4::put(l4, o as usize..o as usize + 2, &val.to_be_bytes())?;
        }
        // TCP and UDP checksums cover the pseudo-header (address changes) and the ports; the
        // ICMP checksum covers the identifier only.
        if let Some((c, udp)) = self.l4_csum {
            ipv4::patch(l4, c as usize..c as usize + 2, self.l4_delta, udp)?;
            if let Some(len) = icmp {
                let mut v = Ipv4Mut::new(l3)?;
                v.icmp_zero_message(len);
            }
        }
        Ok(())
    }
}
