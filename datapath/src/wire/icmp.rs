//! ICMP messages the routers originate: echo replies (RFC 792) and errors quoting the offending
//! datagram's header and first 8 bytes of payload (RFC 792, RFC 1812 §4.3.2.3).

use super::ipv4::{self, field, l4field};
use std::net::Ipv4Addr;

use super::{Ipv4, ETHERTYPE_IPV4, ETH_LEN, ICMP_ECHO_REPLY, IPPROTO_ICMP};
use crate::csum;

/// TTL of packets the datapath originates.
pub const ORIGIN_TTL: u8 = 64;

/// An IPv4 header (no options) for a datagram the datapath originates.
pub fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize, ttl: u8, tos: u8) -> [u8; 20] {
    let mut h = [0u8; field::MIN_LEN];
    h[field::VER_IHL] = 0x45;
    h[field::TOS] = tos;
    h[field::LENGTH].copy_from_slice(&((field::MIN_LEN + payload_len) as u16).to_be_bytes());
    h[field::TTL] = ttl;
    h[field::PROTOCOL] = proto;
    h[field::SRC].copy_from_slice(&src.octets());
    h[field::DST].copy_from_slice(&dst.octets());
    let c = csum::finish(csum::sum(&h));
    h[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    h
}

fn frame(eth_src: [u8; 6], eth_dst: [u8; 6], ip: &[u8; 20], icmp: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_LEN + 20 + icmp.len());
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f.extend_from_slice(ip);
    f.extend_from_slice(icmp);
    f
}

/// The echo reply to the echo request `req` (a whole frame with parsed `ip`), from `src` with
/// `eth_src`, to the request's sender MAC. The payload is echoed unchanged.
pub fn echo_reply(req: &[u8], ip: &Ipv4, src: Ipv4Addr, eth_src: [u8; 6]) -> Option<Vec<u8>> {
    let eth_dst: [u8; 6] = req.get(super::ETH_SRC)?.try_into().ok()?;
    let icmp = req.get(ip.l4_off()..ip.end())?;
    let mut body = icmp.to_vec();
    ipv4::put(&mut body, l4field::ICMP_TYPE..l4field::ICMP_TYPE + 1, &[ICMP_ECHO_REPLY]).ok()?;
    ipv4::put(&mut body, l4field::ICMP_CHECKSUM, &[0, 0]).ok()?;
    let c = csum::finish(csum::sum(&body));
    ipv4::put(&mut body, l4field::ICMP_CHECKSUM, &c.to_be_bytes()).ok()?;
    let h = ipv4_header(src, ip.src, IPPROTO_ICMP, body.len(), ORIGIN_TTL, 0);
    Some(frame(eth_src, eth_dst, &h, &body))
}

/// An ICMP error of `typ`/`code` about the datagram in `orig` (parsed as `ip`), from `src`
/// and `eth_src` back to the frame's sender MAC. Quotes the IP header and 8 payload bytes.
pub fn error(orig: &[u8], ip: &Ipv4, typ: u8, code: u8, src: Ipv4Addr, eth_src: [u8; 6]) -> Option<Vec<u8>> {
    let eth_dst: [u8; 6] = orig.get(super::ETH_SRC)?.try_into().ok()?;
    let quote_end = (ip.l4_off() + l4field::ICMP_QUOTE).min(ip.end());
    let quote = orig.get(ETH_LEN..quote_end)?;
    let mut body = Vec::with_capacity(8 + quote.len());
    body.extend_from_slice(&[typ, code, 0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(quote);
    let c = csum::finish(csum::sum(&body));
    body[2..4].copy_from_slice(&c.to_be_bytes());
    let h = ipv4_header(src, ip.src, IPPROTO_ICMP, body.len(), ORIGIN_TTL, 0);
    Some(frame(eth_src, eth_dst, &h, &body))
}
