//! Fixtures for the criterion benches: datapaths built from the scenario snapshots, and frames.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use datapath::{Datapath, IfIdx, Instant};
use etherparse::PacketBuilder;
use rules::model::Mac;

pub const SEC: u64 = 1_000_000_000;

/// Every bench and example counts heap allocations (the hit path must make none, STYLE.md
/// item 12) and the bytes held (bytes per cached flow), with this global allocator. Counted per
/// thread: one counter every thread bumps would be a cache line passed between the cores for
/// every allocation, and the `workers/…/2` benches would measure that instead of the datapath.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static HELD: Cell<i64> = const { Cell::new(0) };
}

fn count(allocs: u64, bytes: i64) {
    // A thread being torn down has no counters left: its last frees go uncounted.
    let _ = ALLOCS.try_with(|a| a.set(a.get() + allocs));
    let _ = HELD.try_with(|h| h.set(h.get() + bytes));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(1, l.size() as i64);
        // SAFETY: forwarding the caller's layout to the system allocator unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(0, -(l.size() as i64));
        // SAFETY: `p` came from `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count(1, n as i64 - l.size() as i64);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations this thread made so far.
pub fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

/// Heap bytes this thread allocated and has not freed, now (what another thread frees of it
/// counts there).
pub fn heap_bytes() -> i64 {
    HELD.with(Cell::get)
}

/// A snapshot of the scenario suite.
pub fn snapshot(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pcaps").join(case).join("snapshot.json")
}

/// A datapath for `host` of a scenario's snapshot.
pub fn datapath(case: &str, host: &str, macs: &[(&str, &str)]) -> Datapath {
    let topo = rules::load_topology(&snapshot(case)).expect("snapshot");
    let macs: HashMap<String, Mac> = macs.iter().map(|(i, m)| (i.to_string(), m.parse().expect("mac"))).collect();
    Datapath::new(Arc::new(topo), host, &macs).expect("datapath")
}

pub fn iface(dp: &Datapath, name: &str) -> IfIdx {
    dp.interfaces().by_name(name).expect("interface")
}

/// A datapath for host-a of a scenario's snapshot changed by `edit`.
pub fn datapath_with(case: &str, edit: impl Fn(&mut serde_json::Value)) -> Datapath {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(snapshot(case)).expect("snapshot")).expect("json");
    edit(&mut v);
    let topo = rules::Topology::compile(rules::load_str(&v.to_string()).expect("valid")).expect("compiles");
    Datapath::new(Arc::new(topo), "host-a", &HashMap::new()).expect("datapath")
}

/// A firewall on r1 whose policy has `n` rules, of which only the last matches UDP to port
/// 5001: the others deny TCP to other ports from other sources (the worst case for a scan).
pub fn firewall_rules(s: &mut serde_json::Value, n: usize) {
    let mut rules: Vec<serde_json::Value> = (0..n - 1)
        .map(|i| {
            serde_json::json!({"id": format!("r{i}"), "protocol": "tcp", "action": "deny",
                "source_ip_address": format!("172.{}.{}.0/24", 16 + i / 256 % 16, i % 256), "destination_port": format!("{}", 1000 + i)})
        })
        .collect();
    rules.push(serde_json::json!({"id": "last", "protocol": "udp", "destination_port": "5001", "action": "allow"}));
    let ids: Vec<String> = rules.iter().map(|r| r["id"].as_str().unwrap_or_default().to_string()).collect();
    s["firewall_rules"] = serde_json::Value::Array(rules);
    s["firewall_policies"] = serde_json::json!([{"id": "p", "firewall_rules": ids}]);
    s["firewalls"] = serde_json::json!([{"id": "fw", "firewall_policy_id": "p", "router_ids": ["r1"]}]);
}

/// An Ethernet/IPv4/UDP frame with a 64-byte payload.
pub fn udp(smac: [u8; 6], dmac: [u8; 6], src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac, dmac).ipv4(src, dst, 64).udp(sport, dport).write(&mut v, &[0x5a; 64]).expect("build");
    v
}

/// An Ethernet/IPv6/UDP frame with a 64-byte payload.
pub fn udp6(smac: [u8; 6], dmac: [u8; 6], src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac, dmac).ipv6(src, dst, 64).udp(sport, dport).write(&mut v, &[0x5a; 64]).expect("build");
    v
}

/// A Neighbor Solicitation from `mac`/`src` for `target`, multicast to its solicited-node
/// group, with the source link-layer address option.
pub fn ns(mac: [u8; 6], src: [u8; 16], target: [u8; 16]) -> Vec<u8> {
    let group = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, target[13], target[14], target[15]];
    let ns = etherparse::Icmpv6Type::Unknown { type_u8: 135, code_u8: 0, bytes5to8: [0; 4] };
    let mut body = target.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&mac);
    let mut v = Vec::new();
    let dmac = [0x33, 0x33, 0xff, target[13], target[14], target[15]];
    PacketBuilder::ethernet2(mac, dmac).ipv6(src, group, 255).icmpv6(ns).write(&mut v, &body).expect("build");
    v
}

/// The fip64 scenario (SPEC §11) with both directions cached: client 2001:db8:e::99 behind
/// uplink0 asked for vm3's fip64 2001:db8:e::100 by NS, and one UDP query and its answer
/// passed. Returns the datapath, uplink0 and the query, tap-vm3 and the answer.
pub fn fip64_both_ways() -> (Datapath, IfIdx, Vec<u8>, IfIdx, Vec<u8>) {
    let mut dp = datapath("fip64-flows", "host-a", &[]);
    let (up, tap) = (iface(&dp, "uplink0"), iface(&dp, "tap-vm3"));
    let (client, cmac) = ([0x20, 1, 0x0d, 0xb8, 0, 0xe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99], [0x02, 0xc1, 0, 0, 0, 1]);
    let fip = [0x20, 1, 0x0d, 0xb8, 0, 0xe, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    must_forward(&mut dp, up, &ns(cmac, client, fip), SEC / 2);
    let query = udp6(cmac, [0xfa, 0x16, 0x3e, 0xcc, 0, 2], client, fip, 40000, 53);
    must_forward(&mut dp, up, &query, SEC);
    // The client's pool address is the translated query's IPv4 source.
    let (_, v4) = dp.tx().iter().next().expect("the query left");
    let pool: [u8; 4] = v4[26..30].try_into().expect("IPv4");
    let answer = udp([0xfa, 0x16, 0x3e, 0, 1, 3], [0xfa, 0x16, 0x3e, 0xcc, 0, 1], [10, 1, 0, 3], pool, 53, 40000);
    must_forward(&mut dp, tap, &answer, SEC);
    (dp, up, query, tap, answer)
}

/// An ARP frame.
pub fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4], eth_dst: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f
}

/// `inner` in VXLAN with `vni` from `src` to `dst` (outer UDP checksum 0, flags 0x08).
pub fn vxlan(smac: [u8; 6], dmac: [u8; 6], src: [u8; 4], dst: [u8; 4], vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&vni.to_be_bytes()[1..4]);
    payload.push(0);
    payload.extend_from_slice(inner);
    PacketBuilder::ethernet2(smac, dmac).ipv4(src, dst, 64).udp(50000, 4789).write(&mut v, &payload).expect("build");
    v
}

/// Process a frame and check it left (the benches must measure the path they name).
pub fn must_forward(dp: &mut Datapath, i: IfIdx, f: &[u8], now: u64) {
    dp.process(i, f, Instant(now));
    assert!(!dp.tx().is_empty(), "nothing sent: {:?}", dp.stats().drops.nonzero().collect::<Vec<_>>());
}
