//! The connection tuple a table is keyed by, for either family.

use std::net::IpAddr;

use crate::wire::{icmpv6, Ipv4, Ipv6, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, L4};

/// A connection tuple as seen in one direction. For ICMP echo the identifier stands in for a
/// port: a request is `(src, id) → (dst, 0)`, a reply `(src, 0) → (dst, id)`, so the reply
/// direction's key of a request is exactly the key of its reply. ICMPv6 echo (protocol 58) is
/// keyed the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey {
    pub proto: u8,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

impl CtKey {
    /// The key of an IPv4 packet, for the protocols dynamic NAT translates.
    pub fn of(ip: &Ipv4) -> Option<CtKey> {
        let (sport, dport) = ports(&ip.l4, (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY))?;
        Some(CtKey { proto: ip.proto, src: ip.src.into(), sport, dst: ip.dst.into(), dport })
    }

    /// The key of an IPv6 packet: TCP, UDP and ICMPv6 echo.
    pub fn of6(ip: &Ipv6) -> Option<CtKey> {
        let (sport, dport) = ports(&ip.l4, (icmpv6::ECHO_REQUEST, icmpv6::ECHO_REPLY))?;
        Some(CtKey { proto: ip.proto, src: ip.src.into(), sport, dst: ip.dst.into(), dport })
    }

    /// The same tuple seen from the other end.
    pub fn reversed(&self) -> CtKey {
        CtKey { proto: self.proto, src: self.dst, sport: self.dport, dst: self.src, dport: self.sport }
    }
}

/// A key's ports: TCP's and UDP's, or an echo's identifier as the source port of a request
/// and the destination port of a reply (`echo` names the family's request and reply types).
fn ports(l4: &L4, echo: (u8, u8)) -> Option<(u16, u16)> {
    let id = |rest: &[u8; 4]| u16::from_be_bytes([rest[0], rest[1]]);
    match *l4 {
        L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => Some((sport, dport)),
        L4::Icmp { typ, ref rest, .. } if typ == echo.0 => Some((id(rest), 0)),
        L4::Icmp { typ, ref rest, .. } if typ == echo.1 => Some((0, id(rest))),
        _ => None,
    }
}
