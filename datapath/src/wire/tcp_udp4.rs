//! [`tcp_udp4`]: no second parser but a door in front of [`super::parse`]. It takes only the
//! frames most traffic is — whole IPv4 TCP or UDP with a 20-byte header, well formed by every
//! check of `parse`'s IPv4 and L4 arms — and reads them by fixed offsets with a handful of loads
//! and compares; whatever it does not take goes to `parse`, which decides. The vector path's
//! express lane keys by it. Held to `parse` by the `parse` fuzz target (what it takes, `parse`
//! takes and reads the same) and by `the_lane_keys_what_the_general_door_keys`.

use super::{ETH_LEN, IPPROTO_TCP, IPPROTO_UDP};

/// A whole IPv4 TCP or UDP frame whose IPv4 header has no options, as the vector path's
/// express lane reads it ([`tcp_udp4`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpUdp4 {
    pub total_len: u16,
    pub tos: u8,
    pub ttl: u8,
    pub proto: u8,
    /// The source address in the high half, the destination in the low (each as a number).
    pub addrs: u64,
    pub sport: u16,
    pub dport: u16,
    /// TCP's flags; 0 for UDP.
    pub flags: u8,
}

impl TcpUdp4 {
    /// End of the IP datagram in the frame.
    #[inline(always)]
    pub fn end(&self) -> usize {
        ETH_LEN + self.total_len as usize
    }
}

/// The headers of `frame` when it is one of the frames most traffic is made of — IPv4 with a
/// 20-byte header, whole, TCP or UDP — and well formed; `None` for any other frame, which the
/// caller gives to [`super::parse`]. A subset of what `parse` takes, read with its rules
/// (every check of its IPv4 and L4 arms, the header checksum included), and read the same:
/// the tests below, the `parse` fuzz target and `the_lane_keys_what_the_general_door_keys`
/// hold the two together. It reads fixed offsets with a handful of loads and compares, and builds no
/// [`super::Headers`]: the vector path's express lane keys a batch's frames by it.
#[inline(always)]
pub fn tcp_udp4(frame: &[u8]) -> Option<TcpUdp4> {
    // Ethernet, a 20-byte IPv4 header and UDP's 8 bytes; TCP's 20 are checked below.
    const FIXED: usize = ETH_LEN + 20 + 8;
    let b = frame.first_chunk::<FIXED>()?;
    // Ethertype IPv4, version 4 and a 20-byte header: bytes 12 to 14, read as one word.
    if u32::from_le_bytes([b[12], b[13], b[14], b[15]]) & 0x00ff_ffff != u32::from_le_bytes([0x08, 0x00, 0x45, 0]) {
        return None;
    }
    let total_len = u16::from_be_bytes([b[16], b[17]]);
    // Neither a later fragment nor a first one (MF set or an offset); DF may be set.
    if ETH_LEN + total_len as usize > frame.len() || u16::from_be_bytes([b[20], b[21]]) & 0x3fff != 0 {
        return None;
    }
    let word = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as u64;
    // The header's one's-complement sum from five native 32-bit words (see `parse_ipv4`).
    let wide = word(14) + word(18) + word(22) + word(26) + word(30);
    let s = (wide & 0xffff_ffff) + (wide >> 32);
    let s = (s & 0xffff) + (s >> 16);
    if (s & 0xffff) + (s >> 16) != 0xffff {
        return None;
    }
    let (proto, l4) = (b[23], ETH_LEN + 20);
    let flags = match proto {
        IPPROTO_UDP if total_len >= 28 => 0,
        IPPROTO_TCP => {
            let tcp = frame.get(l4..)?.first_chunk::<20>()?;
            let off = (tcp[12] >> 4) as u16 * 4;
            if off < 20 || total_len < 20 + off {
                return None;
            }
            tcp[13]
        }
        _ => return None,
    };
    Some(TcpUdp4 {
        total_len,
        tos: b[15],
        ttl: b[22],
        proto,
        addrs: u64::from_be_bytes([b[26], b[27], b[28], b[29], b[30], b[31], b[32], b[33]]),
        sport: u16::from_be_bytes([b[34], b[35]]),
        dport: u16::from_be_bytes([b[36], b[37]]),
        flags,
    })
}

/// What [`super::parse`] reads of a frame, as [`tcp_udp4`] gives it: `None` where `parse` does
/// not take it whole, TCP or UDP, with a 20-byte header.
pub fn by_parse(frame: &[u8]) -> Option<TcpUdp4> {
    let super::L3::Ipv4(ip) = super::parse(frame).ok()?.l3 else { return None };
    let (sport, dport, flags) = match ip.l4 {
        super::L4::Tcp { sport, dport, flags } => (sport, dport, flags),
        super::L4::Udp { sport, dport } => (sport, dport, 0),
        _ => return None,
    };
    (ip.hlen == 20 && ip.frag == super::Frag::Whole).then_some(TcpUdp4 {
        total_len: ip.total_len,
        tos: ip.tos,
        ttl: ip.ttl,
        proto: ip.proto,
        addrs: (u32::from(ip.src) as u64) << 32 | u32::from(ip.dst) as u64,
        sport,
        dport,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// Frames of every shape `tcp_udp4` might meet — TCP, UDP, ICMP, with payload and without,
    /// with IP options — each header byte changed in turn to a few values, with the checksum
    /// made right and not, and cut short: it takes exactly what `parse` takes whole, TCP or
    /// UDP with a 20-byte header, and reads every field the same.
    #[test]
    fn it_takes_what_parse_takes_and_reads_it_the_same() {
        let b = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
        let mut frames = Vec::new();
        for payload in [&b""[..], b"a payload"] {
            let mut v = Vec::new();
            b().udp(1234, 80).write(&mut v, payload).unwrap();
            frames.push(v);
            let mut v = Vec::new();
            b().tcp(1234, 80, 1, 1000).syn().ack(7).write(&mut v, payload).unwrap();
            frames.push(v);
            let mut v = Vec::new();
            b().icmpv4_echo_request(7, 1).write(&mut v, payload).unwrap();
            frames.push(v);
        }
        // One with an IP option (a 24-byte header): `parse` takes it, `tcp_udp4` leaves it.
        let mut opt = frames[0].clone();
        opt.splice(34..34, [1, 1, 1, 0]);
        opt[14] = 0x46;
        opt[17] += 4;
        frames.push(opt);
        let fix = |f: &mut Vec<u8>| {
            let hlen = (f[14] as usize & 0x0f) * 4;
            if f.len() >= 14 + hlen.max(20) {
                f[24..26].fill(0);
                let c = crate::csum::finish(crate::csum::sum(&f[14..14 + hlen.max(20)]));
                f[24..26].copy_from_slice(&c.to_be_bytes());
            }
        };
        let (mut taken, mut left) = (0, 0);
        for f in &frames {
            for at in 0..f.len().min(60) {
                for x in [0u8, 1, 5, 0x11, 0x20, 0x45, 0x50, 0xff, f[at] ^ 0x40, f[at].wrapping_sub(1)] {
                    let mut g = f.clone();
                    g[at] = x;
                    let mut fixed = g.clone();
                    fix(&mut fixed);
                    for g in [g.clone(), fixed, g[..g.len() - 1].to_vec()] {
                        let fast = tcp_udp4(&g);
                        assert_eq!(fast, by_parse(&g), "frame {g:02x?}");
                        match fast {
                            Some(_) => taken += 1,
                            None => left += 1,
                        }
                    }
                }
            }
        }
        assert!(taken > 1000 && left > 1000, "taken {taken}, left {left}");
    }
}
