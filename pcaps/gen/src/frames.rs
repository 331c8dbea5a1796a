//! Frame builders for the generator. Everything is built from scratch with etherparse (full
//! checksum computation), so expected frames are an independent statement of what the spec
//! says leaves the datapath — never a recording of edgepath's output.

use etherparse::{icmpv4, Icmpv4Type, IpHeaders, Ipv4Header, PacketBuilder, PacketBuilderStep, UdpHeader};

pub type Mac = [u8; 6];
pub type Ip = [u8; 4];

pub const BCAST: Mac = [0xff; 6];

/// The L4 part of an IPv4 packet.
#[derive(Clone, Debug)]
pub enum L4 {
    Udp(u16, u16),
    /// ports, flags (SYN/ACK as a pair of bools), sequence
    Tcp {
        sport: u16,
        dport: u16,
        syn: bool,
        ack: bool,
        seq: u32,
    },
    /// A reset: RST, with ACK and its number when `ack` is given; window 0 (RFC 793).
    TcpRst {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: Option<u32>,
    },
    EchoRequest {
        id: u16,
        seq: u16,
    },
    EchoReply {
        id: u16,
        seq: u16,
    },
    TimeExceeded,
    Unreachable(icmpv4::DestUnreachableHeader),
}

/// Write the TCP segment or reset `l4` after the IP headers of `b` (IPv4 or IPv6).
pub fn write_tcp(
    b: PacketBuilderStep<IpHeaders>,
    l4: &L4,
    out: &mut Vec<u8>,
    payload: &[u8],
) -> Result<(), etherparse::err::packet::BuildWriteError> {
    match l4 {
        L4::Tcp { sport, dport, syn, ack, seq } => {
            let mut t = b.tcp(*sport, *dport, *seq, 64240);
            if *syn {
                t = t.syn();
            }
            if *ack {
                t = t.ack(1);
            }
            t.write(out, payload)
        }
        L4::TcpRst { sport, dport, seq, ack } => {
            let mut t = b.tcp(*sport, *dport, *seq, 0).rst();
            if let Some(a) = ack {
                t = t.ack(*a);
            }
            t.write(out, payload)
        }
        other => panic!("{other:?} is not TCP"),
    }
}

/// An Ethernet/IPv4 packet, described by its fields.
#[derive(Clone, Debug)]
pub struct P {
    pub smac: Mac,
    pub dmac: Mac,
    pub src: Ip,
    pub dst: Ip,
    pub ttl: u8,
    /// Don't-fragment: set by Linux senders; not set on ICMP the routers originate.
    pub df: bool,
    /// The TOS byte: DSCP and ECN.
    pub tos: u8,
    pub l4: L4,
    pub payload: Vec<u8>,
}

impl P {
    pub fn udp(smac: Mac, dmac: Mac, src: Ip, dst: Ip, sport: u16, dport: u16, payload: &[u8]) -> P {
        P { smac, dmac, src, dst, ttl: 64, df: true, tos: 0, l4: L4::Udp(sport, dport), payload: payload.to_vec() }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut ip = Ipv4Header::new(0, self.ttl, etherparse::IpNumber::UDP, self.src, self.dst).expect("header");
        ip.dont_fragment = self.df;
        ip.dscp = etherparse::IpDscp::try_new(self.tos >> 2).expect("dscp");
        ip.ecn = etherparse::IpEcn::try_new(self.tos & 3).expect("ecn");
        let b = PacketBuilder::ethernet2(self.smac, self.dmac).ip(IpHeaders::Ipv4(ip, Default::default()));
        let mut out = Vec::new();
        match &self.l4 {
            L4::Udp(s, d) => b.udp(*s, *d).write(&mut out, &self.payload),
            L4::Tcp { .. } | L4::TcpRst { .. } => write_tcp(b, &self.l4, &mut out, &self.payload),
            L4::EchoRequest { id, seq } => b.icmpv4_echo_request(*id, *seq).write(&mut out, &self.payload),
            L4::EchoReply { id, seq } => b.icmpv4_echo_reply(*id, *seq).write(&mut out, &self.payload),
            L4::TimeExceeded => {
                b.icmpv4(Icmpv4Type::TimeExceeded(icmpv4::TimeExceededCode::TtlExceededInTransit)).write(&mut out, &self.payload)
            }
            L4::Unreachable(h) => b.icmpv4(Icmpv4Type::DestinationUnreachable(h.clone())).write(&mut out, &self.payload),
        }
        .expect("build");
        out
    }

    /// What a router originates: TTL 64, no DF (SPEC §6.3; as Linux does).
    pub fn originated(mut self) -> P {
        self.ttl = 64;
        self.df = false;
        self
    }

    /// The same packet after `hops` routers, leaving with the given MACs.
    pub fn routed(&self, hops: u8, smac: Mac, dmac: Mac) -> P {
        P { smac, dmac, ttl: self.ttl - hops, ..self.clone() }
    }

    pub fn with_src(&self, src: Ip, sport: Option<u16>) -> P {
        let mut p = P { src, ..self.clone() };
        if let (Some(n), L4::Udp(s, _) | L4::Tcp { sport: s, .. }) = (sport, &mut p.l4) {
            *s = n;
        }
        p
    }

    pub fn with_dst(&self, dst: Ip, dport: Option<u16>) -> P {
        let mut p = P { dst, ..self.clone() };
        if let (Some(n), L4::Udp(_, d) | L4::Tcp { dport: d, .. }) = (dport, &mut p.l4) {
            *d = n;
        }
        p
    }

    /// The bytes an ICMP error quotes: the IP header and the first 8 bytes after it.
    pub fn quote(&self) -> Vec<u8> {
        let b = self.bytes();
        b[14..14 + 20 + 8].to_vec()
    }
}

/// An ARP packet in an Ethernet frame (RFC 826), 42 bytes.
pub fn arp(op: u16, eth_src: Mac, eth_dst: Mac, sha: Mac, spa: Ip, tha: Mac, tpa: Ip) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f
}

/// A broadcast who-has.
pub fn arp_request(sha: Mac, spa: Ip, tpa: Ip) -> Vec<u8> {
    arp(1, sha, BCAST, sha, spa, [0; 6], tpa)
}

/// `sha`/`spa` answering the requester `tha`/`tpa`.
pub fn arp_reply(sha: Mac, spa: Ip, tha: Mac, tpa: Ip) -> Vec<u8> {
    arp(2, sha, tha, sha, spa, tha, tpa)
}

/// The VXLAN source port of SPEC §7 as documented: 32-bit FNV-1a over the inner destination
/// MAC, source MAC, and for IPv4 (and IPv6) source and destination address, protocol and L4
/// ports (zero when absent); 49152 + hash mod 16384. Written here from that text, not borrowed from edgepath.
pub fn vxlan_sport(inner: &[u8]) -> u16 {
    let mut h: u32 = 0x811c9dc5;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h ^= x as u32;
            h = h.wrapping_mul(16777619);
        }
    };
    eat(&inner[0..6]);
    eat(&inner[6..12]);
    // IPv6 as IPv4, with its 16-byte addresses and the next header (no extension headers in
    // the suites).
    if inner[12..14] == [0x86, 0xdd] {
        let proto = inner[20];
        eat(&inner[22..38]);
        eat(&inner[38..54]);
        eat(&[proto]);
        if proto == 6 || proto == 17 {
            eat(&inner[54..58]);
        } else {
            eat(&[0, 0, 0, 0]);
        }
    }
    if inner[12..14] == [0x08, 0x00] {
        let ihl = (inner[14] & 0x0f) as usize * 4;
        let proto = inner[14 + 9];
        eat(&inner[26..30]);
        eat(&inner[30..34]);
        eat(&[proto]);
        let l4 = 14 + ihl;
        if proto == 6 || proto == 17 {
            eat(&inner[l4..l4 + 4]);
        } else {
            eat(&[0, 0, 0, 0]);
        }
    }
    49152 + (h % 16384) as u16
}

/// An inner frame in VXLAN (RFC 7348): outer Ethernet, IPv4 with DF and TTL 64, UDP to 4789
/// with checksum 0, flags 0x08, the VNI.
pub fn vxlan(smac: Mac, dmac: Mac, src: Ip, dst: Ip, vni: u32, flags: u8, inner: &[u8]) -> Vec<u8> {
    vxlan_ttl(smac, dmac, src, dst, vni, flags, inner, 64)
}

/// The same, with the outer TTL a packet has after routers on its way.
#[allow(clippy::too_many_arguments)]
pub fn vxlan_ttl(smac: Mac, dmac: Mac, src: Ip, dst: Ip, vni: u32, flags: u8, inner: &[u8], ttl: u8) -> Vec<u8> {
    let sport = vxlan_sport(inner);
    let udp_len = (8 + 8 + inner.len()) as u16;
    let mut ip = Ipv4Header::new(udp_len, ttl, etherparse::IpNumber::UDP, src, dst).expect("header");
    ip.dont_fragment = true;
    ip.header_checksum = ip.calc_header_checksum();
    let udp = UdpHeader { source_port: sport, destination_port: 4789, length: udp_len, checksum: 0 };
    let mut f = Vec::new();
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip.to_bytes());
    f.extend_from_slice(&udp.to_bytes());
    f.extend_from_slice(&[flags, 0, 0, 0]);
    f.extend_from_slice(&vni.to_be_bytes()[1..4]);
    f.push(0);
    f.extend_from_slice(inner);
    f
}

/// A UDP datagram split into IPv4 fragments of `chunk` payload bytes (a multiple of 8), with the
/// UDP checksum computed over the whole datagram, as a sender that fragments does.
#[allow(clippy::too_many_arguments)]
pub fn udp_fragments(
    smac: Mac,
    dmac: Mac,
    src: Ip,
    dst: Ip,
    ttl: u8,
    id: u16,
    sport: u16,
    dport: u16,
    payload: &[u8],
    chunk: usize,
) -> Vec<Vec<u8>> {
    let whole = Ipv4Header::new((8 + payload.len()) as u16, ttl, etherparse::IpNumber::UDP, src, dst).expect("header");
    let udp = UdpHeader::with_ipv4_checksum(sport, dport, &whole, payload).expect("udp");
    let mut datagram = udp.to_bytes().to_vec();
    datagram.extend_from_slice(payload);
    let n = datagram.len().div_ceil(chunk);
    datagram
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| {
            let mut ip = Ipv4Header::new(c.len() as u16, ttl, etherparse::IpNumber::UDP, src, dst).expect("header");
            ip.identification = id;
            ip.dont_fragment = false;
            ip.more_fragments = i + 1 < n;
            ip.fragment_offset = etherparse::IpFragOffset::try_new((i * chunk / 8) as u16).expect("offset");
            ip.header_checksum = ip.calc_header_checksum();
            let mut f = Vec::new();
            f.extend_from_slice(&dmac);
            f.extend_from_slice(&smac);
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend_from_slice(&ip.to_bytes());
            f.extend_from_slice(c);
            f
        })
        .collect()
}
