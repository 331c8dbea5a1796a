//! What the operator reads (SPEC §9 `trace`, `conntrack`, `flows`): text built from the state,
//! off the packet path. Nothing here changes what the datapath does.

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

/// What the simulation does with `frame` arriving on `iface` at `now`, run on `state` (a copy:
/// what it changes is thrown away). The steps, then one line per frame that would leave.
pub fn trace(topo: &Topology, ifs: &Ifaces, qos: &QosBuckets, state: &Tables, iface: IfIdx, frame: &[u8], now: Instant) -> Vec<String> {
    let mut lines = vec![format!("packet on {}: {}", ifs.get(iface).name, wire::describe::describe(frame))];
    let h = match wire::parse(frame) {
        Ok(h) => h,
        Err(r) => {
            lines.push(format!("dropped: {} ({})", r.name(), r.description()));
            return lines;
        }
    };
    let mut cache = crate::learn::LearnCache::default();
    let mut sim = Sim::new(topo, ifs, state, &mut cache, qos, now, true);
    sim.ingress(iface, Frame { buf: frame.to_vec(), h, encap_len: 0 });
    let res = sim.res;
    lines.extend(res.trace.iter().flatten().map(|s| format!("  {s}")));
    let mut tx = TxBuf::default();
    send_frames(&res, &mut tx);
    for (o, f) in tx.iter() {
        lines.push(format!("→ {}: {}", ifs.get(o).name, wire::describe::describe(f)));
    }
    if tx.is_empty() {
        match res.drop {
            Some(r) => lines.push(format!("dropped: {} ({})", r.name(), r.description())),
            None => lines.push("nothing sent (waiting for ARP, or answered)".into()),
        }
    }
    lines
}

/// The connections (NAT mappings and firewall state), one per line, at `now`.
pub fn conntrack(state: &State, topo: &Topology, now: Instant) -> String {
    let proto = |p: u8| match p {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmpv6",
        _ => "ip",
    };
    // An IPv6 address is bracketed before its port (RFC 5952 §6).
    let endpoint = |a: std::net::IpAddr, port: u16| match a {
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
    };
    let mut lines = Vec::new();
    for (c, idle) in state.ct.iter(now) {
        let (ip, port) = c.nat_src();
        lines.push(format!(
            "{} {} → {} as {} router {} {:?} idle {:.1}s",
            proto(c.orig.proto),
            endpoint(c.orig.src, c.orig.sport),
            endpoint(c.orig.dst, c.orig.dport),
            endpoint(ip, port),
            topo.router(c.router).id,
            c.kind,
            idle.as_secs_f64()
        ));
    }
    let mut fw: Vec<_> = state.fw.iter().collect();
    fw.sort_by_key(|(r, _)| **r);
    for (r, t) in fw {
        for (c, idle) in t.iter(now) {
            lines.push(format!(
                "{} {} → {} accepted by the firewall of router {} idle {:.1}s",
                proto(c.orig.proto),
                endpoint(c.orig.src, c.orig.sport),
                endpoint(c.orig.dst, c.orig.dport),
                topo.router(*r).id,
                idle.as_secs_f64()
            ));
        }
    }
    for b in state.fip64.iter() {
        let idle = b.idle(now);
        if idle > crate::ct::bindings::BINDING_TIMEOUT {
            continue;
        }
        let fip64 = topo.router(b.router).fip64s.iter().map(|&i| topo.fip64s[i].addr.to_string()).collect::<Vec<_>>().join(",");
        lines.push(format!(
            "fip64 client {} as {} fip64 {fip64} router {} idle {:.1}s",
            b.client,
            b.pool,
            topo.router(b.router).id,
            idle.as_secs_f64()
        ));
    }
    lines.join("\n")
}

/// A worker's cached flows, one per line, sorted: ingress, the fields matched, the actions, the
/// hits; a flow made before `epoch`, or after which an entry it read changed, is marked stale.
pub fn flows(flows: &FlowTable, ifs: &Ifaces, epoch: u32, gens: &crate::learn::Generations) -> String {
    let name = |i: IfIdx| ifs.list.get(i.0 as usize).map_or("?".to_string(), |x| x.name.clone());
    let mut lines: Vec<String> = flows
        .iter()
        .map(|(k, f)| {
            let (inf, fields) = k.describe();
            let stale = if f.epoch != epoch || !f.learned.fresh(gens) { " (stale)" } else { "" };
            let actions = match f.drop {
                Some(r) => format!("drop:{}", r.name()),
                None => f
                    .outputs
                    .iter()
                    .map(|o| match &o.encap {
                        Some(t) => format!("vxlan(vni {}, to {}):{}", t.vni(), t.dst(), name(o.iface)),
                        None => name(o.iface),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            };
            format!("in {} {fields} actions={}{actions} hits={}{stale}", name(inf), f.rewrite.describe(), f.hits.load(Ordering::Relaxed))
        })
        .collect();
    lines.sort();
    lines.join("\n")
}
