//! VXLAN (RFC 7348): the header view for decapsulation and the 50-byte outer header template
//! for encapsulation.
//!
//! Encapsulation format (SPEC §7): outer Ethernet (source: the sending interface's MAC,
//! destination: the next hop's), outer IPv4 (DF set, TTL 64, id 0, protocol UDP), UDP destination
//! port 4789 with checksum 0, and the source port from [`source_port`], VXLAN flags 0x08 and the
//! 24-bit VNI. The template is built once at flow install with the outer IPv4 checksum computed
//! for a zero length; applying it copies 50 bytes and adds the lengths to both the length fields
//! and the checksum.

use std::ops::Range;

use super::ipv4::field;
use std::net::Ipv4Addr;

use super::{Headers, L3, L4};
use crate::csum;

pub const PORT: u16 = 4789;
/// Outer Ethernet + IPv4 + UDP + VXLAN.
pub const ENCAP_LEN: usize = 14 + 20 + 8 + 8;
/// The I flag: a valid VNI is present.
pub const FLAG_I: u8 = 0x08;

/// A received VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vxlan {
    pub flags: u8,
    pub vni: u32,
}

/// The VXLAN header of a UDP/4789 frame and the offset of its inner frame. `None` when the frame
/// is not UDP to port 4789 or too short to hold the header.
pub fn view(frame: &[u8], h: &Headers) -> Option<(Vxlan, usize)> {
    let L3::Ipv4(ip) = &h.l3 else { return None };
    let L4::Udp { dport: PORT, .. } = ip.l4 else {
        return None;
    };
    let off = ip.l4_off() + 8;
    let v = frame.get(off..off + 8)?;
    let vni = u32::from_be_bytes([0, v[4], v[5], v[6]]);
    Some((Vxlan { flags: v[0], vni }, off + 8))
}

/// The outer header of one tunnel, ready to prepend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncapTemplate {
    bytes: [u8; ENCAP_LEN],
    /// Sum of the outer IPv4 header with total length 0 and checksum 0.
    ip_sum: u32,
}

// Where the outer header's fields are in an [`EncapTemplate`]: Ethernet, IPv4 without
// options, UDP, VXLAN.
const ETHERTYPE: Range<usize> = 12..14;
const IP: Range<usize> = super::ETH_LEN..super::ETH_LEN + field::MIN_LEN;
const IP_LENGTH: Range<usize> = IP.start + field::LENGTH.start..IP.start + field::LENGTH.end;
const IP_CHECKSUM: Range<usize> = IP.start + field::CHECKSUM.start..IP.start + field::CHECKSUM.end;
const UDP: usize = IP.end;
const UDP_LENGTH: Range<usize> = UDP + 4..UDP + 6;
const VXLAN: usize = UDP + 8;

impl EncapTemplate {
    pub fn new(eth_src: [u8; 6], eth_dst: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, sport: u16, vni: u32) -> Self {
        let mut b = [0u8; ENCAP_LEN];
        b[super::ETH_DST].copy_from_slice(&eth_dst);
        b[super::ETH_SRC].copy_from_slice(&eth_src);
        b[ETHERTYPE].copy_from_slice(&super::ETHERTYPE_IPV4.to_be_bytes());
        let ip = &mut b[IP];
        ip[field::VER_IHL] = 0x45;
        ip[field::FLAGS_FRAG.start] = 0x40; // DF
        ip[field::TTL] = 64;
        ip[field::PROTOCOL] = super::IPPROTO_UDP;
        ip[field::SRC].copy_from_slice(&src.octets());
        ip[field::DST].copy_from_slice(&dst.octets());
        let ip_sum = csum::sum(ip);
        b[UDP..UDP + 2].copy_from_slice(&sport.to_be_bytes());
        b[UDP + 2..UDP + 4].copy_from_slice(&PORT.to_be_bytes());
        b[VXLAN] = FLAG_I;
        b[VXLAN + 4..VXLAN + 7].copy_from_slice(&vni.to_be_bytes()[1..4]);
        EncapTemplate { bytes: b, ip_sum }
    }

    /// Write the outer header into `out` (exactly [`ENCAP_LEN`] bytes) for an inner frame of
    /// `inner_len` bytes.
    #[inline]
    pub fn write(&self, out: &mut [u8], inner_len: usize) {
        if out.len() != ENCAP_LEN {
            return;
        }
        out.copy_from_slice(&self.bytes);
        let udp_len = (8 + 8 + inner_len) as u16;
        let ip_len = field::MIN_LEN as u16 + udp_len;
        out[IP_LENGTH].copy_from_slice(&ip_len.to_be_bytes());
        let c = csum::finish(self.ip_sum + ip_len as u32);
        out[IP_CHECKSUM].copy_from_slice(&c.to_be_bytes());
        out[UDP_LENGTH].copy_from_slice(&udp_len.to_be_bytes());
    }

    /// The outer header of a routed VXLAN frame (`outer` is its first [`ENCAP_LEN`] bytes), as a
    /// template: its lengths and checksum are written anew for each inner frame. `None` when the
    /// bytes are not Ethernet/IPv4 (no options)/UDP.
    pub fn from_outer(outer: &[u8]) -> Option<Self> {
        let mut bytes: [u8; ENCAP_LEN] = outer.get(..ENCAP_LEN)?.try_into().ok()?;
        if bytes[ETHERTYPE] != super::ETHERTYPE_IPV4.to_be_bytes()
            || bytes[IP.start + field::VER_IHL] != 0x45
            || bytes[IP.start + field::PROTOCOL] != super::IPPROTO_UDP
        {
            return None;
        }
        bytes[IP_LENGTH].fill(0);
        bytes[IP_CHECKSUM].fill(0);
        // The UDP length and checksum.
        bytes[UDP_LENGTH.start..UDP + 8].fill(0);
        let ip_sum = csum::sum(&bytes[IP]);
        Some(EncapTemplate { bytes, ip_sum })
    }

    /// The outer UDP source port it writes.
    pub fn sport(&self) -> u16 {
        u16::from_be_bytes([self.bytes[UDP], self.bytes[UDP + 1]])
    }

    /// The same header with another outer UDP source port (which no checksum it keeps covers).
    pub fn with_sport(mut self, sport: u16) -> EncapTemplate {
        self.bytes[UDP..UDP + 2].copy_from_slice(&sport.to_be_bytes());
        self
    }

    /// [`EncapTemplate::write`], with outer UDP source port `sport` in place of its own.
    #[inline]
    pub fn write_sport(&self, out: &mut [u8], inner_len: usize, sport: u16) {
        self.write(out, inner_len);
        if let Some(p) = out.get_mut(UDP..UDP + 2) {
            p.copy_from_slice(&sport.to_be_bytes());
        }
    }

    /// A whole encapsulated frame (for the slow path: frames waiting for ARP).
    pub fn encapsulate(&self, inner: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; ENCAP_LEN];
        self.write(&mut v, inner.len());
        v.extend_from_slice(inner);
        v
    }

    pub fn vni(&self) -> u32 {
        u32::from_be_bytes([0, self.bytes[46], self.bytes[47], self.bytes[48]])
    }

    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.bytes[30], self.bytes[31], self.bytes[32], self.bytes[33])
    }
}

/// The tunnels' outer headers the flows share: one copy of each, so that a flow into a tunnel
/// carries a pointer and its own outer UDP source port, not the header. Bounded: past
/// [`Shared::MAX`] distinct headers it starts again (the flows keep theirs).
#[derive(Debug, Default)]
pub struct Shared(std::collections::HashMap<EncapTemplate, std::sync::Arc<EncapTemplate>>);

impl Shared {
    const MAX: usize = 4096;

    /// `t` as a flow keeps it: the shared header (its source port 0), and the source port.
    pub fn share(&mut self, t: &EncapTemplate) -> (std::sync::Arc<EncapTemplate>, u16) {
        let key = t.with_sport(0);
        if self.0.len() >= Self::MAX && !self.0.contains_key(&key) {
            self.0.clear();
        }
        (self.0.entry(key).or_insert_with(|| std::sync::Arc::new(key)).clone(), t.sport())
    }
}

/// The outer UDP source port for an inner frame, in 49152–65535 (RFC 7348 §5 recommends the
/// dynamic range). The hash is fixed so every machine sends the same bytes: 32-bit FNV-1a over
/// the inner destination MAC, source MAC, and for IPv4 and IPv6 the source and destination
/// address, protocol, and the L4 ports (zero when absent), in that order; port = 49152 + hash
/// mod 16384.
pub fn source_port(inner: &Headers) -> u16 {
    49152 + (flow_hash(inner) % 16384) as u16
}

/// The fixed hash of an inner flow (see [`source_port`]): also what picks one of two peered VTEPs.
pub fn flow_hash(inner: &Headers) -> u32 {
    // IPv6 is hashed as IPv4 is, with its 16-byte addresses (DECISIONS.md, IPv6).
    let (a4, b4, a6, b6);
    let ip: Option<(&[u8], &[u8], u8, L4)> = match &inner.l3 {
        L3::Ipv4(ip) => {
            (a4, b4) = (ip.src.octets(), ip.dst.octets());
            Some((&a4, &b4, ip.proto, ip.l4))
        }
        L3::Ipv6(ip) => {
            (a6, b6) = (ip.src.octets(), ip.dst.octets());
            Some((&a6, &b6, ip.proto, ip.l4))
        }
        _ => None,
    };
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    eat(&inner.eth_dst);
    eat(&inner.eth_src);
    if let Some((src, dst, proto, l4)) = ip {
        eat(src);
        eat(dst);
        eat(&[proto]);
        let (s, d) = match l4 {
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => (sport, dport),
            _ => (0, 0),
        };
        eat(&s.to_be_bytes());
        eat(&d.to_be_bytes());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_a_valid_outer_header() {
        let t = EncapTemplate::new(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            50000,
            0x123456,
        );
        let mut out = [0u8; ENCAP_LEN];
        t.write(&mut out, 100);
        let ip = etherparse::Ipv4HeaderSlice::from_slice(&out[14..]).unwrap().to_header();
        assert_eq!(ip.total_len, 20 + 8 + 8 + 100);
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        assert!(ip.dont_fragment);
        assert_eq!(ip.time_to_live, 64);
        assert_eq!(&out[36..38], &4789u16.to_be_bytes());
        assert_eq!(&out[40..42], &[0, 0], "UDP checksum 0");
        assert_eq!(out[42], 0x08);
        assert_eq!(t.vni(), 0x123456);
        assert_eq!(&out[46..50], &[0x12, 0x34, 0x56, 0]);
    }
}
