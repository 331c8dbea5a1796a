//! What the operator reads (SPEC §9 `trace`, `conntrack`, `flows`): text built from the state,
//! off the packet path. Nothing here changes what the datapath does.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use rules::compile::Topology;

use crate::fastpath::{send_frames, TxBuf};
use crate::flow::FlowTable;
use crate::iface::{IfIdx, Ifaces};
use crate::qos::QosBuckets;
use crate::sim::{frame::Frame, Sim};
use crate::state::{State, Tables};
use crate::time::Instant;
use crate::wire;

/// What the simulation did with one packet (text and JSON are both made from this).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TraceRecord {
    /// The interface it arrived on, and the packet.
    pub interface: String,
    pub packet: String,
    /// Every device, rule and NAT step, in order.
    pub steps: Vec<String>,
    /// What leaves: the interface and the frame.
    pub out: Vec<(String, String)>,
    /// Why nothing left, when nothing did: a drop reason (`dropped: …`), or waiting or answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<&'static str>,
    pub outcome: String,
}

impl TraceRecord {
    /// The text: the packet, the steps indented, one line per frame out or the outcome.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("packet on {}: {}", self.interface, self.packet)];
        lines.extend(self.steps.iter().map(|s| format!("  {s}")));
        lines.extend(self.out.iter().map(|(i, f)| format!("→ {i}: {f}")));
        if self.out.is_empty() {
            lines.push(self.outcome.clone());
        }
        lines
    }
}

/// What the simulation does with `frame` arriving on `iface` at `now`, run on `state` (a copy:
/// what it changes is thrown away).
pub fn trace(topo: &Topology, ifs: &Ifaces, qos: &QosBuckets, state: &Tables, iface: IfIdx, frame: &[u8], now: Instant) -> TraceRecord {
    let mut t = TraceRecord {
        interface: ifs.get(iface).name.clone(),
        packet: wire::describe::describe(frame),
        steps: Vec::new(),
        out: Vec::new(),
        dropped: None,
        outcome: String::new(),
    };
    let h = match wire::parse(frame) {
        Ok(h) => h,
        Err(r) => {
            t.dropped = Some(r.name());
            t.outcome = format!("dropped: {} ({})", r.name(), r.description());
            return t;
        }
    };
    let mut cache = crate::learn::LearnCache::default();
    let mut sim = Sim::new(topo, ifs, state, &mut cache, qos, now, true);
    sim.ingress(iface, Frame { buf: frame.to_vec(), h, encap_len: 0 });
    let res = sim.res;
    t.steps = res.trace.iter().flatten().cloned().collect();
    let mut tx = TxBuf::default();
    send_frames(&res, &mut tx);
    t.out = tx.iter().map(|(o, f)| (ifs.get(o).name.clone(), wire::describe::describe(f))).collect();
    t.outcome = match (t.out.is_empty(), res.drop) {
        (false, _) => "forwarded".into(),
        (true, Some(r)) => {
            t.dropped = Some(r.name());
            format!("dropped: {} ({})", r.name(), r.description())
        }
        (true, None) => "nothing sent (waiting for ARP, or answered)".into(),
    };
    t
}

/// One tracked connection, NAT mapping, firewall connection or fip64 binding, as `conntrack`
/// shows it (text and JSON are both made from this).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnRecord {
    /// `nat`, `firewall` or `fip64`.
    pub table: &'static str,
    pub proto: &'static str,
    /// The original direction (a fip64 binding: the IPv6 client and the fip64 address).
    pub src: IpAddr,
    pub dst: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// The reply direction of a NAT mapping, as the outside host sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<Tuple>,
    /// A fip64 binding's IPv4 pool address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<IpAddr>,
    pub router: String,
    /// Which NAT rule made a mapping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub idle_s: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

/// Which connections `conntrack` lists (every field given must match the original direction).
#[derive(Debug, Clone, Default)]
pub struct ConnFilter {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub router: Option<String>,
    pub proto: Option<String>,
}

impl ConnFilter {
    pub fn matches(&self, c: &ConnRecord) -> bool {
        self.src.is_none_or(|a| a == c.src)
            && self.dst.is_none_or(|a| a == c.dst)
            && self.router.as_ref().is_none_or(|r| *r == c.router)
            && self.proto.as_ref().is_none_or(|p| p == c.proto)
    }
}

impl ConnRecord {
    /// `key=value` fields, as `conntrack -L` prints them: the original tuple, then the reply's.
    pub fn line(&self) -> String {
        let mut out = format!("{} src={} dst={}", self.proto, self.src, self.dst);
        if let (Some(s), Some(d)) = (self.sport, self.dport) {
            out.push_str(&format!(" sport={s} dport={d}"));
        }
        if let Some(r) = &self.reply {
            out.push_str(&format!(" src={} dst={} sport={} dport={}", r.src, r.dst, r.sport, r.dport));
        }
        if let Some(p) = self.pool {
            out.push_str(&format!(" pool={p}"));
        }
        out.push_str(&format!(" router={} table={}", self.router, self.table));
        if let Some(k) = &self.kind {
            out.push_str(&format!(" kind={k}"));
        }
        out.push_str(&format!(" idle={:.1}", self.idle_s));
        out
    }
}

/// The protocols `conntrack` and the tap name, by number.
const PROTOS: [(&str, u8); 4] = [("tcp", 6), ("udp", 17), ("icmp", 1), ("icmpv6", 58)];

/// A protocol's name (`ip` for any other).
fn proto_name(p: u8) -> &'static str {
    PROTOS.iter().find(|(_, n)| *n == p).map_or("ip", |(name, _)| name)
}

/// A protocol's number, by name.
pub fn proto_number(name: &str) -> Option<u8> {
    PROTOS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// The connections (NAT mappings, firewall state, fip64 bindings) at `now`.
pub fn conntrack(state: &State, topo: &Topology, now: Instant) -> Vec<ConnRecord> {
    let mut out = Vec::new();
    for (c, idle) in state.ct.iter(now) {
        out.push(ConnRecord {
            table: "nat",
            proto: proto_name(c.orig.proto),
            src: c.orig.src,
            dst: c.orig.dst,
            sport: Some(c.orig.sport),
            dport: Some(c.orig.dport),
            reply: Some(Tuple { src: c.reply.src, dst: c.reply.dst, sport: c.reply.sport, dport: c.reply.dport }),
            pool: None,
            router: topo.router(c.router).id.clone(),
            kind: Some(format!("{:?}", c.kind)),
            idle_s: idle.as_secs_f64(),
        });
    }
    let mut fw: Vec<_> = state.fw.iter().collect();
    fw.sort_by_key(|(r, _)| **r);
    for (r, t) in fw {
        for (c, idle) in t.iter(now) {
            out.push(ConnRecord {
                table: "firewall",
                proto: proto_name(c.orig.proto),
                src: c.orig.src,
                dst: c.orig.dst,
                sport: Some(c.orig.sport),
                dport: Some(c.orig.dport),
                reply: None,
                pool: None,
                router: topo.router(*r).id.clone(),
                kind: None,
                idle_s: idle.as_secs_f64(),
            });
        }
    }
    for b in state.fip64.iter() {
        let idle = b.idle(now);
        if idle > crate::ct::bindings::BINDING_TIMEOUT {
            continue;
        }
        for &i in &topo.router(b.router).fip64s {
            out.push(ConnRecord {
                table: "fip64",
                proto: "ip",
                src: IpAddr::V6(b.client),
                dst: IpAddr::V6(topo.fip64s[i].addr),
                sport: None,
                dport: None,
                reply: None,
                pool: Some(IpAddr::V4(b.pool)),
                router: topo.router(b.router).id.clone(),
                kind: None,
                idle_s: idle.as_secs_f64(),
            });
        }
    }
    out
}

/// One cached flow, as `flows` shows it (text and JSON are both made from this).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlowRecord {
    /// The interface its packets arrive on.
    #[serde(rename = "in")]
    pub in_iface: String,
    /// The fields it matches, as read from its key.
    pub matches: String,
    /// The destination MAC it matches (the inner frame's, for a VXLAN key): a router port's, for
    /// a flow that enters that router.
    pub eth_dst: String,
    /// Its header rewrite, and where it sends (or why it drops).
    pub rewrite: String,
    pub outputs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop: Option<&'static str>,
    pub hits: u64,
    /// Made before the running snapshot, or an entry it read changed since: the next packet
    /// lets it go.
    pub stale: bool,
}

impl FlowRecord {
    pub fn line(&self) -> String {
        let actions = match self.drop {
            Some(r) => format!("drop:{r}"),
            None => self.outputs.join(","),
        };
        let stale = if self.stale { " (stale)" } else { "" };
        format!("in {} {} actions={}{actions} hits={}{stale}", self.in_iface, self.matches, self.rewrite, self.hits)
    }
}

/// One cached flow's record.
pub fn flow_record(
    k: &crate::flow::FlowKey,
    f: &crate::flow::Flow,
    ifs: &Ifaces,
    epoch: u32,
    gens: &crate::learn::Generations,
) -> FlowRecord {
    let name = |i: IfIdx| ifs.list.get(i.0 as usize).map_or("?".to_string(), |x| x.name.clone());
    let (inf, matches) = k.describe();
    let outputs = f
        .outputs
        .iter()
        .map(|o| match &o.encap {
            Some(t) => format!("vxlan(vni {}, to {}):{}", t.vni(), t.dst(), name(o.iface)),
            None => name(o.iface),
        })
        .collect();
    FlowRecord {
        in_iface: name(inf),
        matches,
        eth_dst: k.eth_dst().to_string(),
        rewrite: f.rewrite.describe(),
        outputs,
        drop: f.drop.map(|r| r.name()),
        hits: f.hits.load(Ordering::Relaxed),
        stale: f.epoch != epoch || !f.learned.fresh(gens),
    }
}

/// A worker's cached flows, sorted as their lines sort.
pub fn flows(flows: &FlowTable, ifs: &Ifaces, epoch: u32, gens: &crate::learn::Generations) -> Vec<FlowRecord> {
    let mut out: Vec<FlowRecord> = flows.iter().map(|(k, f)| flow_record(&k, f, ifs, epoch, gens)).collect();
    out.sort_by_cached_key(FlowRecord::line);
    out
}
