//! IP/ICMP translation between IPv6 and IPv4 (RFC 7915), as fip64 uses it (SPEC §11): the
//! whole packet rebuilt with the new header, built off the hit path.
//!
//! 6 → 4 (§5.1): traffic class → TOS, hop limit → TTL, the flow label dropped; DF set, unless
//! the packet carries a fragment header, whose identification (low 16 bits), offset and M flag
//! become IPv4's, with DF clear. Only that one extension header is translated: any other, and an
//! upper layer other than TCP, UDP and ICMPv6, is a counted drop. 4 → 6 (§4.1): TOS → traffic
//! class, TTL → hop limit; options are not carried; an IPv4 fragment gets a fragment header. TCP
//! and UDP checksums are adjusted for the new pseudo-header (an IPv4 UDP datagram without a
//! checksum gets one computed, IPv6 requiring it); ICMP and ICMPv6 are mapped by §4.2's and
//! §5.2's tables, and the checksum recomputed (ICMPv6's covers the pseudo-header, ICMPv4's does
//! not). An ICMP error's quoted packet is translated too, with the addresses the caller gives
//! for it, and its lengths are the ones its own header states; an ICMPv6 error stays within
//! 1280 bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ipv6::{IPPROTO_FRAGMENT, IPPROTO_ICMPV6};
use super::{icmpv6, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_LEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use crate::csum::{self, Delta};
use crate::drop::DropReason;

/// New addresses for a translated packet: the outer ones, and those of the packet an ICMP
/// error quotes.
#[derive(Debug, Clone, Copy)]
pub struct Addrs<A> {
    pub src: A,
    pub dst: A,
    pub quoted: Option<(A, A)>,
}

/// The Ethernet frame of IPv6 packet `frame` translated to IPv4 (MACs kept; routing sets them).
pub fn frame_to_ipv4(frame: &[u8], a: Addrs<Ipv4Addr>) -> Result<Vec<u8>, DropReason> {
    let p = frame.get(ETH_LEN..).ok_or(DropReason::Fip64Truncated)?;
    let ip = to_ipv4(p, a, false)?;
    Ok(with_eth(frame, ETHERTYPE_IPV4, &ip))
}

/// The Ethernet frame of IPv4 packet `frame` translated to IPv6.
pub fn frame_to_ipv6(frame: &[u8], a: Addrs<Ipv6Addr>) -> Result<Vec<u8>, DropReason> {
    let p = frame.get(ETH_LEN..).ok_or(DropReason::Fip64Truncated)?;
    let ip = to_ipv6(p, a, false)?;
    Ok(with_eth(frame, ETHERTYPE_IPV6, &ip))
}

fn with_eth(frame: &[u8], ethertype: u16, ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_LEN + ip.len());
    f.extend_from_slice(frame.get(..12).unwrap_or(&[0; 12]));
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// Whether `next` is an IPv6 extension header (RFC 8200 §4, RFC 7045's list).
fn is_extension(next: u8) -> bool {
    matches!(next, 0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254)
}

/// The checksum delta of a change of the sums `old` to `new`.
fn sums(old: u32, new: u32) -> Delta {
    Delta::ZERO.word(csum::fold(old), csum::fold(new))
}

fn word(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b.get(at).copied().unwrap_or(0), b.get(at + 1).copied().unwrap_or(0)])
}

/// Add `d` to the 16-bit checksum at `at` of `l4`, when the bytes are there (a quote may stop
/// short); UDP keeps its zero rule when `udp`.
fn patch(l4: &mut [u8], at: usize, d: Delta, udp: bool) {
    let _ = super::ipv4::patch(l4, at..at + 2, d, udp);
}

/// The IPv6 packet `p` as IPv4. `quoted`: `p` is the packet an ICMP error quotes (its length
/// fields are what it states; its bytes may stop short).
fn to_ipv4(p: &[u8], a: Addrs<Ipv4Addr>, quoted: bool) -> Result<Vec<u8>, DropReason> {
    let h = p.first_chunk::<40>().ok_or(DropReason::Fip64Truncated)?;
    let payload_len = word(h, 4) as usize;
    let (src6, dst6) = (&h[8..24], &h[24..40]);
    let (mut next, mut off, mut frag) = (h[6], 40, None);
    if next == IPPROTO_FRAGMENT {
        let f = p.get(40..48).ok_or(DropReason::Fip64Truncated)?;
        let offset = word(f, 2) >> 3;
        frag = Some((word(f, 6), offset, f[3] & 1 != 0));
        (next, off) = (f[0], 48);
    }
    if is_extension(next) {
        return Err(DropReason::Fip64ExtensionHeader);
    }
    if !matches!(next, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMPV6) {
        return Err(DropReason::Fip64Protocol);
    }
    let stated = (40 + payload_len).saturating_sub(off);
    let end = p.len().min(40 + payload_len);
    let mut l4 = p.get(off..end.max(off)).unwrap_or_default().to_vec();
    let first = frag.is_none_or(|(_, offset, _)| offset == 0);
    let proto = if next == IPPROTO_ICMPV6 { IPPROTO_ICMP } else { next };
    let (src4, dst4) = (a.src.octets(), a.dst.octets());
    if first {
        let addrs = sums(csum::sum(src6) + csum::sum(dst6), csum::sum(&src4) + csum::sum(&dst4));
        match next {
            IPPROTO_TCP => patch(&mut l4, 16, addrs, false),
            IPPROTO_UDP => patch(&mut l4, 6, addrs, true),
            _ => {
                let (old_type, old_csum) = (word(&l4, 0), word(&l4, 2));
                let is_error;
                (l4, is_error) = icmp_message(&l4, icmp6_to_4, |t| t != 8 && t != 0, quoted, a.quoted, to_ipv4)?;
                if !is_error {
                    // An echo's checksum loses the pseudo-header and gains the new type: updated,
                    // not recomputed, so a wrong one stays wrong (as a router carries it).
                    let pseudo = csum::sum(src6) + csum::sum(dst6) + stated as u32 + IPPROTO_ICMPV6 as u32;
                    let d = sums(pseudo, 0).plus(Delta::ZERO.word(old_type, word(&l4, 0)));
                    let c = d.apply(old_csum);
                    l4[2..4].copy_from_slice(&c.to_be_bytes());
                } else {
                    let c = csum::finish(csum::sum(&l4));
                    l4[2..4].copy_from_slice(&c.to_be_bytes());
                }
            }
        }
    }
    let total = 20 + if first && next == IPPROTO_ICMPV6 && !quoted { l4.len() } else { stated };
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[1] = (word(h, 0) >> 4) as u8;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    let flags_frag = match frag {
        Some((id, offset, more)) => {
            ip[4..6].copy_from_slice(&id.to_be_bytes());
            offset | if more { 0x2000 } else { 0 }
        }
        None => 0x4000,
    };
    ip[6..8].copy_from_slice(&flags_frag.to_be_bytes());
    ip[8] = h[7];
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src4);
    ip[16..20].copy_from_slice(&dst4);
    let c = csum::finish(csum::sum(&ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    Ok(ip.into_iter().chain(l4).collect())
}

/// The IPv4 packet `p` as IPv6 (`quoted` as for [`to_ipv4`]).
fn to_ipv6(p: &[u8], a: Addrs<Ipv6Addr>, quoted: bool) -> Result<Vec<u8>, DropReason> {
    let h = p.first_chunk::<20>().ok_or(DropReason::Fip64Truncated)?;
    let hlen = (h[0] & 0x0f) as usize * 4;
    let total = word(h, 2) as usize;
    let proto = h[9];
    if !matches!(proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMP) {
        return Err(DropReason::Fip64Protocol);
    }
    let (flags_frag, id) = (word(h, 6), word(h, 4));
    let offset = flags_frag & 0x1fff;
    let more = flags_frag & 0x2000 != 0;
    let fragmented = more || offset != 0;
    let stated = total.saturating_sub(hlen);
    let end = p.len().min(total);
    let mut l4 = p.get(hlen..end.max(hlen)).unwrap_or_default().to_vec();
    let next = if proto == IPPROTO_ICMP { IPPROTO_ICMPV6 } else { proto };
    let (src6, dst6) = (a.src.octets(), a.dst.octets());
    let pseudo6 = |len: usize| csum::sum(&src6) + csum::sum(&dst6) + len as u32 + next as u32;
    if offset == 0 {
        let addrs = sums(csum::sum(&h[12..16]) + csum::sum(&h[16..20]), csum::sum(&src6) + csum::sum(&dst6));
        match proto {
            IPPROTO_TCP => patch(&mut l4, 16, addrs, false),
            // IPv6 requires the UDP checksum: one IPv4 left out is computed (RFC 7915 §4.5).
            IPPROTO_UDP if word(&l4, 6) == 0 && !fragmented && !quoted && l4.len() >= 8 => {
                let c = match csum::finish(pseudo6(l4.len()) + csum::sum(&l4)) {
                    0 => 0xffff,
                    c => c,
                };
                l4[6..8].copy_from_slice(&c.to_be_bytes());
            }
            IPPROTO_UDP => patch(&mut l4, 6, addrs, true),
            _ => {
                let (old_type, old_csum) = (word(&l4, 0), word(&l4, 2));
                let is_error;
                (l4, is_error) = icmp_message(&l4, icmp4_to_6, icmpv6::is_error, quoted, a.quoted, to_ipv6)?;
                if is_error {
                    // The error and its quote within the IPv6 minimum MTU (RFC 4443 §2.4 (c)).
                    l4.truncate(icmpv6::ERROR_MAX - 40);
                }
                let c = if !is_error {
                    let d = sums(0, pseudo6(stated)).plus(Delta::ZERO.word(old_type, word(&l4, 0)));
                    d.apply(old_csum)
                } else {
                    csum::finish(pseudo6(l4.len()) + csum::sum(&l4))
                };
                l4[2..4].copy_from_slice(&c.to_be_bytes());
            }
        }
    }
    let icmp_outer = offset == 0 && proto == IPPROTO_ICMP && !quoted;
    let upper_len = if icmp_outer { l4.len() } else { stated };
    let mut ip = Vec::with_capacity(48 + l4.len());
    let first_word = 0x6000_0000u32 | (h[1] as u32) << 20;
    ip.extend_from_slice(&first_word.to_be_bytes());
    let payload_len = upper_len + if fragmented { 8 } else { 0 };
    ip.extend_from_slice(&(payload_len as u16).to_be_bytes());
    ip.push(if fragmented { IPPROTO_FRAGMENT } else { next });
    ip.push(h[8]);
    ip.extend_from_slice(&src6);
    ip.extend_from_slice(&dst6);
    if fragmented {
        ip.extend_from_slice(&[next, 0]);
        ip.extend_from_slice(&((offset << 3) | more as u16).to_be_bytes());
        ip.extend_from_slice(&(id as u32).to_be_bytes());
    }
    ip.extend_from_slice(&l4);
    Ok(ip)
}

/// One family's ICMP type, code and second word as the other's.
type IcmpMap = fn(u8, u8, Option<&[u8]>) -> Result<(u8, u8, [u8; 4]), DropReason>;

/// One direction's packet translation ([`to_ipv4`], [`to_ipv6`]).
type Translate<A> = fn(&[u8], Addrs<A>, bool) -> Result<Vec<u8>, DropReason>;

/// The ICMP message `l4` in the other family, checksum zero: type, code and second word by
/// `map`, and for an error (`is_error` of the new type) the quoted packet translated by
/// `translate` with the addresses `quoted_addrs`. Also whether it is an error. `quoted`: `l4`
/// is itself inside a quote, where an error is never found (RFC 4443 §2.4: no error about an
/// error).
fn icmp_message<A>(
    l4: &[u8],
    map: IcmpMap,
    is_error: fn(u8) -> bool,
    quoted: bool,
    quoted_addrs: Option<(A, A)>,
    translate: Translate<A>,
) -> Result<(Vec<u8>, bool), DropReason> {
    let (typ, code, rest) = map(l4.first().copied().unwrap_or(0), l4.get(1).copied().unwrap_or(0), l4.get(4..8))?;
    let error = is_error(typ);
    let body = l4.get(8..).unwrap_or_default();
    let body = match (error, quoted_addrs) {
        (true, Some((src, dst))) if !quoted => translate(body, Addrs { src, dst, quoted: None }, true)?,
        (true, _) => return Err(DropReason::Fip64IcmpUntranslatable),
        (false, _) => body.to_vec(),
    };
    Ok(([typ, code, 0, 0].into_iter().chain(rest).chain(body).collect(), error))
}

/// ICMPv6 type, code and second word as ICMPv4's (RFC 7915 §5.2; an echo keeps its code); an
/// error for what is not translated.
fn icmp6_to_4(typ: u8, code: u8, rest: Option<&[u8]>) -> Result<(u8, u8, [u8; 4]), DropReason> {
    let rest: [u8; 4] = rest.and_then(|r| r.try_into().ok()).unwrap_or([0; 4]);
    let none = Err(DropReason::Fip64IcmpUntranslatable);
    Ok(match (typ, code) {
        (icmpv6::ECHO_REQUEST, c) => (8, c, rest),
        (icmpv6::ECHO_REPLY, c) => (0, c, rest),
        (icmpv6::DEST_UNREACH, 0 | 2 | 3) => (3, 1, [0; 4]),
        (icmpv6::DEST_UNREACH, 1) => (3, 10, [0; 4]),
        (icmpv6::DEST_UNREACH, 4) => (3, 3, [0; 4]),
        (icmpv6::PACKET_TOO_BIG, _) => {
            let mtu = u32::from_be_bytes(rest).saturating_sub(20).min(0xffff) as u16;
            let [a, b] = mtu.to_be_bytes();
            (3, 4, [0, 0, a, b])
        }
        (icmpv6::TIME_EXCEEDED, c) => (11, c, [0; 4]),
        (icmpv6::PARAM_PROBLEM, 0) => {
            let pointer = match u32::from_be_bytes(rest) {
                p @ (0 | 1) => p as u8,
                4 | 5 => 2,
                6 => 9,
                7 => 8,
                8..=23 => 12,
                24..=39 => 16,
                _ => return none,
            };
            (12, 0, [pointer, 0, 0, 0])
        }
        (icmpv6::PARAM_PROBLEM, 1) => (3, 2, [0; 4]),
        _ => return none,
    })
}

/// ICMPv4 type, code and second word as ICMPv6's (RFC 7915 §4.2).
fn icmp4_to_6(typ: u8, code: u8, rest: Option<&[u8]>) -> Result<(u8, u8, [u8; 4]), DropReason> {
    let rest: [u8; 4] = rest.and_then(|r| r.try_into().ok()).unwrap_or([0; 4]);
    let none = Err(DropReason::Fip64IcmpUntranslatable);
    Ok(match (typ, code) {
        (8, c) => (icmpv6::ECHO_REQUEST, c, rest),
        (0, c) => (icmpv6::ECHO_REPLY, c, rest),
        (3, 0 | 1 | 5 | 6 | 7 | 8 | 11 | 12) => (icmpv6::DEST_UNREACH, 0, [0; 4]),
        (3, 2) => (icmpv6::PARAM_PROBLEM, 1, 6u32.to_be_bytes()),
        (3, 3) => (icmpv6::DEST_UNREACH, 4, [0; 4]),
        (3, 4) => {
            let mtu = u16::from_be_bytes([rest[2], rest[3]]) as u32 + 20;
            (icmpv6::PACKET_TOO_BIG, 0, mtu.to_be_bytes())
        }
        (3, 9 | 10 | 13 | 15) => (icmpv6::DEST_UNREACH, 1, [0; 4]),
        (11, c) => (icmpv6::TIME_EXCEEDED, c, [0; 4]),
        (12, 0 | 2) => {
            let pointer: u32 = match rest[0] {
                p @ (0 | 1) => p as u32,
                2 | 3 => 4,
                8 => 7,
                9 => 6,
                12..=15 => 8,
                16..=19 => 24,
                _ => return none,
            };
            (icmpv6::PARAM_PROBLEM, 0, pointer.to_be_bytes())
        }
        _ => return none,
    })
}
