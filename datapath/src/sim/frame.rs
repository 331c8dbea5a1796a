//! The simulation's working copy of a packet: bytes plus parsed headers, with setters that
//! keep every checksum right incrementally (RFC 1624) — including ICMP errors, whose quoted
//! header is translated together with the outer one (RFC 5508).

use std::net::Ipv4Addr;

use crate::csum::{self, Delta};
use crate::drop::DropReason;
use crate::wire::{self, icmp_is_error, Headers, Ipv4, L3, L4};

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
            L3::Arp(_) => None,
        }
    }

    fn reparse(&mut self) {
        if let Ok(h) = wire::parse(&self.buf) {
            self.h = h;
        }
    }

    pub fn set_eth(&mut self, src: [u8; 6], dst: [u8; 6]) {
        wire::write_bytes(&mut self.buf, 0, &dst);
        wire::write_bytes(&mut self.buf, 6, &src);
        self.h.eth_dst = dst;
        self.h.eth_src = src;
    }

    /// Set the DSCP of an IPv4 packet, keeping its ECN bits, updating the header checksum.
    pub fn set_dscp(&mut self, dscp: u8) {
        let Some(ip) = self.ipv4().copied() else { return };
        let tos = (dscp << 2) | (ip.tos & 0x03);
        let first = self.buf[wire::ETH_LEN];
        let d = Delta::ZERO.word(u16::from_be_bytes([first, ip.tos]), u16::from_be_bytes([first, tos]));
        self.buf[wire::ETH_LEN + 1] = tos;
        wire::patch_csum(&mut self.buf, wire::ETH_LEN + 10, d, false);
        self.reparse();
    }

    /// Decrement TTL by one, updating the header checksum.
    pub fn dec_ttl(&mut self) {
        let Some(ip) = self.ipv4().copied() else {
            return;
        };
        let ttl_off = wire::ETH_LEN + 8;
        let old = u16::from_be_bytes([ip.ttl, ip.proto]);
        let new = u16::from_be_bytes([ip.ttl.wrapping_sub(1), ip.proto]);
        self.buf[ttl_off] = ip.ttl.wrapping_sub(1);
        wire::patch_csum(&mut self.buf, wire::ETH_LEN + 10, Delta::ZERO.word(old, new), false);
        self.reparse();
    }

    /// Whether the packet is an ICMP error (its NAT goes through the quoted header).
    pub fn is_icmp_error(&self) -> bool {
        matches!(self.ipv4().map(|ip| ip.l4), Some(L4::Icmp { typ, .. }) if icmp_is_error(typ))
    }

    /// Rewrite the source address (and, for TCP/UDP, the source port; for an echo request, the
    /// identifier). An ICMP error has its outer source and its quoted destination rewritten.
    pub fn nat_src(&mut self, addr: Ipv4Addr, port: Option<u16>) {
        if self.is_icmp_error() {
            self.set_addr(12, addr);
            self.quote_rewrite(16, addr, port.map(|p| (2, p)));
        } else {
            self.set_addr(12, addr);
            if let Some(p) = port {
                self.set_port(true, p);
            }
        }
        self.reparse();
    }

    /// Rewrite the destination (and port, or an echo reply's identifier); for an ICMP error, the
    /// outer destination and the quoted source.
    pub fn nat_dst(&mut self, addr: Ipv4Addr, port: Option<u16>) {
        if self.is_icmp_error() {
            self.set_addr(16, addr);
            self.quote_rewrite(12, addr, port.map(|p| (0, p)));
        } else {
            self.set_addr(16, addr);
            if let Some(p) = port {
                self.set_port(false, p);
            }
        }
        self.reparse();
    }

    /// Set the IPv4 address at header offset `field` (12 = source, 16 = destination).
    fn set_addr(&mut self, field: usize, addr: Ipv4Addr) {
        let Some(ip) = self.ipv4().copied() else {
            return;
        };
        let off = wire::ETH_LEN + field;
        let old = u32::from_be_bytes([self.buf[off], self.buf[off + 1], self.buf[off + 2], self.buf[off + 3]]);
        let d = Delta::ZERO.dword(old, u32::from(addr));
        wire::write_bytes(&mut self.buf, off, &addr.octets());
        wire::patch_csum(&mut self.buf, wire::ETH_LEN + 10, d, false);
        let at = ip.csum_at();
        if let Some(c) = at.l4_pseudo {
            wire::patch_csum(&mut self.buf, c, d, at.udp);
        }
    }

    /// Set the source (`src`) or destination port; for ICMP echo, the identifier.
    fn set_port(&mut self, src: bool, port: u16) {
        let Some(ip) = self.ipv4().copied() else {
            return;
        };
        let l4 = ip.l4_off();
        let off = match ip.l4 {
            L4::Tcp { .. } | L4::Udp { .. } => l4 + if src { 0 } else { 2 },
            L4::Icmp { typ: wire::ICMP_ECHO_REQUEST, .. } if src => l4 + 4,
            L4::Icmp { typ: wire::ICMP_ECHO_REPLY, .. } if !src => l4 + 4,
            _ => return,
        };
        let old = u16::from_be_bytes([self.buf[off], self.buf[off + 1]]);
        wire::write16(&mut self.buf, off, port);
        let at = ip.csum_at();
        if let Some(c) = at.l4 {
            wire::patch_csum(&mut self.buf, c, Delta::ZERO.word(old, port), at.udp);
        }
        if let L4::Icmp { .. } = ip.l4 {
            wire::icmp_zero_message(&mut self.buf, &ip);
        }
    }

    fn quote(&self) -> Option<Quote> {
        let ip = self.ipv4()?;
        let q = ip.l4_off() + 8;
        let end = ip.end().min(self.buf.len());
        let first = *self.buf.get(q)?;
        let hlen = (first & 0x0f) as usize * 4;
        if first >> 4 != 4 || hlen < 20 || q + hlen > end {
            return None;
        }
        Some(Quote { ip: q, hlen, proto: self.buf[q + 9], len: end - q })
    }

    /// The connection key of the quoted packet, when the quote holds one.
    pub fn quoted_key(&self) -> Option<crate::ct::CtKey> {
        let q = self.quote()?;
        let b = &self.buf;
        let src = Ipv4Addr::new(b[q.ip + 12], b[q.ip + 13], b[q.ip + 14], b[q.ip + 15]);
        let dst = Ipv4Addr::new(b[q.ip + 16], b[q.ip + 17], b[q.ip + 18], b[q.ip + 19]);
        let l4 = q.ip + q.hlen;
        if q.len < q.hlen + 8 {
            return None;
        }
        let w = |o: usize| u16::from_be_bytes([b[l4 + o], b[l4 + o + 1]]);
        let (sport, dport) = match q.proto {
            wire::IPPROTO_TCP | wire::IPPROTO_UDP => (w(0), w(2)),
            wire::IPPROTO_ICMP => match b[l4] {
                wire::ICMP_ECHO_REQUEST => (w(4), 0),
                wire::ICMP_ECHO_REPLY => (0, w(4)),
                _ => return None,
            },
            _ => return None,
        };
        Some(crate::ct::CtKey { proto: q.proto, src, sport, dst, dport })
    }

    /// Rewrite the quoted address at IP offset `field` and optionally a quoted port (at L4
    /// offset 0 or 2; for a quoted echo, the identifier), fix the quoted IPv4 and UDP checksums,
    /// and recompute the ICMP checksum over the message.
    fn quote_rewrite(&mut self, field: usize, addr: Ipv4Addr, port: Option<(usize, u16)>) {
        let Some(q) = self.quote() else { return };
        let Some(ip) = self.ipv4().copied() else {
            return;
        };
        let off = q.ip + field;
        let old = u32::from_be_bytes([self.buf[off], self.buf[off + 1], self.buf[off + 2], self.buf[off + 3]]);
        let d = Delta::ZERO.dword(old, u32::from(addr));
        wire::write_bytes(&mut self.buf, off, &addr.octets());
        wire::patch_csum(&mut self.buf, q.ip + 10, d, false);
        let l4 = q.ip + q.hlen;
        let mut l4d = if q.proto == wire::IPPROTO_UDP { d } else { Delta::ZERO };
        if let Some((at, p)) = port {
            let at = match q.proto {
                wire::IPPROTO_ICMP => 4,
                _ => at,
            };
            if l4 + at + 2 <= q.ip + q.len {
                let oldp = u16::from_be_bytes([self.buf[l4 + at], self.buf[l4 + at + 1]]);
                wire::write16(&mut self.buf, l4 + at, p);
                l4d = l4d.plus(Delta::ZERO.word(oldp, p));
            }
        }
        if q.proto == wire::IPPROTO_UDP && l4 + 8 <= q.ip + q.len {
            wire::patch_csum(&mut self.buf, l4 + 6, l4d, true);
        }
        // The ICMP checksum covers the whole message, quote included: recompute it.
        let icmp = ip.l4_off();
        let end = ip.end().min(self.buf.len());
        self.buf[icmp + 2] = 0;
        self.buf[icmp + 3] = 0;
        let c = csum::finish(csum::sum(&self.buf[icmp..end]));
        wire::write16(&mut self.buf, icmp + 2, c);
    }
}
