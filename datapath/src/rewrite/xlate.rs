//! What a fip64 flow does to its packets (SPEC §11): the new IP header from a template made at
//! install, the fields that vary per packet (lengths, TTL or hop limit) filled in, and the L4
//! checksum moved to the new pseudo-header by a delta computed once. Cached are whole TCP, UDP
//! and echo packets without IPv4 options or IPv6 extension headers; errors and fragments are
//! translated by the simulation (`wire/xlate.rs`), which these flows reproduce byte for byte
//! (checked at install in debug builds).
//!
//! The frame changes length: 6 → 4 drops 20 bytes in front of the L4 header, 4 → 6 adds 20.
//! [`Rewrite::copy`](super::Rewrite::copy) tells the fast path how to copy the frame, once.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::csum::{self, Delta};
use crate::wire::ipv4::{self, OutOfRange};
use crate::wire::ipv6::IPPROTO_ICMPV6;
use crate::wire::{self, icmpv6, Headers, Ipv4, Ipv6, L4};

/// What changes from IPv6 to IPv4 (the L4 header offset: 14 + 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct To4 {
    eth: ([u8; 6], [u8; 6]),
    tos: u8,
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    ttl_dec: u8,
    /// The sum of the IPv4 header's fixed words (all but length and TTL; checksum zero).
    ip_sum: u32,
    /// TCP and UDP: the delta of the address change. ICMP: the sum of the IPv6 addresses,
    /// which the ICMPv6 checksum covered and the ICMPv4 one does not.
    l4: L4Fix,
}

/// What changes from IPv4 to IPv6 (the L4 header offset: 14 + 40).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct To6 {
    eth: ([u8; 6], [u8; 6]),
    tclass: u8,
    src: [u8; 16],
    dst: [u8; 16],
    next: u8,
    hop_dec: u8,
    l4: L4Fix,
}

/// How the L4 checksum follows the translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L4Fix {
    /// Add `delta` to the checksum at `at` (UDP's zero rule when `udp`); `v6_addrs` is the
    /// IPv6 address sum, for the UDP checksum IPv4 left out.
    Ports { at: u8, udp: bool, delta: Delta, v6_addrs: u32 },
    /// An echo: the type becomes `typ`, and the pseudo-header of the IPv6 side — its address
    /// sum `addrs` plus the length and protocol 58 — leaves (6 → 4) or joins (4 → 6) the checksum.
    Echo { typ: u8, addrs: u32 },
}

impl L4Fix {
    fn derive(l4: &L4, from: u32, to: u32, v6_addrs: u32) -> Option<L4Fix> {
        let delta = Delta::ZERO.word(csum::fold(from), csum::fold(to));
        Some(match *l4 {
            L4::Tcp { .. } => L4Fix::Ports { at: 16, udp: false, delta, v6_addrs },
            L4::Udp { .. } => L4Fix::Ports { at: 6, udp: true, delta, v6_addrs },
            L4::Icmp { typ, .. } => L4Fix::Echo { typ: echo_type(typ)?, addrs: v6_addrs },
            L4::None => return None,
        })
    }

    /// Fix the L4 header `l4` (from the L4 header on, `len` bytes of it): `join` when the IPv6
    /// pseudo-header joins the checksum (4 → 6).
    #[inline]
    fn apply(&self, l4: &mut [u8], len: usize, join: bool) -> Result<(), OutOfRange> {
        match *self {
            L4Fix::Ports { at, udp, delta, v6_addrs } => {
                let at = at as usize;
                if udp && join && ipv4::get16(l4, at..at + 2)? == 0 {
                    // IPv6 requires the UDP checksum one IPv4 left out (RFC 7915 §4.5).
                    let data = l4.get(..len).unwrap_or_default();
                    let c = match csum::finish(v6_addrs + len as u32 + wire::IPPROTO_UDP as u32 + csum::sum(data)) {
                        0 => 0xffff,
                        c => c,
                    };
                    return ipv4::put(l4, at..at + 2, &c.to_be_bytes());
                }
                ipv4::patch(l4, at..at + 2, delta, udp)
            }
            L4Fix::Echo { typ, addrs } => {
                let old = ipv4::get16(l4, 0..2)?;
                let new = u16::from_be_bytes([typ, (old & 0xff) as u8]);
                ipv4::put(l4, 0..2, &new.to_be_bytes())?;
                let pseudo = csum::fold(addrs + len as u32 + IPPROTO_ICMPV6 as u32);
                let d = if join { Delta::ZERO.word(0, pseudo) } else { Delta::ZERO.word(pseudo, 0) };
                ipv4::patch(l4, 2..4, d.word(old, new), false)
            }
        }
    }
}

/// The other family's echo type.
fn echo_type(typ: u8) -> Option<u8> {
    match typ {
        icmpv6::ECHO_REQUEST => Some(wire::ICMP_ECHO_REQUEST),
        icmpv6::ECHO_REPLY => Some(wire::ICMP_ECHO_REPLY),
        wire::ICMP_ECHO_REQUEST => Some(icmpv6::ECHO_REQUEST),
        wire::ICMP_ECHO_REPLY => Some(icmpv6::ECHO_REPLY),
        _ => None,
    }
}

/// Whether a packet is one a translation flow may carry: whole, no options or extensions.
fn cacheable6(a: &Ipv6) -> bool {
    a.frag == wire::Frag::Whole && a.l4_rel as usize == wire::ipv6::field::LEN
}

impl To4 {
    pub(super) fn derive(orig: &[u8], a: &Ipv6, done: &[u8], h1: &Headers, b: &Ipv4) -> Option<To4> {
        if !cacheable6(a)
            || b.hlen != 20
            || b.frag != wire::Frag::Whole
            || done.len() + 20 != a.end().min(orig.len())
            || b.ttl > a.hop_limit
        {
            return None;
        }
        let (s6, d6) = (csum::sum(&a.src.octets()), csum::sum(&a.dst.octets()));
        let (src, dst) = (b.src.octets(), b.dst.octets());
        let l4 = L4Fix::derive(&a.l4, s6 + d6, csum::sum(&src) + csum::sum(&dst), s6 + d6)?;
        let fixed = [0x4500u16, 0, 0, 0x4000, b.proto as u16];
        let ip_sum = fixed.iter().map(|&w| w as u32).sum::<u32>() + (b.tos as u32) + csum::sum(&src) + csum::sum(&dst);
        Some(To4 { eth: (h1.eth_src, h1.eth_dst), tos: b.tos, src, dst, proto: b.proto, ttl_dec: a.hop_limit - b.ttl, ip_sum, l4 })
    }

    /// Write the new headers into `b` (the frame as the fast path copied it: from 20 bytes
    /// into the IPv6 header on, so the L4 header is at 34); `ip` is the packet's IPv6 header.
    #[inline]
    pub(super) fn apply(&self, b: &mut [u8], ip: &Ipv6) -> Result<(), OutOfRange> {
        let len = ip.payload_len as usize;
        let total = (20 + len) as u16;
        let ttl = ip.hop_limit.saturating_sub(self.ttl_dec);
        let mut h = [0u8; 34];
        h[0..6].copy_from_slice(&self.eth.1);
        h[6..12].copy_from_slice(&self.eth.0);
        h[12..14].copy_from_slice(&wire::ETHERTYPE_IPV4.to_be_bytes());
        h[14] = 0x45;
        h[15] = self.tos;
        h[16..18].copy_from_slice(&total.to_be_bytes());
        h[20] = 0x40;
        h[22] = ttl;
        h[23] = self.proto;
        let c = csum::finish(self.ip_sum + total as u32 + ((ttl as u32) << 8));
        h[24..26].copy_from_slice(&c.to_be_bytes());
        h[26..30].copy_from_slice(&self.src);
        h[30..34].copy_from_slice(&self.dst);
        ipv4::put(b, 0..34, &h)?;
        let blen = b.len();
        let l4 = b.get_mut(34..).ok_or(OutOfRange { at: 0..34, len: blen })?;
        self.l4.apply(l4, len, false)
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "translate(ipv4,eth_src={},eth_dst={},ip_src={},ip_dst={},tos={:#04x}),ttl-{},",
            super::mac_text(self.eth.0),
            super::mac_text(self.eth.1),
            Ipv4Addr::from(self.src),
            Ipv4Addr::from(self.dst),
            self.tos,
            self.ttl_dec
        )
    }
}

impl To6 {
    pub(super) fn derive(orig: &[u8], a: &Ipv4, done: &[u8], h1: &Headers, b: &Ipv6) -> Option<To6> {
        if a.hlen != 20
            || a.frag != wire::Frag::Whole
            || !cacheable6(b)
            || done.len() != a.end().min(orig.len()) + 20
            || b.hop_limit > a.ttl
        {
            return None;
        }
        let (src, dst) = (b.src.octets(), b.dst.octets());
        let (s6, d6) = (csum::sum(&src), csum::sum(&dst));
        let l4 = L4Fix::derive(&a.l4, csum::sum(&a.src.octets()) + csum::sum(&a.dst.octets()), s6 + d6, s6 + d6)?;
        Some(To6 { eth: (h1.eth_src, h1.eth_dst), tclass: b.tclass, src, dst, next: b.proto, hop_dec: a.ttl - b.hop_limit, l4 })
    }

    /// Write the new headers into `b` (the frame copied 20 bytes further on, so the L4 header
    /// is at 54); `ip` is the packet's IPv4 header.
    #[inline]
    pub(super) fn apply(&self, b: &mut [u8], ip: &Ipv4) -> Result<(), OutOfRange> {
        let len = (ip.total_len as usize).saturating_sub(ip.hlen);
        let mut h = [0u8; 54];
        h[0..6].copy_from_slice(&self.eth.1);
        h[6..12].copy_from_slice(&self.eth.0);
        h[12..14].copy_from_slice(&wire::ETHERTYPE_IPV6.to_be_bytes());
        h[14] = 0x60 | self.tclass >> 4;
        h[15] = self.tclass << 4;
        h[18..20].copy_from_slice(&(len as u16).to_be_bytes());
        h[20] = self.next;
        h[21] = ip.ttl.saturating_sub(self.hop_dec);
        h[22..38].copy_from_slice(&self.src);
        h[38..54].copy_from_slice(&self.dst);
        ipv4::put(b, 0..54, &h)?;
        let blen = b.len();
        let l4 = b.get_mut(54..).ok_or(OutOfRange { at: 0..54, len: blen })?;
        self.l4.apply(l4, len, true)
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "translate(ipv6,eth_src={},eth_dst={},ip_src={},ip_dst={},tclass={:#04x}),hop_limit-{},",
            super::mac_text(self.eth.0),
            super::mac_text(self.eth.1),
            Ipv6Addr::from(self.src),
            Ipv6Addr::from(self.dst),
            self.tclass,
            self.hop_dec
        )
    }
}
