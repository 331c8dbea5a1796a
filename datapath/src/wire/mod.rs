//! Wire formats, read through borrowed views and built from owned representations.
//!
//! [`parse`] is the one header parser of the datapath: a hand-written view over Ethernet, ARP,
//! IPv4 and the first L4 header, checking every length once and returning plain values and
//! offsets ([`Headers`]). It never panics and never allocates; a malformed frame comes back as
//! the [`DropReason`] it is counted under. It does all of SPEC §5.1's checks, the IPv4 header
//! checksum included, so one pass serves both validation and the flow key — and the slow path
//! uses the same parser, because two parsers could disagree on what is malformed and a cached
//! flow would then treat a frame differently from a fresh simulation. Measured with
//! criterion on the development machine (`cargo bench -p edgepath-bench -- parse`): 15 ns for
//! Ethernet/IPv4/UDP, against 8 ns for etherparse's `SlicedPacket`, which verifies no checksum
//! and builds no key; etherparse's full `PacketHeaders` is far slower (STYLE.md). etherparse
//! builds packets in the tests and the generator.
//!
//! [`tcp_udp4()`] (`tcp_udp4.rs`) is no second parser but a door in front of this one, for the
//! frames most traffic is.

pub mod arp;
pub mod describe;
pub mod gso;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod tcp_udp4;
pub mod vxlan;
pub mod xlate;

use std::net::Ipv4Addr;

pub use ipv6::Ipv6;
pub use tcp_udp4::{tcp_udp4, TcpUdp4};

use crate::csum;
use crate::drop::DropReason;

pub const ETH_LEN: usize = 14;
/// The Ethernet header's destination and source MACs.
pub const ETH_DST: std::ops::Range<usize> = 0..6;
pub const ETH_SRC: std::ops::Range<usize> = 6..12;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// Whether a MAC is broadcast or multicast (the I/G bit).
#[inline]
pub fn is_multicast(mac: [u8; 6]) -> bool {
    mac[0] & 1 == 1
}

/// Parsed headers of one frame: values and offsets into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub l3: L3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    Arp(Arp),
    Ipv4(Ipv4),
    Ipv6(Ipv6),
    /// Another ethertype: bridged as it is between ports without port security (SPEC §10.1).
    Other(u16),
}

/// An Ethernet/IPv4 ARP packet (RFC 826).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sha: [u8; 6],
    pub spa: Ipv4Addr,
    pub tha: [u8; 6],
    pub tpa: Ipv4Addr,
}

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

/// Where a packet sits in a fragmented datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frag {
    /// Not fragmented.
    Whole,
    /// The first fragment: carries the L4 header.
    First,
    /// A later fragment: no L4 header.
    Later,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4 {
    /// Header length in bytes.
    pub hlen: usize,
    /// Total length from the header; bytes past it (Ethernet padding) are not IP.
    pub total_len: u16,
    pub tos: u8,
    pub ttl: u8,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub frag: Frag,
    pub l4: L4,
}

impl Ipv4 {
    /// Offset of the L4 header in the frame.
    #[inline]
    pub fn l4_off(&self) -> usize {
        ETH_LEN + self.hlen
    }

    /// End of the IP datagram in the frame.
    #[inline]
    pub fn end(&self) -> usize {
        ETH_LEN + self.total_len as usize
    }
}

/// The first L4 header, when the packet carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// `rest` is the second 32-bit word: id and sequence for echo messages.
    Icmp {
        typ: u8,
        code: u8,
        rest: [u8; 4],
    },
    /// Another protocol, or a later fragment.
    None,
}

impl L4 {
    /// The TCP flags, 0 for anything but TCP.
    #[inline]
    pub fn tcp_flags(&self) -> u8 {
        match self {
            L4::Tcp { flags, .. } => *flags,
            _ => 0,
        }
    }
}

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;

/// Whether an ICMP type is an error message (RFC 792, RFC 1812 §4.3.2.7 never answers these).
pub fn icmp_is_error(typ: u8) -> bool {
    matches!(typ, 3 | 4 | 5 | 11 | 12)
}

/// TCP flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const CWR: u8 = 0x80;
}

/// Parse a frame's headers. Checks: Ethernet length, no VLAN tag, ARP shape, IPv4 version, IHL,
/// total length within the frame, header checksum, and the L4 header within the datagram; for
/// IPv6, version, payload length within the frame and the extension headers up to the upper
/// layer. Other ethertypes are [`L3::Other`].
#[inline]
pub fn parse(frame: &[u8]) -> Result<Headers, DropReason> {
    let Some(eth) = frame.first_chunk::<ETH_LEN>() else { return Err(DropReason::TruncatedEthernet) };
    let eth_dst = [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]];
    let eth_src = [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]];
    let rest = &frame[ETH_LEN..];
    // Each arm builds its whole result: the IPv4 one then writes no more than IPv4's bytes
    // (one `Headers` built after the match copied the largest variant, IPv6's, every time).
    let h = |l3| Ok(Headers { eth_dst, eth_src, l3 });
    match u16::from_be_bytes([eth[12], eth[13]]) {
        ETHERTYPE_IPV4 => h(L3::Ipv4(parse_ipv4(rest)?)),
        ETHERTYPE_ARP => h(L3::Arp(parse_arp(rest).ok_or(DropReason::MalformedArp)?)),
        ETHERTYPE_IPV6 => h(L3::Ipv6(ipv6::parse(rest)?)),
        0x8100 | 0x88a8 | 0x9100 => Err(DropReason::VlanTagged),
        other => h(L3::Other(other)),
    }
}

/// [`parse`] of an IPv4 frame, inlined where it is called: its IPv4 headers, or why it is
/// malformed; `None` when the frame is not IPv4 at all. The vector path's express lane reads
/// the frames of a batch with it (and their MACs from the bytes), and keeps the result in
/// registers.
#[inline(always)]
pub fn parse_ipv4_frame(frame: &[u8]) -> Option<Result<Ipv4, DropReason>> {
    let eth = frame.first_chunk::<ETH_LEN>()?;
    if u16::from_be_bytes([eth[12], eth[13]]) != ETHERTYPE_IPV4 {
        return None;
    }
    Some(parse_ipv4(&frame[ETH_LEN..]))
}

/// [`parse`] of an IPv6 frame, as [`parse_ipv4_frame`] of an IPv4 one: its IPv6 headers, or why
/// it is malformed; `None` when the frame is not IPv6.
#[inline(always)]
pub fn parse_ipv6_frame(frame: &[u8]) -> Option<Result<Ipv6, DropReason>> {
    let eth = frame.first_chunk::<ETH_LEN>()?;
    if u16::from_be_bytes([eth[12], eth[13]]) != ETHERTYPE_IPV6 {
        return None;
    }
    Some(ipv6::parse(&frame[ETH_LEN..]))
}

fn parse_arp(p: &[u8]) -> Option<Arp> {
    let a = p.first_chunk::<28>()?;
    if a[0..2] != [0, 1] || a[2..4] != [0x08, 0x00] || a[4] != 6 || a[5] != 4 {
        return None;
    }
    Some(Arp {
        op: u16::from_be_bytes([a[6], a[7]]),
        sha: [a[8], a[9], a[10], a[11], a[12], a[13]],
        spa: Ipv4Addr::new(a[14], a[15], a[16], a[17]),
        tha: [a[18], a[19], a[20], a[21], a[22], a[23]],
        tpa: Ipv4Addr::new(a[24], a[25], a[26], a[27]),
    })
}

/// Parse the IPv4 header at the start of `p` (the bytes after the Ethernet header).
#[inline(always)]
fn parse_ipv4(p: &[u8]) -> Result<Ipv4, DropReason> {
    let Some(hdr) = p.first_chunk::<20>() else { return Err(DropReason::TruncatedIpv4) };
    if hdr[0] >> 4 != 4 {
        return Err(DropReason::BadIpv4Version);
    }
    let hlen = ((hdr[0] & 0x0f) as usize) * 4;
    let total_len = u16::from_be_bytes([hdr[2], hdr[3]]);
    if hlen < 20 || hlen > total_len as usize {
        return Err(DropReason::BadIhl);
    }
    let Some(datagram) = p.get(..total_len as usize) else { return Err(DropReason::TruncatedIpv4) };
    // Options are rare: sum the fixed 20 bytes as five 32-bit words, and the options apart. The
    // words are read in the machine's order: a one's-complement sum in swapped byte order is
    // the swapped sum (RFC 1071 §2(B)), and the all-ones a valid header sums to reads the same
    // either way.
    let word = |w: &[u8]| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as u64;
    let mut wide = word(&hdr[0..4]) + word(&hdr[4..8]) + word(&hdr[8..12]) + word(&hdr[12..16]) + word(&hdr[16..20]);
    if hlen > 20 {
        wide += datagram[20..hlen].chunks_exact(4).map(word).sum::<u64>();
    }
    let sum = ((wide & 0xffff) + (wide >> 16 & 0xffff) + (wide >> 32 & 0xffff) + (wide >> 48)) as u32;
    if csum::fold(sum) != 0xffff {
        return Err(DropReason::BadIpv4Checksum);
    }
    let more = hdr[6] & 0x20 != 0;
    let offset = u16::from_be_bytes([hdr[6] & 0x1f, hdr[7]]);
    let frag = match (offset, more) {
        (0, false) => Frag::Whole,
        (0, true) => Frag::First,
        _ => Frag::Later,
    };
    let proto = hdr[9];
    let l4 = if frag == Frag::Later { L4::None } else { parse_l4(&datagram[hlen..], proto)? };
    Ok(Ipv4 {
        hlen,
        total_len,
        tos: hdr[1],
        ttl: hdr[8],
        proto,
        src: Ipv4Addr::new(hdr[12], hdr[13], hdr[14], hdr[15]),
        dst: Ipv4Addr::new(hdr[16], hdr[17], hdr[18], hdr[19]),
        frag,
        l4,
    })
}

#[inline(always)]
pub(crate) fn parse_l4(p: &[u8], proto: u8) -> Result<L4, DropReason> {
    let t = DropReason::TruncatedL4;
    Ok(match proto {
        IPPROTO_TCP => {
            let h = p.first_chunk::<20>().ok_or(t)?;
            let off = (h[12] >> 4) as usize * 4;
            if off < 20 || p.len() < off {
                return Err(t);
            }
            L4::Tcp { sport: u16::from_be_bytes([h[0], h[1]]), dport: u16::from_be_bytes([h[2], h[3]]), flags: h[13] }
        }
        IPPROTO_UDP => {
            let h = p.first_chunk::<8>().ok_or(t)?;
            L4::Udp { sport: u16::from_be_bytes([h[0], h[1]]), dport: u16::from_be_bytes([h[2], h[3]]) }
        }
        IPPROTO_ICMP => {
            let h = p.first_chunk::<8>().ok_or(t)?;
            L4::Icmp { typ: h[0], code: h[1], rest: [h[4], h[5], h[6], h[7]] }
        }
        _ => L4::None,
    })
}

/// Complete the TCP or UDP checksum of a frame the kernel handed over with it still pending
/// (`TP_STATUS_CSUMNOTREADY`, SPEC §2): the field holds the pseudo-header sum, and the checksum is
/// the complement of the sum over the segment with that field as it is — what the NIC would have
/// written. Frames that are not whole IPv4 or IPv6 TCP/UDP are left alone. Returns whether it
/// completed one.
pub fn complete_pending_checksum(frame: &mut [u8]) -> bool {
    let Ok(h) = parse(frame) else { return false };
    let (frag, l4, proto, segment) = match h.l3 {
        L3::Ipv4(ip) => (ip.frag, ip.l4, ip.proto, ip.l4_off()..ip.end()),
        L3::Ipv6(ip) => (ip.frag, ip.l4, ip.proto, ip.l4_off()..ip.end()),
        _ => return false,
    };
    let at = match (frag, l4) {
        (Frag::Whole, L4::Tcp { .. }) => ipv4::l4field::TCP_CHECKSUM,
        (Frag::Whole, L4::Udp { .. }) => ipv4::l4field::UDP_CHECKSUM,
        _ => return false,
    };
    let Some(segment) = frame.get_mut(segment) else { return false };
    let c = match csum::finish(csum::sum(segment)) {
        0 if proto == IPPROTO_UDP => 0xffff,
        c => c,
    };
    ipv4::put(segment, at, &c.to_be_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp_frame() -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(1234, 80);
        let mut v = Vec::new();
        b.write(&mut v, b"hello").unwrap();
        v
    }

    #[test]
    fn parses_udp() {
        let f = udp_frame();
        let h = parse(&f).unwrap();
        assert_eq!(h.eth_src, [2, 0, 0, 0, 0, 1]);
        let L3::Ipv4(ip) = h.l3 else { panic!() };
        assert_eq!(ip.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.ttl, 64);
        assert_eq!(ip.l4, L4::Udp { sport: 1234, dport: 80 });
        assert_eq!(ip.frag, Frag::Whole);
    }

    #[test]
    fn every_truncation_is_a_counted_drop() {
        let f = udp_frame();
        for n in 0..f.len() {
            let r = parse(&f[..n]);
            assert!(r.is_err(), "prefix of {n} bytes parsed");
        }
    }

    #[test]
    fn bad_checksum_and_ihl() {
        let mut f = udp_frame();
        f[24] ^= 0xff;
        assert_eq!(parse(&f), Err(DropReason::BadIpv4Checksum));
        let mut f = udp_frame();
        f[14] = 0x44;
        assert_eq!(parse(&f), Err(DropReason::BadIhl));
        let mut f = udp_frame();
        f[14] = 0x65;
        assert_eq!(parse(&f), Err(DropReason::BadIpv4Version));
    }

    /// A frame whose checksum field holds only the pseudo-header sum (as the kernel hands it over
    /// with offload) completes to exactly the checksum computed from scratch.
    #[test]
    fn pending_checksums_complete_to_the_full_one() {
        for tcp in [false, true] {
            let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4([10, 0, 0, 1], [192, 0, 2, 9], 64);
            let mut full = Vec::new();
            if tcp {
                b.tcp(40000, 80, 7, 1000).write(&mut full, b"some payload bytes").unwrap();
            } else {
                b.udp(40000, 53).write(&mut full, b"some payload bytes").unwrap();
            }
            let h = parse(&full).unwrap();
            let L3::Ipv4(ip) = h.l3 else { panic!() };
            let at = ip.l4_off() + if tcp { 16 } else { 6 };
            let len = (ip.end() - ip.l4_off()) as u16;
            let pseudo = csum::fold(csum::pseudo_header(ip.src.octets(), ip.dst.octets(), ip.proto, len));
            let mut pending = full.clone();
            pending[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
            assert!(complete_pending_checksum(&mut pending));
            assert_eq!(pending, full, "tcp={tcp}");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 88172645463325252;
        for len in 0..200 {
            for _ in 0..50 {
                let mut v = vec![0u8; len];
                for b in v.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
                if len > 14 {
                    v[12] = 8;
                    v[13] = if x & 1 == 0 { 0 } else { 6 };
                }
                let _ = parse(&v);
            }
        }
    }
}
