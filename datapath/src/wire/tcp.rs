//! TCP segments the datapath originates: the reset that answers a rejected segment (RFC 793
//! §3.4, as Linux's REJECT --reject-with tcp-reset sends it).

use super::{icmp::ipv4_header, Ipv4, ETHERTYPE_IPV4, ETH_LEN, IPPROTO_TCP};
use crate::csum;

/// The RST answering the TCP segment in `orig` (parsed as `ip`), from its destination back to its
/// source, leaving with `eth_src` toward the segment's source MAC. A segment with ACK gets
/// `seq = its ack`; otherwise `ack = its seq + length (+1 for SYN and FIN)` with RST|ACK.
pub fn reset(orig: &[u8], ip: &Ipv4, eth_src: [u8; 6]) -> Option<Vec<u8>> {
    let eth_dst: [u8; 6] = orig.get(6..12)?.try_into().ok()?;
    let t = orig.get(ip.l4_off()..ip.end())?;
    let hdr = t.first_chunk::<20>()?;
    let doff = (hdr[12] >> 4) as usize * 4;
    let flags = hdr[13];
    let seq = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    let ack = u32::from_be_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
    let len = t.len().saturating_sub(doff) as u32 + (flags & 0x02 != 0) as u32 + (flags & 0x01 != 0) as u32;
    let (rseq, rack, rflags) = if flags & 0x10 != 0 { (ack, 0, 0x04) } else { (0, seq.wrapping_add(len), 0x14) };
    let mut seg = [0u8; 20];
    seg[0..2].copy_from_slice(&hdr[2..4]);
    seg[2..4].copy_from_slice(&hdr[0..2]);
    seg[4..8].copy_from_slice(&rseq.to_be_bytes());
    seg[8..12].copy_from_slice(&rack.to_be_bytes());
    seg[12] = 5 << 4;
    seg[13] = rflags;
    let c = csum::finish(csum::pseudo_header(ip.dst.octets(), ip.src.octets(), IPPROTO_TCP, 20) + csum::sum(&seg));
    seg[16..18].copy_from_slice(&c.to_be_bytes());
    let h = ipv4_header(ip.dst, ip.src, IPPROTO_TCP, 20, super::icmp::ORIGIN_TTL, 0);
    let mut f = Vec::with_capacity(ETH_LEN + 40);
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(&seg);
    Some(f)
}
