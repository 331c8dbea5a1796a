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

/// A cloud's snapshot for scale benches (issue 15): `routers` tenant routers, each with one
/// network (its own VNI and /24 in 10/8) holding the router's interface and `vms` VM ports, and
/// a gateway port on the external network `ext` (100.64/16, with default SNAT) with a floating
/// IP for its first VM; the VMs spread over `hosts` hosts (`host-0` … with tunnel addresses in
/// 192.168/16). So `routers × (vms + 2)` ports. The VMs `host-0` binds have interfaces
/// `c<router>-<vm>`.
pub fn cloud(version: u64, routers: usize, vms: usize, hosts: usize) -> serde_json::Value {
    use serde_json::json;
    let hosts: Vec<_> = (0..hosts.max(1))
        .map(|h| json!({"id": format!("host-{h}"), "tunnel_ip": format!("192.168.{}.{}", 1 + (h >> 8), h & 255), "underlay_interface": "ul0"}))
        .collect();
    let mut networks = vec![json!({"id": "ext", "provider:segmentation_id": 999, "router:external": true})];
    let mut subnets = vec![json!({"id": "sub-ext", "network_id": "ext", "cidr": "100.64.0.0/16", "gateway_ip": "100.64.0.1"})];
    let (mut ports, mut rs, mut fips) = (Vec::new(), Vec::new(), Vec::new());
    let ext = |k: usize| format!("100.64.{}.{}", 1 + (k >> 8), k & 255);
    for r in 0..routers {
        let (hi, lo) = (r >> 8, r & 255);
        let net = format!("net-{r}");
        networks.push(json!({"id": net, "provider:segmentation_id": 1000 + r}));
        subnets.push(json!({"id": format!("sub-{r}"), "network_id": net, "cidr": format!("10.{hi}.{lo}.0/24"), "gateway_ip": format!("10.{hi}.{lo}.1")}));
        rs.push(json!({"id": format!("r{r}"), "external_gateway_info": {"network_id": "ext", "enable_snat": true}}));
        ports.push(
            json!({"id": format!("r{r}-gw"), "network_id": "ext", "device_owner": "network:router_gateway", "device_id": format!("r{r}"),
            "mac_address": format!("fa:16:3e:{hi:02x}:{lo:02x}:02"), "fixed_ips": [{"ip_address": ext(2 * r)}]}),
        );
        if vms > 0 {
            fips.push(json!({"id": format!("fip-{r}"), "floating_ip_address": ext(2 * r + 1), "floating_network_id": "ext",
                "fixed_ip_address": format!("10.{hi}.{lo}.16"), "port_id": format!("vm-{r}-0"), "router_id": format!("r{r}")}));
        }
        ports.push(
            json!({"id": format!("r{r}-if"), "network_id": net, "device_owner": "network:router_interface", "device_id": format!("r{r}"),
            "mac_address": format!("fa:16:3e:{hi:02x}:{lo:02x}:01"), "fixed_ips": [{"ip_address": format!("10.{hi}.{lo}.1")}]}),
        );
        for v in 0..vms {
            let host = (r * vms + v) % hosts.len();
            let mut p = json!({"id": format!("vm-{r}-{v}"), "network_id": net, "device_owner": "compute:nova", "device_id": format!("instance-{r}-{v}"),
                "mac_address": format!("fa:16:3e:{hi:02x}:{lo:02x}:{:02x}", 16 + v), "fixed_ips": [{"ip_address": format!("10.{hi}.{lo}.{}", 16 + v)}],
                "binding:host_id": format!("host-{host}")});
            if host == 0 {
                p["binding:profile"] = json!({"interface_name": format!("c{r}-{v}")});
            }
            ports.push(p);
        }
    }
    json!({"version": version, "hosts": hosts, "networks": networks, "subnets": subnets, "ports": ports, "routers": rs, "floatingips": fips})
}
