//! IPv6 by name (RFC 8200), in the shape of `ipv4.rs`: the header's fields ([`field`]), the walk
//! over extension headers to the upper layer ([`parse`], part of the one fast parse), and
//! [`Ipv6Mut`], a mutable view whose setters keep the upper-layer checksum right or hand back
//! the delta the caller owes it. IPv6 has no header checksum: the hop limit and traffic class
//! change without one.

use std::net::Ipv6Addr;
use std::ops::Range;

use super::ipv4::OutOfRange;
use super::{parse_l4, Frag, IPPROTO_ICMP, L4};
use crate::csum::{self, Delta};
use crate::drop::DropReason;

/// Offsets in the IPv6 header (RFC 8200 §3).
pub mod field {
    use std::ops::Range;
    /// Version (4 bits), traffic class (8), flow label (20).
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
    /// The fixed header.
    pub const LEN: usize = 40;
}

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_NONE: u8 = 59;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// Extension headers walked to find the upper layer; a longer chain is malformed (RFC 8200
/// §4.1 recommends each appear at most once, and one of each of the four is 4).
pub const MAX_EXTENSIONS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6 {
    /// The payload length from the header: the bytes after the fixed header that are IP.
    pub payload_len: u16,
    pub tclass: u8,
    pub hop_limit: u8,
    /// The upper-layer protocol after the extension headers; for a later fragment, the one its
    /// fragment header names (RFC 8200 §4.5: every fragment's says the same), its header being
    /// in the first fragment ([`L4::None`]), as IPv4 keeps a later fragment's protocol.
    pub proto: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Offset of the upper-layer header from the start of the IPv6 header (40 without
    /// extension headers).
    pub l4_rel: u16,
    pub frag: Frag,
    /// The upper-layer header; ICMPv6 is [`L4::Icmp`].
    pub l4: L4,
}

impl Ipv6 {
    /// Offset of the upper-layer header in the frame.
    #[inline]
    pub fn l4_off(&self) -> usize {
        super::ETH_LEN + self.l4_rel as usize
    }

    /// End of the IP packet in the frame.
    #[inline]
    pub fn end(&self) -> usize {
        super::ETH_LEN + field::LEN + self.payload_len as usize
    }

    /// The upper-layer length the pseudo-header carries.
    pub fn l4_len(&self) -> usize {
        self.end() - self.l4_off()
    }
}

/// Parse the IPv6 header at the start of `p` (the bytes after the Ethernet header) and walk its
/// extension headers (hop-by-hop, routing, fragment, destination options) to the upper layer.
#[inline]
pub(super) fn parse(p: &[u8]) -> Result<Ipv6, DropReason> {
    let Some(h) = p.first_chunk::<{ field::LEN }>() else { return Err(DropReason::TruncatedIpv6) };
    if h[0] >> 4 != 6 {
        return Err(DropReason::BadIpv6Version);
    }
    let payload_len = u16::from_be_bytes([h[4], h[5]]);
    // A payload length of 0 with a jumbo option (RFC 2675) has no place on Ethernet: it is
    // simply a packet whose upper layer is then truncated.
    let Some(packet) = p.get(..field::LEN + payload_len as usize) else { return Err(DropReason::TruncatedIpv6) };
    let mut next = h[field::NEXT_HEADER];
    let mut off = field::LEN;
    let mut frag = Frag::Whole;
    let mut walked = 0;
    loop {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let Some(&[nh, len]) = packet.get(off..off + 2) else { return Err(DropReason::BadIpv6Extension) };
                next = nh;
                off += (len as usize + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                let Some(&[nh, _, a, b]) = packet.get(off..off + 4) else { return Err(DropReason::BadIpv6Extension) };
                let offset = u16::from_be_bytes([a, b]) >> 3;
                frag = match (offset, b & 1 != 0) {
                    (0, false) => Frag::Whole,
                    (0, true) => Frag::First,
                    _ => Frag::Later,
                };
                next = nh;
                off += 8;
            }
            _ => break,
        }
        walked += 1;
        if off > packet.len() || walked > MAX_EXTENSIONS {
            return Err(DropReason::BadIpv6Extension);
        }
        if frag == Frag::Later {
            break;
        }
    }
    let seg = packet.get(off..).unwrap_or_default();
    let l4 = match next {
        _ if frag == Frag::Later => L4::None,
        IPPROTO_ICMPV6 => parse_l4(seg, IPPROTO_ICMP)?,
        // ICMP for IPv4 inside IPv6 is no ICMP to edgepath.
        IPPROTO_ICMP | IPPROTO_NONE => L4::None,
        n => parse_l4(seg, n)?,
    };
    Ok(Ipv6 {
        payload_len,
        tclass: (h[0] << 4) | (h[1] >> 4),
        hop_limit: h[field::HOP_LIMIT],
        proto: next,
        src: Ipv6Addr::from(*sub16(h, field::SRC)),
        dst: Ipv6Addr::from(*sub16(h, field::DST)),
        l4_rel: off as u16,
        frag,
        l4,
    })
}

/// The 16 bytes at `r` (an address field) of the fixed header.
#[inline]
fn sub16(h: &[u8; field::LEN], r: Range<usize>) -> &[u8; 16] {
    // The fields are 16 bytes inside the 40-byte header by their constants.
    h[r].first_chunk::<16>().unwrap_or(&[0; 16])
}

/// The sum of the IPv6 pseudo-header (RFC 8200 §8.1) for an upper layer of `len` bytes.
pub fn pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: u32) -> u32 {
    csum::sum(&src.octets()) + csum::sum(&dst.octets()) + (len >> 16) + (len & 0xffff) + proto as u32
}

/// A mutable IPv6 packet: the fixed header at offset 0, the upper layer at `l4`.
pub struct Ipv6Mut<'a> {
    buf: &'a mut [u8],
    l4: usize,
}

impl<'a> Ipv6Mut<'a> {
    /// A view of `buf` (from the IPv6 header on) whose upper layer starts at `l4` (from
    /// [`Ipv6::l4_rel`]), when the fixed header is there.
    pub fn new(buf: &'a mut [u8], l4: usize) -> Result<Ipv6Mut<'a>, OutOfRange> {
        if buf.len() < field::LEN || l4 < field::LEN {
            return Err(OutOfRange { at: 0..field::LEN, len: buf.len() });
        }
        Ok(Ipv6Mut { buf, l4 })
    }

    pub fn hop_limit(&self) -> u8 {
        self.buf[field::HOP_LIMIT]
    }

    /// Decrement the hop limit (the caller checked it is above 1).
    pub fn dec_hop_limit(&mut self) {
        self.buf[field::HOP_LIMIT] = self.buf[field::HOP_LIMIT].saturating_sub(1);
    }

    /// Set the traffic class (DSCP and ECN), keeping version and flow label.
    pub fn set_tclass(&mut self, tc: u8) {
        self.buf[0] = 0x60 | (tc >> 4);
        self.buf[1] = (tc << 4) | (self.buf[1] & 0x0f);
    }

    /// Set the source address; returns the delta owed to the upper layer's checksum.
    pub fn set_src(&mut self, a: Ipv6Addr) -> Delta {
        self.set_addr(field::SRC, a)
    }

    /// Set the destination address; returns the delta owed to the upper layer's checksum.
    pub fn set_dst(&mut self, a: Ipv6Addr) -> Delta {
        self.set_addr(field::DST, a)
    }

    fn set_addr(&mut self, at: Range<usize>, a: Ipv6Addr) -> Delta {
        let mut d = Delta::default();
        for (old, new) in self.buf[at].chunks_exact_mut(2).zip(a.octets().chunks_exact(2)) {
            d = d.word(u16::from_be_bytes([old[0], old[1]]), u16::from_be_bytes([new[0], new[1]]));
            old.copy_from_slice(new);
        }
        d
    }

    /// The upper layer's bytes.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = (field::LEN + u16::from_be_bytes([self.buf[4], self.buf[5]]) as usize).min(self.buf.len());
        self.buf.get_mut(self.l4..end).unwrap_or_default()
    }

    /// Add `d` to the upper layer's checksum at `at` (UDP's zero rule when `udp`).
    pub fn patch_l4(&mut self, at: Range<usize>, d: Delta, udp: bool) -> Result<(), OutOfRange> {
        super::ipv4::patch(self.payload_mut(), at, d, udp)
    }
}

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15]])
}

/// The Ethernet multicast MAC of an IPv6 multicast address (RFC 2464 §7).
pub fn multicast_mac(a: Ipv6Addr) -> [u8; 6] {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{self, L3};
    use etherparse::PacketBuilder;

    const A: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const B: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn udp6() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv6(A, B, 64).udp(1234, 80).write(&mut v, b"hello").unwrap();
        v
    }

    fn ip6(f: &[u8]) -> Ipv6 {
        match wire::parse(f).unwrap().l3 {
            L3::Ipv6(ip) => ip,
            l3 => panic!("{l3:?}"),
        }
    }

    #[test]
    fn parses_udp_and_icmpv6() {
        let ip = ip6(&udp6());
        assert_eq!((ip.src, ip.dst, ip.hop_limit, ip.proto), (Ipv6Addr::from(A), Ipv6Addr::from(B), 64, 17));
        assert_eq!(ip.l4, L4::Udp { sport: 1234, dport: 80 });
        assert_eq!((ip.l4_off(), ip.end()), (54, 54 + 8 + 5));
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6]).ipv6(A, B, 255).icmpv6_echo_request(7, 9).write(&mut v, b"ping").unwrap();
        assert_eq!(ip6(&v).l4, L4::Icmp { typ: 128, code: 0, rest: [0, 7, 0, 9] });
    }

    /// Hop-by-hop options (as MLD reports carry) and a fragment header are walked to the upper
    /// layer; a later fragment has none.
    #[test]
    fn walks_extension_headers() {
        let mut f = udp6();
        // Insert an 8-byte hop-by-hop header (router alert, RFC 2711) before UDP.
        let hbh = [17u8, 0, 5, 2, 0, 0, 1, 0];
        f.splice(54..54, hbh);
        f[20] = IPPROTO_HOPOPTS;
        f[19] += 8;
        let ip = ip6(&f);
        assert_eq!((ip.proto, ip.l4_rel, ip.l4), (17, 48, L4::Udp { sport: 1234, dport: 80 }));
        // A later fragment: offset 8.
        let mut f = udp6();
        f.splice(54..54, [17u8, 0, 0, 8 << 3, 0, 0, 0, 1]);
        f[20] = IPPROTO_FRAGMENT;
        f[19] += 8;
        let ip = ip6(&f);
        // Its protocol is its fragment header's (the key and fip64 read it), its header elsewhere.
        assert_eq!((ip.frag, ip.proto, ip.l4), (Frag::Later, 17, L4::None));
    }

    #[test]
    fn every_truncation_and_bad_chain_is_a_counted_drop() {
        let f = udp6();
        for n in 14..f.len() {
            assert!(wire::parse(&f[..n]).is_err(), "prefix of {n} bytes parsed");
        }
        let mut bad = f.clone();
        bad[14] = 0x45;
        assert_eq!(wire::parse(&bad), Err(DropReason::BadIpv6Version));
        // A chain of destination options that loops past the bound.
        let mut long = f[..54].to_vec();
        long[20] = IPPROTO_DSTOPTS;
        for _ in 0..=MAX_EXTENSIONS {
            long.extend_from_slice(&[IPPROTO_DSTOPTS, 0, 1, 4, 0, 0, 0, 0]);
        }
        let plen = (long.len() - 54) as u16;
        long[18..20].copy_from_slice(&plen.to_be_bytes());
        assert_eq!(wire::parse(&long), Err(DropReason::BadIpv6Extension));
    }

    #[test]
    fn setters_keep_the_checksum_right() {
        let mut f = udp6();
        let ip = ip6(&f);
        let mut v = Ipv6Mut::new(&mut f[14..], ip.l4_rel as usize).unwrap();
        let d = v.set_dst(Ipv6Addr::from(A)).plus(v.set_src(Ipv6Addr::from(B)));
        v.patch_l4(wire::ipv4::l4field::UDP_CHECKSUM, d, true).unwrap();
        v.dec_hop_limit();
        v.set_tclass(0xb9);
        let ip = ip6(&f);
        assert_eq!((ip.src, ip.dst, ip.hop_limit, ip.tclass), (Ipv6Addr::from(B), Ipv6Addr::from(A), 63, 0xb9));
        let seg = &f[ip.l4_off()..ip.end()];
        assert_eq!(csum::fold(csum::sum(seg) + pseudo_header(ip.src, ip.dst, 17, seg.len() as u32)), 0xffff);
        assert_eq!(f[15] & 0x0f, 0, "flow label kept");
    }

    #[test]
    fn addresses_from_macs() {
        let mac = rules::model::Mac([0xfa, 0x16, 0x3e, 0x11, 0x22, 0x33]);
        assert_eq!(rules::compile::link_local(mac), "fe80::f816:3eff:fe11:2233".parse::<Ipv6Addr>().unwrap());
        let a: Ipv6Addr = "2001:db8::1:2:3".parse().unwrap();
        assert_eq!(solicited_node(a), "ff02::1:ff02:3".parse::<Ipv6Addr>().unwrap());
        assert_eq!(multicast_mac(solicited_node(a)), [0x33, 0x33, 0xff, 0x02, 0, 3]);
    }
}
