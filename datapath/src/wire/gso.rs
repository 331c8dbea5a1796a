//! Software segmentation of TCP super-frames (live mode), IPv4 and IPv6. A sender with TCP segmentation offload
//! (a VM's virtio-net, a veth with TSO on) hands the host frames of up to 64 KiB that the NIC
//! was to cut; an AF_PACKET socket receives them whole. edgepath cuts them at ingress, as the
//! kernel's GSO would (`tcp_gso_segment`): every segment carries at most `mss` bytes of payload,
//! the IP identifier counts up from the super-frame's, the sequence number advances by the
//! payload before it, FIN and PSH stay on the last segment and CWR on the first, and each
//! segment's IPv4 and TCP checksums are computed whole (IPv6: its payload length, and the TCP
//! checksum over its pseudo-header). Each segment is then an ordinary,
//! MTU-sized frame for the datapath (and its flow cache).

use std::ops::Range;

use super::ipv4::{self, l4field, Ipv4Mut};
use super::ipv6;
use super::{parse, tcp_flags, Frag, ETH_LEN, L3, L4};
use crate::csum;

/// Cut `frame` — Ethernet, IPv4 or IPv6, TCP, not a fragment — into IP packets of at most `mtu`
/// bytes, appended to `out` with their ranges pushed to `segs`. False, with nothing appended,
/// when the frame is not such a frame or already fits.
pub fn segment_tcp(frame: &[u8], mtu: usize, out: &mut Vec<u8>, segs: &mut Vec<Range<usize>>) -> bool {
    let Ok(h) = parse(frame) else { return false };
    let (l4, end, family) = match h.l3 {
        L3::Ipv4(ip) if matches!(ip.l4, L4::Tcp { .. }) && ip.frag == Frag::Whole => (ip.l4_off(), ip.end(), Family::V4(ip)),
        L3::Ipv6(ip) if matches!(ip.l4, L4::Tcp { .. }) && ip.frag == Frag::Whole => (ip.l4_off(), ip.end(), Family::V6(ip)),
        _ => return false,
    };
    let Some(&off_byte) = frame.get(l4 + l4field::TCP_DATA_OFF) else { return false };
    let payload_at = l4 + (off_byte >> 4) as usize * 4;
    let (Some(head), Some(payload)) = (frame.get(..payload_at), frame.get(payload_at..end)) else { return false };
    // Payload bytes per segment: the MTU less the IP and TCP headers.
    let mss = mtu.saturating_sub(payload_at - ETH_LEN);
    if payload.len() <= mss || head.len() < l4 + 20 || mss == 0 {
        return false;
    }
    let (Ok(id), Some(seq), Some(&flags)) = (
        ipv4::get16(head.get(ETH_LEN..).unwrap_or_default(), ipv4::field::IDENT),
        head.get(l4 + l4field::TCP_SEQ.start..l4 + l4field::TCP_SEQ.end).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_be_bytes),
        head.get(l4 + l4field::TCP_FLAGS),
    ) else {
        return false;
    };
    let count = payload.len().div_ceil(mss);
    for (k, chunk) in payload.chunks(mss).enumerate() {
        let start = out.len();
        out.extend_from_slice(head);
        out.extend_from_slice(chunk);
        let Some(seg) = out.get_mut(start + ETH_LEN..) else { return false };
        let ip_len = l4 - ETH_LEN + (payload_at - l4) + chunk.len();
        // The head parsed with a whole TCP header, so the views and their fields are there.
        let (tcp, pseudo) = match family {
            Family::V4(ip) => {
                let Ok(mut v) = Ipv4Mut::new(seg) else { return false };
                v.set_len_ident(ip_len as u16, id.wrapping_add(k as u16));
                let tcp = v.into_payload();
                let pseudo = csum::pseudo_header(ip.src.octets(), ip.dst.octets(), super::IPPROTO_TCP, tcp.len() as u16);
                (tcp, pseudo)
            }
            Family::V6(ip) => {
                let payload_len = (ip_len - ipv6::field::LEN) as u16;
                if ipv4::put(seg, ipv6::field::PAYLOAD_LEN, &payload_len.to_be_bytes()).is_err() {
                    return false;
                }
                let Some(tcp) = seg.get_mut(ip.l4_rel as usize..) else { return false };
                let pseudo = ipv6::pseudo_header(ip.src, ip.dst, super::IPPROTO_TCP, tcp.len() as u32);
                (tcp, pseudo)
            }
        };
        let s = seq.wrapping_add((k * mss) as u32).to_be_bytes();
        let mut f = flags;
        if k + 1 < count {
            f &= !(tcp_flags::FIN | tcp_flags::PSH);
        }
        if k > 0 {
            f &= !tcp_flags::CWR;
        }
        let filled = ipv4::put(tcp, l4field::TCP_SEQ, &s)
            .and_then(|()| ipv4::put(tcp, l4field::TCP_FLAGS..l4field::TCP_FLAGS + 1, &[f]))
            .and_then(|()| ipv4::put(tcp, l4field::TCP_CHECKSUM, &[0, 0]));
        if filled.is_err() {
            return false;
        }
        let c = csum::finish(pseudo + csum::sum(tcp));
        if ipv4::put(tcp, l4field::TCP_CHECKSUM, &c.to_be_bytes()).is_err() {
            return false;
        }
        segs.push(start..out.len());
    }
    true
}

/// The IP header a super-frame's segments copy.
#[derive(Clone, Copy)]
enum Family {
    V4(super::Ipv4),
    V6(super::Ipv6),
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

    #[test]
    fn an_ipv6_super_frame_becomes_segments_with_valid_checksums() {
        let payload: Vec<u8> = (0..4000u32).map(|i| (i * 13) as u8).collect();
        let (a, b) =
            ([0x20, 1, 0x0d, 0xb8, 0, 0xa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3], [0x20, 1, 0x0d, 0xb8, 0, 0xb, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6(a, b, 64)
            .tcp(40000, 9090, 7, 512)
            .ack(1)
            .psh()
            .write(&mut frame, &payload)
            .expect("build");
        let (mut out, mut segs) = (Vec::new(), Vec::new());
        assert!(segment_tcp(&frame, 1500, &mut out, &mut segs));
        assert_eq!(segs.len(), 3, "1440 bytes of payload a segment");
        let mut joined = Vec::new();
        for (k, r) in segs.iter().enumerate() {
            let seg = &out[r.clone()];
            assert!(seg.len() <= 14 + 1500);
            let p = SlicedPacket::from_ethernet(seg).expect("parses");
            let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else { panic!("ipv6") };
            let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("tcp") };
            let want = t.to_header().calc_checksum_ipv6(&ip.header().to_header(), t.payload()).expect("csum");
            assert_eq!(t.checksum(), want, "segment {k}: TCP checksum");
            assert_eq!(t.sequence_number(), 7 + (k as u32) * 1440);
            assert_eq!(t.psh(), k == segs.len() - 1);
            joined.extend_from_slice(t.payload());
        }
        assert_eq!(joined, payload);
    }
}
