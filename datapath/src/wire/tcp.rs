//! TCP segments the datapath originates: the reset that answers a rejected segment (RFC 793
//! §3.4, as Linux's REJECT --reject-with tcp-reset sends it), over IPv4 or IPv6.

use super::icmpv6::ORIGIN_HOP_LIMIT;
use super::{icmp::ipv4_header, Ipv4, Ipv6, ETHERTYPE_IPV4, ETH_LEN, IPPROTO_TCP};
use crate::csum;

/// The reset answering a TCP segment `t` (header and payload): ports swapped, and for a segment
/// with ACK `seq = its ack`; otherwise `ack = its seq + length (+1 for SYN and FIN)` with RST|ACK.
struct Reset {
    sport: u16,
    dport: u16,
    seq: u32,
    /// The acknowledgement, when the reset carries ACK.
    ack: Option<u32>,
}

impl Reset {
    fn answering(t: &[u8]) -> Option<Reset> {
        let hdr = t.first_chunk::<20>()?;
        let doff = (hdr[12] >> 4) as usize * 4;
        let flags = hdr[13];
        let seq = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        let ack = u32::from_be_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
        let len = t.len().saturating_sub(doff) as u32 + (flags & 0x02 != 0) as u32 + (flags & 0x01 != 0) as u32;
        let (sport, dport) = (u16::from_be_bytes([hdr[2], hdr[3]]), u16::from_be_bytes([hdr[0], hdr[1]]));
        Some(match flags & 0x10 != 0 {
            true => Reset { sport, dport, seq: ack, ack: None },
            false => Reset { sport, dport, seq: 0, ack: Some(seq.wrapping_add(len)) },
        })
    }

    /// The 20-byte header, its checksum over the pseudo-header sum `pseudo`.
    fn segment(&self, pseudo: u32) -> [u8; 20] {
        let mut seg = [0u8; 20];
        seg[0..2].copy_from_slice(&self.sport.to_be_bytes());
        seg[2..4].copy_from_slice(&self.dport.to_be_bytes());
        seg[4..8].copy_from_slice(&self.seq.to_be_bytes());
        seg[8..12].copy_from_slice(&self.ack.unwrap_or(0).to_be_bytes());
        seg[12] = 5 << 4;
        seg[13] = if self.ack.is_some() { 0x14 } else { 0x04 };
        let c = csum::finish(pseudo + csum::sum(&seg));
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        seg
    }
}

/// The RST answering the TCP segment in `orig` (parsed as `ip`), from its destination back to its
/// source, leaving with `eth_src` toward the segment's source MAC.
pub fn reset(orig: &[u8], ip: &Ipv4, eth_src: [u8; 6]) -> Option<Vec<u8>> {
    let eth_dst: [u8; 6] = orig.get(6..12)?.try_into().ok()?;
    let rst = Reset::answering(orig.get(ip.l4_off()..ip.end())?)?;
    let seg = rst.segment(csum::pseudo_header(ip.dst.octets(), ip.src.octets(), IPPROTO_TCP, 20));
    let h = ipv4_header(ip.dst, ip.src, IPPROTO_TCP, 20, super::icmp::ORIGIN_TTL, 0);
    let mut f = Vec::with_capacity(ETH_LEN + 40);
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(&seg);
    Some(f)
}

/// The same reset for a TCP segment over IPv6 (SPEC §10.2), with the origin hop limit.
pub fn reset6(orig: &[u8], ip: &Ipv6, eth_src: [u8; 6]) -> Option<Vec<u8>> {
    let eth_dst: [u8; 6] = orig.get(6..12)?.try_into().ok()?;
    let rst = Reset::answering(orig.get(ip.l4_off()..ip.end())?)?;
    let seg = rst.segment(super::ipv6::pseudo_header(ip.dst, ip.src, IPPROTO_TCP, 20));
    let b = etherparse::PacketBuilder::ethernet2(eth_src, eth_dst).ipv6(ip.dst.octets(), ip.src.octets(), ORIGIN_HOP_LIMIT);
    let mut out = Vec::with_capacity(b.size(seg.len()));
    // Writing to a Vec cannot fail for 20 bytes.
    let _ = b.write(&mut out, etherparse::IpNumber::TCP, &seg);
    Some(out)
}
