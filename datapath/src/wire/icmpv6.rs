//! ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861): the message types and option kinds the
//! datapath reads, and where a Neighbor Solicitation's or Advertisement's target lies.

use std::net::Ipv6Addr;

use super::Ipv6;

pub const DEST_UNREACH: u8 = 1;
/// Destination unreachable codes (RFC 4443 §3.1): no route, and port unreachable.
pub const UNREACH_NO_ROUTE: u8 = 0;
pub const UNREACH_PORT: u8 = 4;
pub const PACKET_TOO_BIG: u8 = 2;
pub const TIME_EXCEEDED: u8 = 3;
pub const PARAM_PROBLEM: u8 = 4;
pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;
/// MLDv1 report (RFC 2710) and MLDv2 report (RFC 3810).
pub const MLD_REPORT: u8 = 131;
pub const MLD2_REPORT: u8 = 143;
pub const ROUTER_SOLICIT: u8 = 133;
pub const ROUTER_ADVERT: u8 = 134;
pub const NEIGHBOR_SOLICIT: u8 = 135;
pub const NEIGHBOR_ADVERT: u8 = 136;

/// DHCPv6 (RFC 8415 §7.2): servers send from 547 to clients on 546.
pub const DHCPV6_SERVER_PORT: u16 = 547;
pub const DHCPV6_CLIENT_PORT: u16 = 546;

/// ND option types (RFC 4861 §4.6).
pub const OPT_SOURCE_LLADDR: u8 = 1;
pub const OPT_TARGET_LLADDR: u8 = 2;
pub const OPT_PREFIX_INFO: u8 = 3;

/// Whether an ICMPv6 type is an error message (types below 128, RFC 4443 §2.1).
pub fn is_error(typ: u8) -> bool {
    typ < 128
}

/// The target address of a Neighbor Solicitation or Advertisement in `frame` (its bytes 8..24).
pub fn nd_target(frame: &[u8], ip: &Ipv6) -> Option<Ipv6Addr> {
    let at = ip.l4_off() + 8;
    let t: [u8; 16] = frame.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(t))
}

/// Hop limit of ND messages (RFC 4861 §7.1: receivers drop ND with another).
pub const ND_HOP_LIMIT: u8 = 255;
/// Hop limit of other ICMPv6 the datapath originates (echo replies, errors).
pub const ORIGIN_HOP_LIMIT: u8 = 64;

/// NA flags (RFC 4861 §4.4): router, solicited, override.
pub const NA_ROUTER: u8 = 0x80;
pub const NA_SOLICITED: u8 = 0x40;
pub const NA_OVERRIDE: u8 = 0x20;

/// The all-nodes multicast address and its MAC.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The least an ICMPv6 error may be, with its quote (RFC 4443 §2.4 (c)): the minimum MTU.
pub const ERROR_MAX: usize = 1280;

/// An Ethernet/IPv6/ICMPv6 frame: `typ`, `code`, the second 32-bit word, then `body`.
#[allow(clippy::too_many_arguments)]
pub fn message(
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    typ: u8,
    code: u8,
    word: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(eth_src, eth_dst).ipv6(src.octets(), dst.octets(), hop_limit).icmpv6_raw(typ, code, word);
    let mut out = Vec::with_capacity(b.size(body.len()));
    // Writing to a Vec fails only for a payload over 4 GiB.
    let _ = b.write(&mut out, body);
    out
}

/// A Neighbor Advertisement for `target` at `mac` (RFC 4861 §4.4), with the target link-layer
/// address option.
pub fn na(mac: [u8; 6], eth_dst: [u8; 6], dst: Ipv6Addr, target: Ipv6Addr, flags: u8) -> Vec<u8> {
    let mut body = [0u8; 24];
    body[..16].copy_from_slice(&target.octets());
    body[16..18].copy_from_slice(&[OPT_TARGET_LLADDR, 1]);
    body[18..].copy_from_slice(&mac);
    message(mac, eth_dst, target, dst, ND_HOP_LIMIT, NEIGHBOR_ADVERT, 0, [flags, 0, 0, 0], &body)
}

/// The answer to the Neighbor Solicitation `ns` (in `frame`) for `target` at `mac`: to the
/// solicitor with S=1, or, for duplicate address detection (source `::`), to all nodes with
/// S=0 (RFC 4861 §7.2.4); O=1, and R when `router`.
pub fn na_for(frame: &[u8], ns: &Ipv6, target: Ipv6Addr, mac: [u8; 6], router: bool) -> Option<Vec<u8>> {
    let r = if router { NA_ROUTER } else { 0 };
    if ns.src.is_unspecified() {
        return Some(na(mac, ALL_NODES_MAC, ALL_NODES, target, r | NA_OVERRIDE));
    }
    let eth_dst: [u8; 6] = frame.get(super::ETH_SRC)?.try_into().ok()?;
    Some(na(mac, eth_dst, ns.src, target, r | NA_SOLICITED | NA_OVERRIDE))
}

/// The echo reply to the echo request `req` (parsed as `ip`), from `src` and `eth_src` to the
/// request's sender; identifier, sequence and data echoed.
pub fn echo_reply(req: &[u8], ip: &Ipv6, src: Ipv6Addr, eth_src: [u8; 6]) -> Option<Vec<u8>> {
    let eth_dst: [u8; 6] = req.get(super::ETH_SRC)?.try_into().ok()?;
    let msg = req.get(ip.l4_off()..ip.end())?;
    let word: [u8; 4] = msg.get(4..8)?.try_into().ok()?;
    Some(message(eth_src, eth_dst, src, ip.src, ORIGIN_HOP_LIMIT, ECHO_REPLY, 0, word, msg.get(8..)?))
}

/// An ICMPv6 error of `typ`/`code` about the packet in `orig` (parsed as `ip`), from `src` and
/// `eth_src` back to the frame's sender: it quotes as much of the packet as keeps the error
/// within 1280 bytes (RFC 4443 §2.4 (c)). `word` is the error's second 32-bit word (the MTU of
/// a packet-too-big, the pointer of a parameter problem, else zero).
pub fn error(orig: &[u8], ip: &Ipv6, typ: u8, code: u8, word: [u8; 4], src: Ipv6Addr, eth_src: [u8; 6]) -> Option<Vec<u8>> {
    let eth_dst: [u8; 6] = orig.get(super::ETH_SRC)?.try_into().ok()?;
    let room = ERROR_MAX - super::ipv6::field::LEN - 8;
    let packet = orig.get(super::ETH_LEN..ip.end())?;
    let quote = packet.get(..packet.len().min(room))?;
    Some(message(eth_src, eth_dst, src, ip.src, ORIGIN_HOP_LIMIT, typ, code, word, quote))
}

/// A Neighbor Solicitation for `target` from `src` at `mac` (RFC 4861 §4.3): to the target's
/// solicited-node address, with the source link-layer address option.
pub fn ns(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let dst = super::ipv6::solicited_node(target);
    let mut body = [0u8; 24];
    body[..16].copy_from_slice(&target.octets());
    body[16..18].copy_from_slice(&[OPT_SOURCE_LLADDR, 1]);
    body[18..].copy_from_slice(&mac);
    message(mac, super::ipv6::multicast_mac(dst), src, dst, ND_HOP_LIMIT, NEIGHBOR_SOLICIT, 0, [0; 4], &body)
}

/// The link-layer address in option `kind` of an NS or NA in `frame` (options follow the
/// 16-byte target; each is `kind`, length in 8-byte units, value).
pub fn nd_option_mac(frame: &[u8], ip: &Ipv6, kind: u8) -> Option<[u8; 6]> {
    let mut opts = frame.get(ip.l4_off() + 24..ip.end())?;
    while let [k, len, ..] = *opts {
        let n = len as usize * 8;
        if n == 0 || n > opts.len() {
            return None;
        }
        if k == kind {
            return opts.get(2..8)?.try_into().ok();
        }
        opts = &opts[n..];
    }
    None
}

/// The current hop limit, router lifetime and prefix lifetimes a router advertisement carries
/// (SPEC §10.3: radvd's defaults, which Neutron's L3 agent uses).
pub const RA_HOP_LIMIT: u8 = 64;
pub const RA_ROUTER_LIFETIME: u16 = 1800;
pub const RA_VALID_LIFETIME: u32 = 86_400;
pub const RA_PREFERRED_LIFETIME: u32 = 14_400;

/// A Router Advertisement (RFC 4861 §4.2) from `mac` and its link-local `src` to `dst`: M and O
/// as `advert` says, the source link-layer option, then one prefix information option per
/// prefix (L=1, A as given).
pub fn ra(mac: [u8; 6], src: Ipv6Addr, eth_dst: [u8; 6], dst: Ipv6Addr, advert: &rules::compile::Advert) -> Vec<u8> {
    let flags = if advert.managed { 0x80 } else { 0 } | if advert.other { 0x40 } else { 0 };
    let [l0, l1] = RA_ROUTER_LIFETIME.to_be_bytes();
    // Reachable time and retransmission timer: unspecified (0).
    let mut body = vec![0u8; 8];
    body.extend_from_slice(&[OPT_SOURCE_LLADDR, 1]);
    body.extend_from_slice(&mac);
    for (prefix, autonomous) in &advert.prefixes {
        body.extend_from_slice(&[OPT_PREFIX_INFO, 4, prefix.prefix_len(), 0x80 | if *autonomous { 0x40 } else { 0 }]);
        body.extend_from_slice(&RA_VALID_LIFETIME.to_be_bytes());
        body.extend_from_slice(&RA_PREFERRED_LIFETIME.to_be_bytes());
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&prefix.network().octets());
    }
    message(mac, eth_dst, src, dst, ND_HOP_LIMIT, ROUTER_ADVERT, 0, [RA_HOP_LIMIT, flags, l0, l1], &body)
}
