//! The flow cache (SPEC §9): every packet after a flow's first takes its cached actions.
//!
//! **Key.** A flow is keyed by the ingress interface and the header fields the simulation reads:
//! MACs, IPv4 addresses, TOS, protocol, fragment position, L4 ports (ICMP type, code and
//! identifier) and TTL; for a VXLAN frame, those of both the outer and the inner frame, and the
//! VNI and flags. TTL is kept as `min(ttl, 17)`: routers only compare it with 1 and at most 16 devices
//! are walked, so every larger value behaves the same. IPv6 likewise: MACs, addresses, traffic
//! class, upper-layer protocol (after the extension headers), fragment position, ports (ICMPv6
//! type, code and identifier) and the hop limit as `min(hop_limit, 17)`. ARP, ND and ICMP(v6)
//! errors are never cached.
//!
//! **Actions.** The simulation's outputs are turned into one [`Rewrite`] (new MACs, addresses,
//! ports or identifier, TTL decrement, with the IPv4 and L4 checksum deltas computed once) and a
//! list of outputs, each optionally with a VXLAN outer-header template. Applying a flow is a copy,
//! a few stores and incremental checksum updates; no allocation once the transmit buffer is warm.
//!
//! **Validity.** A flow remembers the datapath epoch (bumped by a new snapshot), the generation
//! of each learned MAC and ARP entry the simulation read (found or not: `learn.rs`), the
//! connection table generation when the simulation saw a mapping missing, and the connection it
//! belongs to. A hit whose dependencies changed is simulated again; a change to an entry leaves
//! the flows that never read it alone. A hit also stamps the learned entry of its source MAC, so
//! a talking MAC does not age out.
//!
//! Thread safety: a flow table belongs to one worker and is taken `&mut`; what a flow depends on
//! is read through atomics (the epoch, [`Watch`], [`ConnRef`]), so a hit takes no lock.

mod table;

pub use table::FlowTable;

use crate::ct::{ConnRef, Watch};
use crate::drop::DropReason;
use crate::iface::IfIdx;
pub use crate::rewrite::Rewrite;
use crate::wire::{self, vxlan::EncapTemplate, Frag, Headers, L3, L4};

/// TTL values above this behave alike (see the module header).
pub const TTL_CLASS_MAX: u8 = 17;

/// What a flow is matched by, packed into words so the hit path hashes and compares few bytes:
/// five words for a plain IPv4 frame (seven for IPv6); for a VXLAN frame, five for its outer
/// headers, five (seven) for its inner headers, and one for the VNI and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowKey {
    Plain([u64; 5]),
    Vxlan([u64; 11]),
    Plain6([u64; 7]),
    Vxlan6([u64; 13]),
}

/// A MAC as the low 48 bits of a key word (its bytes in little-endian order).
#[inline(always)]
pub(crate) fn mac48(m: [u8; 6]) -> u64 {
    u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0])
}

/// A key word: a MAC ([`mac48`]) and 16 bits above it.
#[inline(always)]
fn mac_word(m: u64, hi: u16) -> u64 {
    m | (hi as u64) << 48
}

/// The L4 words of a key: ports, or ICMP(v6) type and code and the identifier; `None` for an
/// ICMP error (`error` says which types are).
#[inline(always)]
fn l4_words(l4: L4, error: impl Fn(u8) -> bool) -> Option<(u16, u16)> {
    Some(match l4 {
        L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => (sport, dport),
        L4::Icmp { typ, .. } if error(typ) => return None,
        L4::Icmp { typ, code, rest } => (u16::from_be_bytes([typ, code]), u16::from_be_bytes([rest[0], rest[1]])),
        L4::None => (0, 0),
    })
}

#[inline(always)]
fn frag_word(f: Frag) -> u64 {
    match f {
        Frag::Whole => 0,
        Frag::First => 1,
        Frag::Later => 2,
    }
}

/// The key of an IPv4 or IPv6 frame's headers, as a plain frame's; `None` for ARP, other
/// ethertypes, ICMP errors and ND (which the simulation answers, never caches). Built straight
/// into the key and inlined into the hit path: through an intermediate, or as a call, the
/// words went through memory (about 40 instructions a hit more).
#[inline(always)]
fn words(in_if: IfIdx, h: &Headers) -> Option<FlowKey> {
    match &h.l3 {
        L3::Ipv4(ip) => plain4(in_if, mac48(h.eth_src), mac48(h.eth_dst), ip).map(FlowKey::Plain),
        L3::Ipv6(ip) => plain6(in_if, mac48(h.eth_src), mac48(h.eth_dst), ip).map(FlowKey::Plain6),
        _ => None,
    }
}

/// The key words of an IPv6 frame from `in_if` with these MACs ([`mac48`]) and IPv6 headers
/// (see [`words`]).
#[inline(always)]
pub(crate) fn plain6(in_if: IfIdx, eth_src: u64, eth_dst: u64, ip: &wire::Ipv6) -> Option<[u64; 7]> {
    // Of ICMPv6 only echo is cached: errors are not, and ND, RS, RA and MLD are the
    // simulation's to answer or check every time.
    let (l4a, l4b) = l4_words(ip.l4, |t| !matches!(t, wire::icmpv6::ECHO_REQUEST | wire::icmpv6::ECHO_REPLY))?;
    let (s, d) = (u128::from(ip.src), u128::from(ip.dst));
    Some([
        in_if.0 as u64
            | (ip.proto as u64) << 16
            | (ip.hop_limit.min(TTL_CLASS_MAX) as u64) << 24
            | frag_word(ip.frag) << 32
            | (ip.tclass as u64) << 40,
        mac_word(eth_src, l4a),
        mac_word(eth_dst, l4b),
        (s >> 64) as u64,
        s as u64,
        (d >> 64) as u64,
        d as u64,
    ])
}

/// The key words of an IPv4 frame from `in_if` with these MACs ([`mac48`]) and IPv4 headers
/// (see [`words`]).
#[inline(always)]
pub(crate) fn plain4(in_if: IfIdx, eth_src: u64, eth_dst: u64, ip: &wire::Ipv4) -> Option<[u64; 5]> {
    let (l4a, l4b) = l4_words(ip.l4, wire::icmp_is_error)?;
    Some([
        in_if.0 as u64 | (ip.proto as u64) << 16 | (ip.ttl.min(TTL_CLASS_MAX) as u64) << 24 | frag_word(ip.frag) << 32,
        mac_word(eth_src, l4a),
        mac_word(eth_dst, l4b),
        (u32::from(ip.src) as u64) << 32 | u32::from(ip.dst) as u64,
        ip.tos as u64,
    ])
}

/// [`plain4`] of a frame the express lane read ([`wire::tcp_udp4`]): the same words.
#[inline(always)]
pub(crate) fn tcp_udp4(in_if: IfIdx, eth_src: u64, eth_dst: u64, ip: &wire::TcpUdp4) -> [u64; 5] {
    [
        in_if.0 as u64 | (ip.proto as u64) << 16 | (ip.ttl.min(TTL_CLASS_MAX) as u64) << 24,
        mac_word(eth_src, ip.sport),
        mac_word(eth_dst, ip.dport),
        ip.addrs,
        ip.tos as u64,
    ]
}

/// The fields of a frame's key words (five for IPv4, seven for IPv6), for people.
fn describe_words(w: &[u64]) -> String {
    let mac = |x: u64| {
        let b = x.to_le_bytes();
        (format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5]), u16::from_le_bytes([b[6], b[7]]))
    };
    let word = |i: usize| w.get(i).copied().unwrap_or_default();
    let (src_mac, a) = mac(word(1));
    let (dst_mac, b) = mac(word(2));
    let v6 = w.len() == 7;
    let proto = (word(0) >> 16) as u8;
    let l4 = match proto {
        6 | 17 => format!(" {}:{a} → {b}", if proto == 6 { "tcp" } else { "udp" }),
        1 if !v6 => format!(" icmp type {} code {} id {b}", a >> 8, a & 0xff),
        58 if v6 => format!(" icmpv6 type {} code {} id {b}", a >> 8, a & 0xff),
        p => format!(" proto {p}"),
    };
    let frag = ["", " first-fragment", " later-fragment", ""][((word(0) >> 32) & 3) as usize];
    let limit = (word(0) >> 24) as u8;
    let cmp = if limit >= TTL_CLASS_MAX { ">=" } else { "=" };
    if v6 {
        let addr = |hi: u64, lo: u64| std::net::Ipv6Addr::from((hi as u128) << 64 | lo as u128);
        return format!(
            "{src_mac} → {dst_mac} {} → {} tclass {:#04x} hop_limit{cmp}{limit}{l4}{frag}",
            addr(word(3), word(4)),
            addr(word(5), word(6)),
            (word(0) >> 40) as u8
        );
    }
    format!(
        "{src_mac} → {dst_mac} {} → {} tos {:#04x} ttl{cmp}{limit}{l4}{frag}",
        std::net::Ipv4Addr::from((word(3) >> 32) as u32),
        std::net::Ipv4Addr::from(word(3) as u32),
        word(4) as u8,
    )
}

impl FlowKey {
    /// The ingress interface and the matched fields, for `edgepath flows`.
    pub fn describe(&self) -> (IfIdx, String) {
        let vxlan = |outer: &[u64], vni: u64, inner: &[u64]| {
            format!("{} vxlan vni {} flags {:#04x} [{}]", describe_words(outer), vni >> 8, vni as u8, describe_words(inner))
        };
        match self {
            FlowKey::Plain(w) => (IfIdx(w[0] as u16), describe_words(w)),
            FlowKey::Plain6(w) => (IfIdx(w[0] as u16), describe_words(w)),
            FlowKey::Vxlan(w) => (IfIdx(w[0] as u16), vxlan(&w[0..5], w[10], &w[5..10])),
            FlowKey::Vxlan6(w) => (IfIdx(w[0] as u16), vxlan(&w[0..5], w[12], &w[5..12])),
        }
    }

    /// The key of an IPv4 or IPv6 frame; `None` for what is always simulated (ARP, ND, ICMP
    /// errors, other ethertypes).
    #[inline]
    pub fn of(in_if: IfIdx, h: &Headers) -> Option<FlowKey> {
        words(in_if, h)
    }

    /// The destination MAC the key matches: the frame's, or the inner frame's for a VXLAN key.
    pub fn eth_dst(&self) -> rules::model::Mac {
        let w = match self {
            FlowKey::Plain(w) => w.get(2),
            FlowKey::Plain6(w) => w.get(2),
            FlowKey::Vxlan(w) => w.get(7),
            FlowKey::Vxlan6(w) => w.get(7),
        };
        let b = w.copied().unwrap_or_default().to_le_bytes();
        rules::model::Mac([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The key's words, whatever its kind.
    #[inline]
    pub fn words(&self) -> &[u64] {
        match self {
            FlowKey::Plain(w) => w,
            FlowKey::Plain6(w) => w,
            FlowKey::Vxlan(w) => w,
            FlowKey::Vxlan6(w) => w,
        }
    }

    /// The key of a VXLAN frame: its outer headers (`outer`, IPv4), its VXLAN header and its
    /// inner headers (`inner`).
    #[inline]
    pub fn vxlan(in_if: IfIdx, outer: &Headers, v: wire::vxlan::Vxlan, inner: &Headers) -> Option<FlowKey> {
        let Some(FlowKey::Plain(o)) = words(in_if, outer) else { return None };
        let vni = (v.vni as u64) << 8 | v.flags as u64;
        match words(in_if, inner)? {
            FlowKey::Plain(i) => Some(FlowKey::Vxlan([o[0], o[1], o[2], o[3], o[4], i[0], i[1], i[2], i[3], i[4], vni])),
            FlowKey::Plain6(i) => Some(FlowKey::Vxlan6([o[0], o[1], o[2], o[3], o[4], i[0], i[1], i[2], i[3], i[4], i[5], i[6], vni])),
            _ => None,
        }
    }
}

/// Where a flow sends its packets. A VXLAN output's outer header is its tunnel's (56 bytes),
/// shared by every flow into the tunnel ([`wire::vxlan::Shared`]), and the flow's own outer UDP source port,
/// the only part that differs from flow to flow (RFC 7348 §5's entropy): a flow carries a
/// pointer and two bytes, not the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowOut {
    pub iface: IfIdx,
    /// The outer UDP source port, with `encap`.
    pub sport: u16,
    /// QoS ingress policing of the port it leaves by.
    pub police: Option<crate::qos::BucketId>,
    pub encap: Option<std::sync::Arc<EncapTemplate>>,
}

impl FlowOut {
    /// Write its outer header, when it has one, into `out` (exactly
    /// [`wire::vxlan::ENCAP_LEN`] bytes) for an inner frame of `inner_len` bytes.
    #[inline]
    pub fn write_encap(&self, out: &mut [u8], inner_len: usize) {
        if let Some(t) = &self.encap {
            t.write_sport(out, inner_len, self.sport);
        }
    }
}

/// Where a flow's packets go: one place, kept in the flow itself (nearly every flow), or
/// several (a flood).
#[derive(Debug, Clone)]
pub enum Outputs {
    None,
    One(FlowOut),
    Many(Box<[FlowOut]>),
}

impl Outputs {
    pub fn of(outs: Vec<FlowOut>) -> Outputs {
        match outs.as_slice() {
            [] => Outputs::None,
            [one] => Outputs::One(one.clone()),
            _ => Outputs::Many(outs.into_boxed_slice()),
        }
    }
}

impl std::ops::Deref for Outputs {
    type Target = [FlowOut];
    #[inline]
    fn deref(&self) -> &[FlowOut] {
        match self {
            Outputs::None => &[],
            Outputs::One(o) => std::slice::from_ref(o),
            Outputs::Many(v) => v,
        }
    }
}

/// A cached flow. What every hit reads comes first and lies in the flow; what few flows have —
/// a firewall's connection, a table watched for a connection appearing, a fip64 binding, a deny
/// to log — is in [`FlowState`], boxed, so the flows that have none do not carry its room.
#[derive(Debug)]
pub struct Flow {
    /// The flow acts on the inner frame of a VXLAN frame (it decapsulates).
    pub decap: bool,
    /// Why the flow drops, when it has no outputs.
    pub drop: Option<DropReason>,
    /// QoS egress policing of the port the packets come from.
    pub police_in: Option<crate::qos::BucketId>,
    pub epoch: u32,
    pub rewrite: Rewrite,
    pub outputs: Outputs,
    /// The learned MAC and ARP entries the simulation read, by generation (SPEC §9).
    pub learned: crate::learn::LearnedDeps,
    /// The learned entry of the packets' source MAC: each hit keeps it from aging out.
    pub mac_seen: Option<crate::learn::MacSeen>,
    /// The NAT connection the flow belongs to.
    pub conn: Option<ConnRef>,
    pub state: Option<Box<FlowState>>,
    /// Packets that took this flow from the cache, counted by the worker whose table holds it
    /// (the only writer).
    pub hits: std::sync::atomic::AtomicU64,
}

/// What some flows depend on or do besides their NAT connection and learned entries.
#[derive(Debug, Default)]
pub struct FlowState {
    /// The NAT table's generation when the simulation found a mapping missing.
    pub ct_absent: Option<Watch>,
    /// The firewall connection the flow passes by, and the firewall table's generation when the
    /// simulation found none (SPEC §6.2).
    pub fw_conn: Option<ConnRef>,
    pub fw_absent: Option<Watch>,
    /// The fip64 binding the flow translates by (SPEC §11); each hit keeps it alive.
    pub binding: Option<crate::ct::bindings::BindingRef>,
    /// A deny the flow logs for every packet (§8).
    pub fw_log: Option<crate::sim::firewall::FwLog>,
}

impl FlowState {
    /// `Some` when it holds anything.
    pub fn boxed(self) -> Option<Box<FlowState>> {
        let empty = self.ct_absent.is_none()
            && self.fw_conn.is_none()
            && self.fw_absent.is_none()
            && self.binding.is_none()
            && self.fw_log.is_none();
        (!empty).then(|| Box::new(self))
    }
}

impl Flow {
    /// A flow that touches no shared state when applied — no connection, no policing, no log —
    /// so any worker can apply it.
    pub fn is_pure(&self) -> bool {
        self.conn.is_none()
            && self.state.as_ref().is_none_or(|s| s.fw_conn.is_none() && s.binding.is_none() && s.fw_log.is_none())
            && self.police_in.is_none()
            && self.outputs.iter().all(|o| o.police.is_none())
    }

    /// Whether what the flow depends on is as it was (the epoch and learned entries aside),
    /// touching its connections and binding on the way, as a hit of TCP `flags` at `now` does:
    /// a NAT mapping still missing, its connection alive, no firewall connection appeared (or
    /// its own alive), its fip64 binding alive.
    #[inline]
    pub fn holds(&self, flags: u8, now: crate::time::Instant) -> bool {
        let st = self.state.as_deref();
        st.is_none_or(|s| s.ct_absent.as_ref().is_none_or(Watch::unchanged))
            && self.conn.as_ref().is_none_or(|c| c.touch(flags, now))
            && st.is_none_or(|s| {
                s.fw_absent.as_ref().is_none_or(Watch::unchanged)
                    && s.fw_conn.as_ref().is_none_or(|c| c.touch(flags, now))
                    && s.binding.as_ref().is_none_or(|b| b.touch(now))
            })
    }

    /// Whether it logs every packet.
    #[inline]
    pub fn logs(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.fw_log.is_some())
    }

    /// The deny it logs for every packet, if it does.
    #[inline]
    pub fn fw_log(&self) -> Option<crate::sim::firewall::FwLog> {
        self.state.as_ref().and_then(|s| s.fw_log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, ttl: u8, udp: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src, dst, ttl);
        let mut v = Vec::new();
        if udp {
            b.udp(sport, dport).write(&mut v, b"payload!").unwrap();
        } else {
            b.tcp(sport, dport, 1, 1000).write(&mut v, b"payload!").unwrap();
        }
        v
    }

    /// A derived rewrite applied to the original gives exactly what the rewritten packet
    /// looks like when built from scratch (full checksum recomputation).
    #[test]
    fn rewrite_matches_full_recomputation() {
        let mut x: u32 = 12345;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for i in 0..2000 {
            let udp = i % 2 == 0;
            let (s, d, sp, dp) = (rnd().to_be_bytes(), rnd().to_be_bytes(), rnd() as u16, rnd() as u16);
            let ttl = 2 + (rnd() % 250) as u8;
            let orig = frame(s, d, sp, dp, ttl, udp);
            let (s2, d2, sp2) = (if i % 3 == 0 { s } else { rnd().to_be_bytes() }, rnd().to_be_bytes(), rnd() as u16);
            let mut want = frame(s2, d2, sp2, dp, ttl - 1, udp);
            want[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
            let h0 = wire::parse(&orig).unwrap();
            let h1 = wire::parse(&want).unwrap();
            let r = Rewrite::derive(&orig, &h0, &want, &h1).unwrap();
            let mut got = orig.clone();
            r.apply(&mut got, &h0).expect("a rewrite of a whole frame is in range");
            // A checksum of 0x0000 and 0xffff are the same number; compare after normalising.
            let norm = |mut v: Vec<u8>, off: usize| {
                if v[off] == 0xff && v[off + 1] == 0xff {
                    v[off] = 0;
                    v[off + 1] = 0;
                }
                v
            };
            let c = if udp { 14 + 20 + 6 } else { 14 + 20 + 16 };
            assert_eq!(norm(norm(got, 24), c), norm(norm(want, 24), c), "case {i}");
        }
    }
}
