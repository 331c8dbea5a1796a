//! Software segmentation of TCP super-frames (live mode). A sender with TCP segmentation offload
//! (a VM's virtio-net, a veth with TSO on) hands the host frames of up to 64 KiB that the NIC
//! was to cut; an AF_PACKET socket receives them whole. edgepath cuts them at ingress, as the
//! kernel's GSO would (`tcp_gso_segment`): every segment carries at most `mss` bytes of payload,
//! the IP identifier counts up from the super-frame's, the sequence number advances by the
//! payload before it, FIN and PSH stay on the last segment and CWR on the first, and each
//! segment's IPv4 and TCP checksums are computed whole. Each segment is then an ordinary,
//! MTU-sized frame for the datapath (and its flow cache).

use std::ops::Range;

use super::{parse, tcp_flags, write16, Frag, ETH_LEN, L3, L4};
use crate::csum;

/// Cut `frame` — Ethernet, IPv4, TCP, not a fragment — into IP packets of at most `mtu` bytes,
/// appended to `out` with their ranges pushed to `segs`. False, with nothing appended, when the
/// frame is not such a frame or already fits.
pub fn segment_tcp(frame: &[u8], mtu: usize, out: &mut Vec<u8>, segs: &mut Vec<Range<usize>>) -> bool {
    let Ok(h) = parse(frame) else { return false };
    let L3::Ipv4(ip) = h.l3 else { return false };
    if !matches!(ip.l4, L4::Tcp { .. }) || ip.frag != Frag::Whole {
        return false;
    }
    let l4 = ip.l4_off();
    let Some(&off_byte) = frame.get(l4 + 12) else { return false };
    let payload_at = l4 + (off_byte >> 4) as usize * 4;
    let (Some(head), Some(payload)) = (frame.get(..payload_at), frame.get(payload_at..ip.end())) else { return false };
    // Payload bytes per segment: the MTU less the IP and TCP headers.
    let mss = mtu.saturating_sub(payload_at - ETH_LEN);
    if payload.len() <= mss || head.len() < l4 + 20 || mss == 0 {
        return false;
    }
    let id = u16::from_be_bytes([head[ETH_LEN + 4], head[ETH_LEN + 5]]);
    let seq = u32::from_be_bytes([head[l4 + 4], head[l4 + 5], head[l4 + 6], head[l4 + 7]]);
    let flags = head[l4 + 13];
    let (src, dst) = (ip.src.octets(), ip.dst.octets());
    let count = payload.len().div_ceil(mss);
    for (k, chunk) in payload.chunks(mss).enumerate() {
        let start = out.len();
        out.extend_from_slice(head);
        out.extend_from_slice(chunk);
        let seg = &mut out[start..];
        write16(seg, ETH_LEN + 2, (ip.hlen + (payload_at - l4) + chunk.len()) as u16);
        write16(seg, ETH_LEN + 4, id.wrapping_add(k as u16));
        write16(seg, ETH_LEN + 10, 0);
        let ip_csum = csum::finish(csum::sum(&seg[ETH_LEN..l4]));
        write16(seg, ETH_LEN + 10, ip_csum);
        let s = seq.wrapping_add((k * mss) as u32).to_be_bytes();
        seg[l4 + 4..l4 + 8].copy_from_slice(&s);
        let mut f = flags;
        if k + 1 < count {
            f &= !(tcp_flags::FIN | tcp_flags::PSH);
        }
        if k > 0 {
            f &= !tcp_flags::CWR;
        }
        seg[l4 + 13] = f;
        write16(seg, l4 + 16, 0);
        let tcp_len = (seg.len() - l4) as u16;
        let c = csum::finish(csum::pseudo_header(src, dst, super::IPPROTO_TCP, tcp_len) + csum::sum(&seg[l4..]));
        write16(seg, l4 + 16, c);
        segs.push(start..out.len());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    #[test]
    fn a_super_frame_becomes_mss_sized_segments_with_valid_checksums() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 3], [192, 0, 2, 50], 64)
            .tcp(40000, 8080, 1_000_000, 512)
            .ack(77)
            .psh()
            .fin()
            .cwr()
            .write(&mut frame, &payload)
            .expect("build");
        let (mut out, mut segs) = (Vec::new(), Vec::new());
        assert!(segment_tcp(&frame, 1500, &mut out, &mut segs));
        assert_eq!(segs.len(), 4);
        let mut joined = Vec::new();
        for (k, r) in segs.iter().enumerate() {
            let seg = &out[r.clone()];
            assert!(seg.len() <= 14 + 20 + 20 + 1460);
            let p = SlicedPacket::from_ethernet(seg).expect("parses");
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!("ipv4") };
            let iph = ip.header();
            assert_eq!(iph.to_header().calc_header_checksum(), iph.header_checksum(), "segment {k}: IPv4 checksum");
            let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("tcp") };
            let want = t.to_header().calc_checksum_ipv4(&iph.to_header(), t.payload()).expect("csum");
            assert_eq!(t.checksum(), want, "segment {k}: TCP checksum");
            assert_eq!(t.sequence_number(), 1_000_000 + (k as u32) * 1460);
            assert_eq!(t.acknowledgment_number(), 77);
            let last = k == segs.len() - 1;
            assert_eq!((t.fin(), t.psh(), t.cwr(), t.ack()), (last, last, k == 0, true), "segment {k}: flags");
            joined.extend_from_slice(t.payload());
        }
        assert_eq!(joined, payload, "the payload, in order, once");
        // IP identifiers count up from the super-frame's.
        let ids: Vec<u16> = segs.iter().map(|r| u16::from_be_bytes([out[r.start + 18], out[r.start + 19]])).collect();
        assert!(ids.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "{ids:?}");
        // A frame that fits, or that is not TCP, is left alone.
        let (mut o, mut s) = (Vec::new(), Vec::new());
        assert!(!segment_tcp(&frame, 6000, &mut o, &mut s));
        let mut udp = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([1; 4], [2; 4], 64).udp(1, 2).write(&mut udp, &payload).expect("udp");
        assert!(!segment_tcp(&udp, 1500, &mut o, &mut s));
        assert!(o.is_empty() && s.is_empty());
    }
}
