//! The simulation's working copy of a packet: bytes plus parsed headers, with setters that
//! keep every checksum right incrementally (RFC 1624) — including ICMP errors, whose quoted
//! header is translated together with the outer one (RFC 5508).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::csum::Delta;
use crate::ct::CtKey;
use crate::drop::DropReason;
use crate::wire::ipv4::{self, l4field, Ipv4Mut};
use crate::wire::ipv6::{self, Ipv6Mut, IPPROTO_ICMPV6};
use crate::wire::{self, icmp_is_error, icmpv6, Headers, Ipv4, L3, L4};

#[derive(Debug, Clone)]
pub struct Frame {
    pub buf: Vec<u8>,
    pub h: Headers,
    /// Bytes of outer header this simulation put in front of the frame it received (a router
    /// VTEP's encapsulation), 0 otherwise.
    pub encap_len: usize,
}

/// The header an ICMP error quotes, located in its frame.
#[derive(Debug, Clone, Copy)]
struct Quote {
    /// Offset of the quoted IPv4 header.
    ip: usize,
    hlen: usize,
    proto: u8,
    /// Bytes of the quote available in the frame.
    len: usize,
}

impl Frame {
    pub fn parse(buf: Vec<u8>) -> Result<Frame, DropReason> {
        let h = wire::parse(&buf)?;
        Ok(Frame { buf, h, encap_len: 0 })
    }

    pub fn ipv4(&self) -> Option<&Ipv4> {
        match &self.h.l3 {
            L3::Ipv4(ip) => Some(ip),
            _ => None,
        }
    }

    fn reparse(&mut self) {
        if let Ok(h) = wire::parse(&self.buf) {
            self.h = h;
        }
    }

    pub fn set_eth(&mut self, src: [u8; 6], dst: [u8; 6]) {
        // Every frame the simulation holds parsed, so its Ethernet header is there.
        let _ = ipv4::put(&mut self.buf, wire::ETH_DST, &dst);
        let _ = ipv4::put(&mut self.buf, wire::ETH_SRC, &src);
        self.h.eth_dst = dst;
        self.h.eth_src = src;
    }

    /// The IPv4 packet as a mutable view, when the frame is IPv4.
    fn ip_mut(&mut self) -> Option<(Ipv4Mut<'_>, Ipv4)> {
        let ip = self.ipv4().copied()?;
        let view = Ipv4Mut::new(self.buf.get_mut(wire::ETH_LEN..)?).ok()?;
        Some((view, ip))
    }

    /// Set the DSCP of an IPv4 packet (updating the header checksum) or of an IPv6 packet's
    /// traffic class (SPEC §10.2), keeping the ECN bits. Other frames are left alone.
    pub fn set_dscp(&mut self, dscp: u8) {
        if let L3::Ipv6(ip) = self.h.l3 {
            if let Some(Ok(mut v)) = self.buf.get_mut(wire::ETH_LEN..).map(|b| Ipv6Mut::new(b, ip.l4_rel as usize)) {
                v.set_tclass((dscp << 2) | (ip.tclass & 0x03));
            }
            return self.reparse();
        }
        let Some((mut v, ip)) = self.ip_mut() else { return };
        v.set_tos((dscp << 2) | (ip.tos & 0x03));
        self.reparse();
    }

    /// Decrement an IPv6 packet's hop limit by one (no header checksum to update).
    pub fn dec_hop_limit(&mut self) {
        let L3::Ipv6(ip) = self.h.l3 else { return };
        if let Some(Ok(mut v)) = self.buf.get_mut(wire::ETH_LEN..).map(|b| Ipv6Mut::new(b, ip.l4_rel as usize)) {
            v.dec_hop_limit();
        }
        self.reparse();
    }

    /// Decrement TTL by one, updating the header checksum.
    pub fn dec_ttl(&mut self) {
        let Some((mut v, _)) = self.ip_mut() else { return };
        v.dec_ttl();
        self.reparse();
    }

    /// Whether the packet is an ICMP or ICMPv6 error (its connection is the one it quotes; its
    /// NAT goes through the quoted header).
    pub fn is_icmp_error(&self) -> bool {
        match self.h.l3 {
            L3::Ipv4(Ipv4 { l4: L4::Icmp { typ, .. }, .. }) => icmp_is_error(typ),
            L3::Ipv6(wire::Ipv6 { proto: IPPROTO_ICMPV6, l4: L4::Icmp { typ, .. }, .. }) => icmpv6::is_error(typ),
            _ => false,
        }
    }

    /// The TCP flags, 0 for anything but TCP.
    pub fn tcp_flags(&self) -> u8 {
        match self.h.l3 {
            L3::Ipv4(Ipv4 { l4: L4::Tcp { flags, .. }, .. }) | L3::Ipv6(wire::Ipv6 { l4: L4::Tcp { flags, .. }, .. }) => flags,
            _ => 0,
        }
    }

    /// The connection key a packet is matched by: its own, or for an ICMP error the reverse of
    /// the packet it quotes (the error travels against the quoted packet's direction).
    pub fn conn_key(&self) -> Option<CtKey> {
        if self.is_icmp_error() {
            return self.quoted_key().map(|k| k.reversed());
        }
        match &self.h.l3 {
            L3::Ipv4(ip) => CtKey::of(ip),
            L3::Ipv6(ip) => CtKey::of6(ip),
            _ => None,
        }
    }

    /// Rewrite the source address (and, for TCP/UDP, the source port; for an echo request, the
    /// identifier). An ICMP error has its outer source and its quoted destination rewritten.
    pub fn nat_src(&mut self, addr: Ipv4Addr, port: Option<u16>) {
        if self.is_icmp_error() {
            self.set_addr(Side::Src, addr);
            self.quote_rewrite(Side::Dst, addr, port);
        } else {
            self.set_addr(Side::Src, addr);
            if let Some(p) = port {
                self.set_port(Side::Src, p);
            }
        }
        self.reparse();
    }

    /// Rewrite the destination (and port, or an echo reply's identifier); for an ICMP error, the
    /// outer destination and the quoted source.
    pub fn nat_dst(&mut self, addr: Ipv4Addr, port: Option<u16>) {
        if self.is_icmp_error() {
            self.set_addr(Side::Dst, addr);
            self.quote_rewrite(Side::Src, addr, port);
        } else {
            self.set_addr(Side::Dst, addr);
            if let Some(p) = port {
                self.set_port(Side::Dst, p);
            }
        }
        self.reparse();
    }

    /// Set the source or destination address, keeping the header checksum and, for TCP and UDP,
    /// the L4 checksum over the pseudo-header.
    fn set_addr(&mut self, side: Side, addr: Ipv4Addr) {
        let Some((mut v, ip)) = self.ip_mut() else { return };
        let d = match side {
            Side::Src => v.set_src(addr),
            Side::Dst => v.set_dst(addr),
        };
        if let Some((c, udp)) = ipv4::l4_checksum(&ip.l4).filter(|_| !matches!(ip.l4, L4::Icmp { .. })) {
            // A truncated L4 header has no checksum to keep (the parse let it through as such).
            let _ = v.patch_l4(c, d, udp);
        }
    }

    /// Set the source or destination port; for ICMP echo, the identifier.
    fn set_port(&mut self, side: Side, port: u16) {
        let Some((mut v, ip)) = self.ip_mut() else { return };
        let at = match (ip.l4, side) {
            (L4::Tcp { .. } | L4::Udp { .. }, Side::Src) => l4field::SRC_PORT,
            (L4::Tcp { .. } | L4::Udp { .. }, Side::Dst) => l4field::DST_PORT,
            (L4::Icmp { typ: wire::ICMP_ECHO_REQUEST, .. }, Side::Src) => l4field::ICMP_IDENT,
            (L4::Icmp { typ: wire::ICMP_ECHO_REPLY, .. }, Side::Dst) => l4field::ICMP_IDENT,
            _ => return,
        };
        // The parse read the ports, so they are there.
        let Ok(d) = v.set_l4_word(at, port) else { return };
        if let Some((c, udp)) = ipv4::l4_checksum(&ip.l4) {
            let _ = v.patch_l4(c, d, udp);
        }
        if let L4::Icmp { .. } = ip.l4 {
            v.icmp_zero_message((ip.total_len as usize).saturating_sub(ip.hlen));
        }
    }

    fn quote(&self) -> Option<Quote> {
        let ip = self.ipv4()?;
        let q = ip.l4_off() + l4field::ICMP_QUOTE;
        let end = ip.end().min(self.buf.len());
        let first = *self.buf.get(q + ipv4::field::VER_IHL)?;
        let hlen = (first & 0x0f) as usize * 4;
        if first >> 4 != 4 || hlen < ipv4::field::MIN_LEN || q + hlen > end {
            return None;
        }
        Some(Quote { ip: q, hlen, proto: *self.buf.get(q + ipv4::field::PROTOCOL)?, len: end - q })
    }

    /// The connection key of the quoted packet, when the quote holds one.
    fn quoted_key(&self) -> Option<CtKey> {
        if let L3::Ipv6(ip) = &self.h.l3 {
            return self.quoted_key6(ip);
        }
        let q = self.quote()?;
        let quoted = self.buf.get(q.ip..q.ip + q.len)?;
        let addr = |at: std::ops::Range<usize>| -> Option<Ipv4Addr> { Some(Ipv4Addr::from(<[u8; 4]>::try_from(quoted.get(at)?).ok()?)) };
        let (src, dst) = (addr(ipv4::field::SRC)?, addr(ipv4::field::DST)?);
        let l4 = quoted.get(q.hlen..)?;
        if l4.len() < 8 {
            return None;
        }
        let w = |at: std::ops::Range<usize>| ipv4::get16(l4, at).ok();
        let (sport, dport) = match q.proto {
            wire::IPPROTO_TCP | wire::IPPROTO_UDP => (w(l4field::SRC_PORT)?, w(l4field::DST_PORT)?),
            wire::IPPROTO_ICMP => match *l4.get(l4field::ICMP_TYPE)? {
                wire::ICMP_ECHO_REQUEST => (w(l4field::ICMP_IDENT)?, 0),
                wire::ICMP_ECHO_REPLY => (0, w(l4field::ICMP_IDENT)?),
                _ => return None,
            },
            _ => return None,
        };
        Some(CtKey { proto: q.proto, src: src.into(), sport, dst: dst.into(), dport })
    }

    /// The connection key an ICMPv6 error's quote holds: a TCP, UDP or echo packet whose
    /// upper layer follows the fixed header (a quote with extension headers holds none).
    fn quoted_key6(&self, ip: &wire::Ipv6) -> Option<CtKey> {
        let q = ip.l4_off() + l4field::ICMP_QUOTE;
        let quoted = self.buf.get(q..ip.end().min(self.buf.len()))?;
        let h = quoted.first_chunk::<{ ipv6::field::LEN }>()?;
        if h[0] >> 4 != 6 {
            return None;
        }
        let addr = |at: std::ops::Range<usize>| Some(Ipv6Addr::from(<[u8; 16]>::try_from(h.get(at)?).ok()?));
        let (src, dst, proto) = (addr(ipv6::field::SRC)?, addr(ipv6::field::DST)?, h[ipv6::field::NEXT_HEADER]);
        let l4 = quoted.get(ipv6::field::LEN..).filter(|l4| l4.len() >= 8)?;
        let w = |at: std::ops::Range<usize>| ipv4::get16(l4, at).ok();
        let (sport, dport) = match proto {
            wire::IPPROTO_TCP | wire::IPPROTO_UDP => (w(l4field::SRC_PORT)?, w(l4field::DST_PORT)?),
            IPPROTO_ICMPV6 => match *l4.get(l4field::ICMP_TYPE)? {
                icmpv6::ECHO_REQUEST => (w(l4field::ICMP_IDENT)?, 0),
                icmpv6::ECHO_REPLY => (0, w(l4field::ICMP_IDENT)?),
                _ => return None,
            },
            _ => return None,
        };
        Some(CtKey { proto, src: src.into(), sport, dst: dst.into(), dport })
    }

    /// Rewrite the quoted packet's address on `side`, and optionally its port on that side (for
    /// a quoted echo, the identifier); fix the quoted IPv4 and UDP checksums, and recompute the
    /// ICMP checksum over the message.
    fn quote_rewrite(&mut self, side: Side, addr: Ipv4Addr, port: Option<u16>) {
        let Some(q) = self.quote() else { return };
        let Some(ip) = self.ipv4().copied() else { return };
        let Some(quoted) = self.buf.get_mut(q.ip..q.ip + q.len) else { return };
        let Ok(mut qv) = Ipv4Mut::new(quoted) else { return };
        let d = match side {
            Side::Src => qv.set_src(addr),
            Side::Dst => qv.set_dst(addr),
        };
        let mut l4d = if q.proto == wire::IPPROTO_UDP { d } else { Delta::ZERO };
        if let Some(p) = port {
            let at = match (q.proto, side) {
                (wire::IPPROTO_ICMP, _) => l4field::ICMP_IDENT,
                (_, Side::Src) => l4field::SRC_PORT,
                (_, Side::Dst) => l4field::DST_PORT,
            };
            // A quote may stop short of the port: then only the addresses change.
            if let Ok(pd) = qv.set_l4_word(at, p) {
                l4d = l4d.plus(pd);
            }
        }
        if q.proto == wire::IPPROTO_UDP {
            let _ = qv.patch_l4(l4field::UDP_CHECKSUM, l4d, true);
        }
        // The ICMP checksum covers the whole message, quote included: recompute it.
        let len = ip.end().min(self.buf.len()).saturating_sub(ip.l4_off());
        let Some((mut v, _)) = self.ip_mut() else { return };
        // `len` stops at the buffer's end, so it is in range.
        let _ = v.fill_icmp_checksum(len);
    }
}

/// Which address (and port) of a packet.
#[derive(Debug, Clone, Copy)]
enum Side {
    Src,
    Dst,
}
