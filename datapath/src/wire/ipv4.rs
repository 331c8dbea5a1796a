//! IPv4 by name: the header's fields ([`field`]), the L4 fields the datapath touches
//! ([`l4field`]), and [`Ipv4Mut`], a mutable view of one packet whose setters keep the
//! checksums right (RFC 1624) or hand back the delta the caller owes them. Reading stays with
//! the single fast parse (`wire::parse`); this is for writing, by the simulation's frame
//! (`sim/frame.rs`), a flow's rewrite (`flow.rs`), GSO cutting (`gso.rs`) and the builders.
//!
//! The view is made checked (the header, by its own length, is in the buffer), so header
//! writes cannot be out of range; L4 writes are, when the packet is short, an [`OutOfRange`]
//! error the caller sees, never a write skipped in silence. IPv6 gets the same shape.

use std::net::Ipv4Addr;
use std::ops::Range;

use crate::csum::{self, Delta};

/// Offsets in the IPv4 header (RFC 791 §3.1).
pub mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    /// The header without options.
    pub const MIN_LEN: usize = 20;
}

/// Offsets in the L4 header that follows (TCP RFC 9293, UDP RFC 768, ICMP RFC 792).
pub mod l4field {
    use std::ops::Range;
    /// TCP and UDP.
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const UDP_CHECKSUM: Range<usize> = 6..8;
    pub const TCP_SEQ: Range<usize> = 4..8;
    /// The data offset is the high nibble.
    pub const TCP_DATA_OFF: usize = 12;
    pub const TCP_FLAGS: usize = 13;
    pub const TCP_CHECKSUM: Range<usize> = 16..18;
    pub const ICMP_TYPE: usize = 0;
    pub const ICMP_CHECKSUM: Range<usize> = 2..4;
    /// An echo message's identifier.
    pub const ICMP_IDENT: Range<usize> = 4..6;
    /// Where an ICMP error's quote of the original packet starts.
    pub const ICMP_QUOTE: usize = 8;
}

/// Where the L4 checksum that covers the ports or the ICMP identifier is, from the L4 header,
/// and whether UDP's zero rule holds; `None` for another protocol.
pub fn l4_checksum(l4: &crate::wire::L4) -> Option<(Range<usize>, bool)> {
    use crate::wire::L4;
    match l4 {
        L4::Tcp { .. } => Some((l4field::TCP_CHECKSUM, false)),
        L4::Udp { .. } => Some((l4field::UDP_CHECKSUM, true)),
        L4::Icmp { .. } => Some((l4field::ICMP_CHECKSUM, false)),
        L4::None => None,
    }
}

/// A write past the end of the packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("write at {at:?} past the packet's {len} bytes")]
pub struct OutOfRange {
    pub at: Range<usize>,
    pub len: usize,
}

/// A 16-bit big-endian word at `at` in `buf`.
#[inline]
pub fn get16(buf: &[u8], at: Range<usize>) -> Result<u16, OutOfRange> {
    match buf.get(at.clone()) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => Err(OutOfRange { at, len: buf.len() }),
    }
}

/// Store `v` at `at` in `buf` (an error when it does not fit).
#[inline]
pub fn put(buf: &mut [u8], at: Range<usize>, v: &[u8]) -> Result<(), OutOfRange> {
    let len = buf.len();
    match buf.get_mut(at.clone()) {
        Some(b) if b.len() == v.len() => {
            b.copy_from_slice(v);
            Ok(())
        }
        _ => Err(OutOfRange { at, len }),
    }
}

/// Add `d` to the checksum at `at` in `buf` (UDP's zero rules when `udp`: 0 stays "none").
#[inline(always)]
pub fn patch(buf: &mut [u8], at: Range<usize>, d: Delta, udp: bool) -> Result<(), OutOfRange> {
    let len = buf.len();
    let Some([a, b]) = buf.get_mut(at.clone()) else { return Err(OutOfRange { at, len }) };
    let old = u16::from_be_bytes([*a, *b]);
    [*a, *b] = if udp { d.apply_udp(old) } else { d.apply(old) }.to_be_bytes();
    Ok(())
}

/// A mutable IPv4 packet: the header at offset 0, its L4 header at [`Ipv4Mut::hlen`].
pub struct Ipv4Mut<'a> {
    buf: &'a mut [u8],
    hlen: usize,
}

impl<'a> Ipv4Mut<'a> {
    /// A view of `buf` (from the IPv4 header on), when its header, by its own length, is there.
    #[inline]
    pub fn new(buf: &'a mut [u8]) -> Result<Ipv4Mut<'a>, OutOfRange> {
        let len = buf.len();
        let hlen = match buf.first() {
            Some(&b) => (b & 0x0f) as usize * 4,
            None => 0,
        };
        if hlen < field::MIN_LEN || hlen > len {
            return Err(OutOfRange { at: 0..hlen.max(field::MIN_LEN), len });
        }
        Ok(Ipv4Mut { buf, hlen })
    }

    /// The header's length in bytes: where the L4 header begins.
    #[inline]
    pub fn hlen(&self) -> usize {
        self.hlen
    }

    #[inline]
    fn hdr<const N: usize>(&self, at: Range<usize>) -> [u8; N] {
        // In the header, which `new` checked is in the buffer.
        let mut out = [0; N];
        if let Some(b) = self.buf.get(at) {
            out.copy_from_slice(b);
        }
        out
    }

    #[inline]
    fn set_hdr(&mut self, at: Range<usize>, v: &[u8]) {
        // In the header, which `new` checked is in the buffer.
        if let Some(b) = self.buf.get_mut(at) {
            b.copy_from_slice(v);
        }
    }

    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.hdr::<4>(field::SRC))
    }

    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.hdr::<4>(field::DST))
    }

    pub fn protocol(&self) -> u8 {
        self.hdr::<1>(field::PROTOCOL..field::PROTOCOL + 1)[0]
    }

    /// The header checksum += `d` (after stores whose delta was computed ahead, by a flow).
    #[inline]
    pub fn patch_checksum(&mut self, d: Delta) {
        let old = u16::from_be_bytes(self.hdr::<2>(field::CHECKSUM));
        self.set_hdr(field::CHECKSUM, &d.apply(old).to_be_bytes());
    }

    /// Store an address without touching a checksum: the caller adds the delta it computed
    /// ahead (a flow's rewrite). See [`Ipv4Mut::set_src`] for the kind that keeps them.
    #[inline]
    pub fn put_src(&mut self, a: [u8; 4]) {
        self.set_hdr(field::SRC, &a);
    }

    #[inline]
    pub fn put_dst(&mut self, a: [u8; 4]) {
        self.set_hdr(field::DST, &a);
    }

    #[inline]
    pub fn put_tos(&mut self, tos: u8) {
        self.set_hdr(field::TOS..field::TOS + 1, &[tos]);
    }

    /// TTL -= `n` (wrapping), without touching the checksum.
    #[inline]
    pub fn put_ttl_dec(&mut self, n: u8) {
        let ttl = self.hdr::<1>(field::TTL..field::TTL + 1)[0];
        self.set_hdr(field::TTL..field::TTL + 1, &[ttl.wrapping_sub(n)]);
    }

    /// Set the source address, keeping the header checksum; returns the delta the L4 checksum
    /// owes for its pseudo-header (TCP, UDP).
    pub fn set_src(&mut self, a: Ipv4Addr) -> Delta {
        self.set_addr(field::SRC, a)
    }

    /// Set the destination address; as [`Ipv4Mut::set_src`].
    pub fn set_dst(&mut self, a: Ipv4Addr) -> Delta {
        self.set_addr(field::DST, a)
    }

    fn set_addr(&mut self, at: Range<usize>, a: Ipv4Addr) -> Delta {
        let old = u32::from_be_bytes(self.hdr::<4>(at.clone()));
        let d = Delta::ZERO.dword(old, u32::from(a));
        self.set_hdr(at, &a.octets());
        self.patch_checksum(d);
        d
    }

    /// Set the type of service byte (DSCP and ECN), keeping the header checksum.
    pub fn set_tos(&mut self, tos: u8) {
        let [vihl, old] = self.hdr::<2>(field::VER_IHL..field::TOS + 1);
        self.put_tos(tos);
        self.patch_checksum(Delta::ZERO.word(u16::from_be_bytes([vihl, old]), u16::from_be_bytes([vihl, tos])));
    }

    /// TTL -= 1, keeping the header checksum.
    pub fn dec_ttl(&mut self) {
        let [ttl, proto] = self.hdr::<2>(field::TTL..field::PROTOCOL + 1);
        self.put_ttl_dec(1);
        let new = u16::from_be_bytes([ttl.wrapping_sub(1), proto]);
        self.patch_checksum(Delta::ZERO.word(u16::from_be_bytes([ttl, proto]), new));
    }

    /// Set the total length and the identification (a GSO segment), then compute the header
    /// checksum afresh.
    pub fn set_len_ident(&mut self, total_len: u16, ident: u16) {
        self.set_hdr(field::LENGTH, &total_len.to_be_bytes());
        self.set_hdr(field::IDENT, &ident.to_be_bytes());
        self.fill_checksum();
    }

    /// Compute the header checksum afresh.
    pub fn fill_checksum(&mut self) {
        self.set_hdr(field::CHECKSUM, &[0, 0]);
        let c = csum::finish(csum::sum(self.buf.get(..self.hlen).unwrap_or_default()));
        self.set_hdr(field::CHECKSUM, &c.to_be_bytes());
    }

    /// The L4 header and what follows (to the end of the buffer).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.hlen..).unwrap_or_default()
    }

    /// The L4 header and what follows, for as long as the buffer is borrowed.
    pub fn into_payload(self) -> &'a mut [u8] {
        self.buf.get_mut(self.hlen..).unwrap_or_default()
    }

    /// The L4 header and what follows.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buf.get(self.hlen..).unwrap_or_default()
    }

    /// Set the 16-bit L4 word at `at` (a port, an echo identifier); returns the delta the L4
    /// checksum owes.
    pub fn set_l4_word(&mut self, at: Range<usize>, v: u16) -> Result<Delta, OutOfRange> {
        let p = self.payload_mut();
        let old = get16(p, at.clone())?;
        put(p, at, &v.to_be_bytes())?;
        Ok(Delta::ZERO.word(old, v))
    }

    /// The L4 checksum at `at` += `d` (UDP's zero rules when `udp`).
    pub fn patch_l4(&mut self, at: Range<usize>, d: Delta, udp: bool) -> Result<(), OutOfRange> {
        patch(self.payload_mut(), at, d, udp)
    }

    /// After an incremental update of an ICMP checksum: RFC 1624's update gives 0x0000 where
    /// the message is all zeros (an echo reply with identifier, sequence and payload 0), but the
    /// full sum of such a message is 0xffff, and receivers (Linux's included) check for that.
    /// `len` is the message's length. Found by the datapath fuzz target.
    pub fn icmp_zero_message(&mut self, len: usize) {
        let m = self.payload_mut();
        let m = m.get_mut(..len.min(m.len())).unwrap_or_default();
        if m.get(l4field::ICMP_CHECKSUM) == Some(&[0, 0]) && m.iter().all(|&b| b == 0) {
            let _ = put(m, l4field::ICMP_CHECKSUM, &[0xff, 0xff]);
        }
    }

    /// Compute the ICMP checksum afresh over the message's `len` bytes.
    pub fn fill_icmp_checksum(&mut self, len: usize) -> Result<(), OutOfRange> {
        let m = self.payload_mut();
        let avail = m.len();
        let m = m.get_mut(..len).ok_or(OutOfRange { at: 0..len, len: avail })?;
        put(m, l4field::ICMP_CHECKSUM, &[0, 0])?;
        let c = csum::finish(csum::sum(m));
        put(m, l4field::ICMP_CHECKSUM, &c.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet() -> Vec<u8> {
        let mut ip = crate::wire::icmp::ipv4_header(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 17, 8, 64, 0).to_vec();
        ip.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00]);
        ip
    }

    fn header_ok(p: &[u8]) -> bool {
        csum::finish(csum::sum(&p[..20])) == 0
    }

    #[test]
    fn setters_keep_the_header_checksum() {
        let mut p = packet();
        let mut v = Ipv4Mut::new(&mut p).expect("view");
        v.set_src(Ipv4Addr::new(192, 0, 2, 7));
        v.set_dst(Ipv4Addr::new(198, 51, 100, 9));
        v.dec_ttl();
        v.set_tos(0xb8);
        assert!(header_ok(&p));
        assert_eq!(&p[12..20], &[192, 0, 2, 7, 198, 51, 100, 9]);
        assert_eq!((p[8], p[1]), (63, 0xb8));
    }

    #[test]
    fn a_short_packet_is_an_error_not_a_silent_skip() {
        let mut p = packet();
        assert!(Ipv4Mut::new(&mut p[..19]).is_err());
        let mut short = p[..22].to_vec();
        let mut v = Ipv4Mut::new(&mut short).expect("the header is whole");
        let e = v.set_l4_word(l4field::DST_PORT, 53).expect_err("the port is past the end");
        assert_eq!(e, OutOfRange { at: 2..4, len: 2 });
        assert!(v.patch_l4(l4field::UDP_CHECKSUM, Delta::ZERO, true).is_err());
        let mut ihl_too_long = packet();
        ihl_too_long[0] = 0x4f;
        assert!(Ipv4Mut::new(&mut ihl_too_long).is_err(), "a header longer than the packet");
    }

    #[test]
    fn port_deltas_fix_the_l4_checksum() {
        let mut p = packet();
        // A real UDP checksum first.
        let sum = csum::pseudo_header([10, 0, 0, 1], [10, 0, 0, 2], 17, 8) + csum::sum(&p[20..]);
        p[26..28].copy_from_slice(&csum::finish(sum).to_be_bytes());
        let mut v = Ipv4Mut::new(&mut p).expect("view");
        let d = v.set_src(Ipv4Addr::new(203, 0, 113, 5));
        let d = d.plus(v.set_l4_word(l4field::SRC_PORT, 40000).expect("in range"));
        v.patch_l4(l4field::UDP_CHECKSUM, d, true).expect("in range");
        let full = csum::pseudo_header([203, 0, 113, 5], [10, 0, 0, 2], 17, 8) + csum::sum(&p[20..]);
        assert_eq!(csum::finish(full), 0, "UDP checksum after the rewrite");
        assert!(header_ok(&p));
    }
}
