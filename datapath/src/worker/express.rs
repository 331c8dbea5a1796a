//! The vector path's express lane (issue 14): the frames most traffic is made of — whole IPv4
//! TCP and UDP, VXLAN carrying them, and IPv6 — read into the words of their key and its hash,
//! written into their place in the batch's [`Lanes`], and their fresh flows with one output (an
//! IPv4 or IPv6 rewrite, a decapsulation, an encapsulation, a fip64 translation either way)
//! applied in place, without the general door's headers, classification record and outcome.
//! It is a shortcut, not a second datapath: an IPv4 frame is read by [`wire::tcp_udp4`] (a
//! subset of what the one parser takes, by its rules) and an IPv6 one by
//! [`wire::parse_ipv6_frame`] (the parser's IPv6 arm), keyed by the words a
//! [`FlowKey::Plain`], [`FlowKey::Plain6`] or [`FlowKey::Vxlan`] holds, and a hit does what
//! [`Datapath::process_or_defer`] does for it, in the same order. Whatever the lane does not
//! take — another kind of frame, a miss, a stale flow, a flow that floods, drops, logs or does
//! not fit in place, a due timer — it leaves untouched for the general door, which then finds
//! everything as it was (the pcap suites and the datapath fuzz target compare the two byte for
//! byte).

use std::sync::atomic::Ordering::Relaxed;

use crate::batch::{RxFrames, BATCH};
use crate::fastpath::{InPlace, Outcome};
use crate::flow::{FlowKey, Outputs};
use crate::iface::IfIdx;
use crate::rewrite::Rewrite;
use crate::time::Instant;
use crate::wire::{self, vxlan, Ipv4};

use super::Datapath;

/// The low 48 bits: a MAC in a key word.
const MAC48: u64 = (1 << 48) - 1;

/// What the lane read of a batch's frames, by their place in the batch (reused, never moved):
/// written in place by the first stage and read in place by the last, so no frame's record is
/// built on the stack and copied.
#[derive(Debug)]
pub(super) struct Lanes(pub(super) [Lane; BATCH]);

impl Default for Lanes {
    fn default() -> Self {
        Lanes([Lane { kind: Kind::Door, hash: 0, words: [0; 11], aux: Aux::default() }; BATCH])
    }
}

/// What the lane read of one frame: its kind of key, the key's words and their hash, and the
/// little else its flow needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lane {
    pub(super) kind: Kind,
    pub(super) hash: u64,
    /// The key's words: a plain IPv4 frame's first five, IPv6's seven, VXLAN's eleven.
    words: [u64; 11],
    aux: Aux,
}

/// What a frame of a batch is to the lane: left to the general door (whose
/// [`super::vector::Classified`] records are taken in the frames' order), or a key the lane
/// reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Door,
    Plain,
    Plain6,
    Vxlan,
}

/// For a VXLAN frame, where its inner frame lies; the TCP flags of the frame and of the inner
/// frame (0 for UDP); an IPv6 frame's upper layer, from its IPv6 header.
#[derive(Debug, Clone, Copy, Default)]
struct Aux {
    inner: (u16, u16),
    flags: u8,
    inner_flags: u8,
    l4_rel: u16,
}

impl Lane {
    /// The frame's key, as the general door keys it.
    fn key(&self) -> Option<FlowKey> {
        let w = &self.words;
        match self.kind {
            Kind::Door => None,
            Kind::Plain => w.first_chunk().map(|w| FlowKey::Plain(*w)),
            Kind::Plain6 => w.first_chunk().map(|w| FlowKey::Plain6(*w)),
            Kind::Vxlan => Some(FlowKey::Vxlan(*w)),
        }
    }
}

/// How a lane's flow rewrites its frame: by the bytes alone (IPv4 TCP and UDP), or by its IPv4
/// headers (a translation).
enum How<'a> {
    Bytes(&'a crate::rewrite::Rewrite4),
    Headers(&'a Rewrite, Ipv4),
    /// An IPv6 rewrite, by where the upper layer begins.
    Bytes6(&'a crate::rewrite::Rewrite6, u16),
    Headers6(&'a Rewrite, wire::Ipv6),
}

/// A frame's MACs as key words, straight from its Ethernet header: two loads, not twelve bytes.
#[inline(always)]
fn macs(frame: &[u8]) -> Option<(u64, u64)> {
    let eth = frame.first_chunk::<{ wire::ETH_LEN }>()?;
    let word = |at: usize| eth.get(at..at + 8).map_or(0, |b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
    Some((word(6) & MAC48, word(0) & MAC48))
}

/// A whole IPv4 TCP or UDP frame's headers and key words; `None` for any other.
#[inline(always)]
fn tcp_udp4(iface: IfIdx, frame: &[u8]) -> Option<(wire::TcpUdp4, [u64; 5])> {
    let ip = wire::tcp_udp4(frame)?;
    let (src, dst) = macs(frame)?;
    Some((ip, crate::flow::tcp_udp4(iface, src, dst, &ip)))
}

impl Datapath {
    /// The lane's reading of `frame`, from `iface`, into `lane`: its kind of key
    /// ([`Kind::Door`] for what it leaves to the general door: not whole IPv4 TCP or UDP, nor
    /// VXLAN carrying it, nor IPv6 a flow is keyed by; malformed), the key's words and hash.
    #[inline(always)]
    pub(super) fn lane(&self, iface: IfIdx, frame: &[u8], lane: &mut Lane) {
        lane.kind = match self.read_lane(iface, frame, &mut lane.words, &mut lane.aux) {
            Some((kind, hash)) => {
                lane.hash = hash;
                kind
            }
            None => Kind::Door,
        };
    }

    /// [`Datapath::lane`] of one frame: its key's words into `w` and the rest into `aux`; its
    /// kind and hash, `None` for the general door.
    #[inline(always)]
    fn read_lane(&self, iface: IfIdx, frame: &[u8], w: &mut [u64; 11], aux: &mut Aux) -> Option<(Kind, u64)> {
        let Some((ip, outer)) = tcp_udp4(iface, frame) else { return self.lane6(iface, frame, w, aux) };
        if ip.proto != wire::IPPROTO_UDP || ip.dport != vxlan::PORT {
            *aux = Aux { flags: ip.flags, ..Aux::default() };
            let plain: &mut [u64; 5] = w.first_chunk_mut()?;
            *plain = outer;
            return Some((Kind::Plain, self.flows.hash_words(&outer)));
        }
        // VXLAN: keyed by the outer words, the inner frame's and the VNI with the flags.
        const AT: usize = wire::ETH_LEN + 20 + 8;
        let v = frame.get(AT..AT + 8)?;
        let inner = AT + 8..ip.end();
        let (i4, i) = tcp_udp4(iface, frame.get(inner.clone())?)?;
        let vni = (u32::from_be_bytes([0, v[4], v[5], v[6]]) as u64) << 8 | v[0] as u64;
        *w = [outer[0], outer[1], outer[2], outer[3], outer[4], i[0], i[1], i[2], i[3], i[4], vni];
        *aux = Aux {
            inner: (u16::try_from(inner.start).ok()?, u16::try_from(inner.end).ok()?),
            flags: ip.flags,
            inner_flags: i4.flags,
            l4_rel: 0,
        };
        Some((Kind::Vxlan, self.flows.hash_words(w)))
    }

    /// [`Datapath::read_lane`] of a frame that is not whole IPv4 TCP or UDP: an IPv6 frame a
    /// flow is keyed by.
    #[inline(always)]
    fn lane6(&self, iface: IfIdx, frame: &[u8], w: &mut [u64; 11], aux: &mut Aux) -> Option<(Kind, u64)> {
        let ip = wire::parse_ipv6_frame(frame)?.ok()?;
        let (src, dst) = macs(frame)?;
        let k = crate::flow::plain6(iface, src, dst, &ip)?;
        *aux = Aux { flags: ip.l4.tcp_flags(), l4_rel: ip.l4_rel, ..Aux::default() };
        let plain: &mut [u64; 7] = w.first_chunk_mut()?;
        *plain = k;
        Some((Kind::Plain6, self.flows.hash_words(&k)))
    }

    /// `n` frames of a batch from `iface` the lane took ([`Datapath::express`]): received,
    /// flow cache hits, applied in place. Counted once a batch.
    #[inline(always)]
    pub(super) fn taken(&mut self, iface: IfIdx, n: u64) {
        self.stats.count_rx_n(iface, n);
        self.stats.flow_hits += n;
        self.stats.hits_in_place += n;
    }

    /// Frame `k` of `rx`, read by the lane into `lane`, taken through its fresh flow,
    /// applied in place: true when it was (staged, and counted but for what
    /// [`Datapath::taken`] counts), false when the frame is left, untouched, for the general
    /// door. A flow found stale is let go, as the general door lets it go.
    #[inline(always)]
    pub(super) fn express(&mut self, rx: &mut impl RxFrames, k: usize, lane: &Lane, now: Instant) -> bool {
        if self.shared.timers_due(now) {
            return false;
        }
        let (hash, w) = (lane.hash, &lane.words);
        let found = match lane.kind {
            Kind::Door => None,
            Kind::Plain => w.first_chunk().and_then(|w| self.flows.get_plain(hash, w)),
            Kind::Plain6 => w.first_chunk().and_then(|w| self.flows.get_plain6(hash, w)),
            Kind::Vxlan => self.flows.get_vxlan(hash, w),
        };
        let Some(flow) = found else { return false };
        if flow.epoch != self.shared.epoch() || !flow.learned.fresh(&self.gens) {
            if let Some(key) = lane.key() {
                self.flows.remove(&key);
            }
            return false;
        }
        let (Outputs::One(out), false) = (&flow.outputs, flow.logs()) else { return false };
        let (buf, at) = rx.buf_mut(k);
        let aux = &lane.aux;
        // A decapsulating flow acts on the inner frame, any other on the whole. An IPv4
        // rewrite keeps the frame's length; a translation (fip64) reads the IP headers again
        // for the lengths it writes (the lane kept its record short).
        let (body, flags, how) = match (flow.decap, &flow.rewrite) {
            (true, Rewrite::V4(r)) => (at + aux.inner.0 as usize..at + aux.inner.1 as usize, aux.inner_flags, How::Bytes(r)),
            (false, Rewrite::V4(r)) => (at..buf.len(), aux.flags, How::Bytes(r)),
            (false, r @ Rewrite::To6(_)) => match buf.get(at..).map(wire::parse_ipv4_frame) {
                Some(Some(Ok(ip))) => (at..buf.len(), aux.flags, How::Headers(r, ip)),
                _ => return false,
            },
            (false, Rewrite::V6(r)) => (at..buf.len(), aux.flags, How::Bytes6(r, aux.l4_rel)),
            (false, r @ Rewrite::To4(_)) => match buf.get(at..).map(wire::parse_ipv6_frame) {
                Some(Some(Ok(ip))) => (at..buf.len(), aux.flags, How::Headers6(r, ip)),
                _ => return false,
            },
            _ => return false,
        };
        let len = body.len();
        let (copy, grow) = match &how {
            How::Bytes(_) | How::Bytes6(..) => (0..len, 0),
            How::Headers(r, ip) => r.copy4(ip, len),
            How::Headers6(r, ip) => r.copy6(ip, len),
        };
        let Some(plan) = InPlace::plan(flow, body, copy, grow) else { return false };
        // Checked last: it touches the flow's connections.
        if !flow.holds(flags, now) {
            if let Some(key) = lane.key() {
                self.flows.remove(&key);
            }
            return false;
        }
        self.tx.begin();
        // Received, a hit, in place: counted for the batch by the caller ([`Datapath::taken`]).
        if let Some(m) = &flow.mac_seen {
            m.touch(now);
        }
        flow.hits.store(flow.hits.load(Relaxed) + 1, Relaxed);
        let qos = &self.snap.qos;
        let conforms = |b| qos.conforms(b, len, now);
        let tx = &mut self.tx;
        let outcome = match how {
            // The common rewrite written out here, not behind a closure: LLVM kept the closure a
            // call.
            How::Bytes(r) => match plan.conforms(flow, conforms) {
                true => {
                    if let Some(f) = plan.frame(buf) {
                        let rewritten = r.apply_bytes(f, None);
                        debug_assert!(rewritten.is_ok(), "a flow's rewrite out of range: {rewritten:?}");
                        plan.stage(tx, k);
                    }
                    Outcome::Forwarded
                }
                false => Outcome::Dropped(crate::drop::DropReason::QosPoliced),
            },
            How::Headers(r, ip) => plan.apply(flow, buf, tx, k, conforms, |f| r.apply4(f, &ip)),
            How::Bytes6(r, l4) => plan.apply(flow, buf, tx, k, conforms, |f| r.apply_at(f, l4)),
            How::Headers6(r, ip) => plan.apply(flow, buf, tx, k, conforms, |f| r.apply6(f, &ip)),
        };
        match outcome {
            Outcome::Dropped(r) => self.stats.drops.incr(r),
            _ => {
                self.stats.forwarded += 1;
                self.stats.count_tx(out.iface);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// The IPv4 header checksum at `at` in `f` made right, when a header is there.
    fn fix_ipv4(f: &mut [u8], at: usize) {
        let Some(&first) = f.get(at) else { return };
        let hlen = ((first & 0x0f) as usize * 4).max(20);
        if f.len() >= at + hlen {
            f[at + 10..at + 12].fill(0);
            let c = crate::csum::finish(crate::csum::sum(&f[at..at + hlen]));
            f[at + 10..at + 12].copy_from_slice(&c.to_be_bytes());
        }
    }

    /// Whatever the lane reads, the general door reads the same: a key of the same words, with
    /// the same hash. Frames of every kind — TCP, UDP, ICMP, VXLAN carrying TCP, UDP or ICMP,
    /// UDP to the VXLAN port carrying less than a VXLAN frame, IPv6 TCP, UDP and echo — with every byte of their headers
    /// (outer, VXLAN and inner) changed in turn to a few values, as changed, with the IPv4
    /// checksums made right, and one byte short: the lane must turn down what the door does not
    /// key, and key the rest as it does.
    #[test]
    fn the_lane_keys_what_the_general_door_keys() {
        let snap = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/fip-dnat-inbound/snapshot.json");
        let topo = rules::compile::load_topology(&snap).unwrap();
        let dp = Datapath::new(std::sync::Arc::new(topo), "host-a", &Default::default()).unwrap();
        let b = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
        let mut plain = Vec::new();
        for (n, payload) in [(0, &b""[..]), (1, b"payload of a few bytes")] {
            let mut v = Vec::new();
            b().udp(1234 + n, 80).write(&mut v, payload).unwrap();
            plain.push(v);
            let mut v = Vec::new();
            b().tcp(1234 + n, 80, 1, 1000).syn().write(&mut v, payload).unwrap();
            plain.push(v);
            let mut v = Vec::new();
            b().icmpv4_echo_request(7, 1).write(&mut v, payload).unwrap();
            plain.push(v);
        }
        let mut frames = plain.clone();
        for inner in &plain {
            let mut v = Vec::new();
            let vxlan = [&[0x08, 0, 0, 0, 0, 0, 42, 0][..], inner].concat();
            b().udp(49200, vxlan::PORT).write(&mut v, &vxlan).unwrap();
            frames.push(v);
        }
        let mut v = Vec::new();
        b().udp(1234, vxlan::PORT).write(&mut v, b"short").unwrap();
        frames.push(v);
        let b6 = || {
            let (s, d) =
                ([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv6(s, d, 64)
        };
        for payload in [&b""[..], b"payload"] {
            let mut v = Vec::new();
            b6().udp(1234, 80).write(&mut v, payload).unwrap();
            frames.push(v);
            let mut v = Vec::new();
            b6().tcp(1234, 80, 1, 1000).syn().write(&mut v, payload).unwrap();
            frames.push(v);
            let mut v = Vec::new();
            b6().icmpv6_echo_request(7, 1).write(&mut v, payload).unwrap();
            frames.push(v);
        }
        let (mut taken, mut vxlan, mut v6, mut left) = (0, 0, 0, 0);
        let mut lanes = Box::<Lanes>::default();
        for f in &frames {
            for at in 0..f.len().min(100) {
                for x in [0u8, 1, 0x45, 0x46, 0xff, f[at] ^ 0x20, f[at].wrapping_add(1)] {
                    let mut g = f.clone();
                    g[at] = x;
                    let mut fixed = g.clone();
                    fix_ipv4(&mut fixed, 14);
                    fix_ipv4(&mut fixed, 64);
                    for g in [g.clone(), fixed, g[..g.len() - 1].to_vec()] {
                        let c = dp.classify(IfIdx(3), &g);
                        // Each in a slot of its own, as the frames of a batch are.
                        let k = (taken + left) % BATCH;
                        let lane = &mut lanes.0[k];
                        dp.lane(IfIdx(3), &g, lane);
                        match lane.key() {
                            Some(key) => {
                                taken += 1;
                                vxlan += (lane.kind == Kind::Vxlan) as usize;
                                v6 += (lane.kind == Kind::Plain6) as usize;
                                assert_eq!(c.key, Some(key), "frame {g:02x?}");
                                assert_eq!(c.hash, lane.hash);
                                let inner = c.inner.as_ref().map(|(r, _, _)| (r.start as u16, r.end as u16));
                                assert_eq!(inner.unwrap_or((0, 0)), lane.aux.inner, "frame {g:02x?}");
                            }
                            None => left += 1,
                        }
                    }
                }
            }
        }
        assert!(taken > 1000 && vxlan > 1000 && v6 > 1000 && left > 1000, "taken {taken} ({vxlan} VXLAN, {v6} IPv6), left {left}");
    }
}
