//! Builds the pcap scenario suites of `pcaps/<case>/`: `snapshot.json`, `case.json` (host,
//! interface MACs, story), `in/<interface>.pcap`, `expected/<interface>.pcap` and
//! `expected/drops.txt`.
//!
//! Expected frames are built here from the spec ("the input frame with dst IP 10.0.0.3,
//! TTL − 2, these MACs"), never recorded from edgepath. Run from the repository root:
//! `cargo run -p pcapgen -- pcaps` (the test `suite_is_up_to_date` checks the committed files
//! match what this program writes).
//!
//! The base topology (one host, `host-a`, unless a case says otherwise):
//!
//! ```text
//!  192.0.2.50 (ext host) … upstream 198.51.100.1 ──uplink0── [edge] 198.51.100.2
//!                                                             │ 203.0.113.1
//!                                             ext-net 203.0.113.0/24 (VNI 300)
//!                                                             │ 203.0.113.2 (gw-ip)
//!    fip-net 100.64.0.0/24 ── 100.64.0.1 [r1] 10.0.0.1 ── net-a 10.0.0.0/24 (VNI 100): vm1 .3, vm2 .4
//!      (VNI 400) z .5                      10.1.0.1 ── net-b 10.1.0.0/24 (VNI 200): vm3 .3, vm6 .4
//!   FIP-A 203.0.113.10 → vm1 (owned by r1's gateway port)
//!   FIP-B 100.64.0.10  → vm1 (owned by r1's interface on fip-net)
//! ```

mod fip64;
mod frames;
mod ipv6;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use etherparse::icmpv4::DestUnreachableHeader;
use frames::*;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use serde_json::{json, Value};

// ---- addresses of the base topology --------------------------------------------------------

const VM1: Mac = [0xfa, 0x16, 0x3e, 0, 0, 0x03];
const VM2: Mac = [0xfa, 0x16, 0x3e, 0, 0, 0x04];
const VM3: Mac = [0xfa, 0x16, 0x3e, 0, 1, 0x03];
const VM4: Mac = [0xfa, 0x16, 0x3e, 0, 0, 0x05];
const VM6: Mac = [0xfa, 0x16, 0x3e, 0, 1, 0x04];
const Z: Mac = [0xfa, 0x16, 0x3e, 0, 2, 0x05];
const R1_A: Mac = [0xfa, 0x16, 0x3e, 0xaa, 0, 1];
const R1_B: Mac = [0xfa, 0x16, 0x3e, 0xaa, 0, 2];
const R1_GW: Mac = [0xfa, 0x16, 0x3e, 0xaa, 0, 3];
const R1_F: Mac = [0xfa, 0x16, 0x3e, 0xaa, 0, 4];
const EDGE_EXT: Mac = [0xfa, 0x16, 0x3e, 0xbb, 0, 1];
const EDGE_UP: Mac = [0xfa, 0x16, 0x3e, 0xbb, 0, 2];
const UPSTREAM: Mac = [0x02, 0xaa, 0, 0, 0, 1];
const UL_A: Mac = [0x02, 0, 0, 0, 0x0a, 0x01];
const UL_B: Mac = [0x02, 0, 0, 0, 0x0b, 0x01];

const IP_VM1: Ip = [10, 0, 0, 3];
const IP_VM2: Ip = [10, 0, 0, 4];
const IP_VM4: Ip = [10, 0, 0, 5];
const IP_VM3: Ip = [10, 1, 0, 3];
const IP_VM6: Ip = [10, 1, 0, 4];
const IP_Z: Ip = [100, 64, 0, 5];
const IP_R1_A: Ip = [10, 0, 0, 1];
const IP_GW: Ip = [203, 0, 113, 2];
const FIP_A: Ip = [203, 0, 113, 10];
const FIP_B: Ip = [100, 64, 0, 10];
const IP_EDGE_UP: Ip = [198, 51, 100, 2];
const IP_UPSTREAM: Ip = [198, 51, 100, 1];
const EXT_HOST: Ip = [192, 0, 2, 50];
const TUN_A: Ip = [192, 168, 50, 1];
const TUN_B: Ip = [192, 168, 50, 2];

fn mac_str(m: Mac) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn ip_str(i: Ip) -> String {
    format!("{}.{}.{}.{}", i[0], i[1], i[2], i[3])
}

fn port(id: &str, net: &str, mac: Mac, ip: Ip, owner: &str, device: &str, iface: Option<&str>) -> Value {
    let mut p = json!({
        "id": id, "network_id": net, "mac_address": mac_str(mac),
        "fixed_ips": [{"ip_address": ip_str(ip)}],
        "device_owner": owner, "device_id": device,
    });
    if let Some(ifn) = iface {
        p["binding:host_id"] = json!("host-a");
        p["binding:profile"] = json!({"interface_name": ifn});
    }
    p
}

fn vm(id: &str, net: &str, mac: Mac, ip: Ip, iface: &str) -> Value {
    port(id, net, mac, ip, "compute:nova", &format!("instance-{id}"), Some(iface))
}

/// The base topology of the module header.
fn base() -> Value {
    json!({
        "version": 1,
        "hosts": [
            {"id": "host-a", "tunnel_ip": ip_str(TUN_A), "underlay_interface": "ul0"},
            {"id": "host-b", "tunnel_ip": ip_str(TUN_B), "underlay_interface": "ul0"},
        ],
        "networks": [
            {"id": "net-a", "provider:segmentation_id": 100},
            {"id": "net-b", "provider:segmentation_id": 200},
            {"id": "ext-net", "router:external": true, "provider:segmentation_id": 300},
            {"id": "fip-net", "provider:segmentation_id": 400},
            {"id": "uplink-net", "provider:network_type": "local"},
        ],
        "subnets": [
            {"id": "sub-a", "network_id": "net-a", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1"},
            {"id": "sub-b", "network_id": "net-b", "cidr": "10.1.0.0/24", "gateway_ip": "10.1.0.1"},
            {"id": "sub-ext", "network_id": "ext-net", "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1"},
            {"id": "sub-fip", "network_id": "fip-net", "cidr": "100.64.0.0/24", "gateway_ip": "100.64.0.1"},
            {"id": "sub-up", "network_id": "uplink-net", "cidr": "198.51.100.0/24", "gateway_ip": "198.51.100.1"},
        ],
        "ports": [
            vm("vm1", "net-a", VM1, IP_VM1, "tap-vm1"),
            vm("vm2", "net-a", VM2, IP_VM2, "tap-vm2"),
            vm("vm3", "net-b", VM3, IP_VM3, "tap-vm3"),
            vm("vm6", "net-b", VM6, IP_VM6, "tap-vm6"),
            vm("z", "fip-net", Z, IP_Z, "tap-z"),
            port("r1-a", "net-a", R1_A, IP_R1_A, "network:router_interface", "r1", None),
            port("r1-b", "net-b", R1_B, [10, 1, 0, 1], "network:router_interface", "r1", None),
            port("r1-gw", "ext-net", R1_GW, IP_GW, "network:router_gateway", "r1", None),
            port("r1-f", "fip-net", R1_F, [100, 64, 0, 1], "network:router_interface", "r1", None),
            port("edge-ext", "ext-net", EDGE_EXT, [203, 0, 113, 1], "network:router_interface", "edge", None),
            port("edge-up", "uplink-net", EDGE_UP, IP_EDGE_UP, "network:router_interface", "edge", Some("uplink0")),
        ],
        "routers": [
            {"id": "r1", "external_gateway_info": {"network_id": "ext-net", "enable_snat": true}},
            {"id": "edge", "routes": [{"destination": "0.0.0.0/0", "nexthop": ip_str(IP_UPSTREAM)}]},
        ],
        "floatingips": [
            {"id": "fip-a", "floating_ip_address": ip_str(FIP_A), "floating_network_id": "ext-net",
             "port_id": "vm1", "fixed_ip_address": ip_str(IP_VM1), "router_id": "r1"},
            {"id": "fip-b", "floating_ip_address": ip_str(FIP_B), "floating_network_id": "fip-net",
             "port_id": "vm1", "fixed_ip_address": ip_str(IP_VM1), "router_id": "r1"},
        ],
    })
}

fn without_fips(mut s: Value) -> Value {
    s["floatingips"] = json!([]);
    s
}

// ---- the gateway topology (issue 3) --------------------------------------------------------

const UL_GW: Mac = [0x02, 0, 0, 0, 0xfe, 0xfe];
const IP_UL_GW: Ip = [192, 168, 50, 254];
const RV_ADDR: Ip = [198, 51, 100, 20];
const RV_REMOTE: Ip = [192, 0, 2, 77];
const RMAC_RV: Mac = [0x02, 0xcc, 0, 0, 0, 1];
const HW1: Ip = [192, 168, 60, 30];
const HW2: Ip = [192, 168, 60, 31];
const HW_MAC: Mac = [0x02, 0xdd, 0, 0, 0, 1];
const RG1: Ip = [192, 168, 70, 1];
const RG2: Ip = [192, 168, 70, 2];
const RMAC_1: Mac = [0x02, 0xee, 0, 0, 0, 1];
const RMAC_2: Mac = [0x02, 0xee, 0, 0, 0, 2];
const RMAC_3: Mac = [0x02, 0xee, 0, 0, 0, 3];
const RMAC_RV2: Mac = [0x02, 0xcc, 0, 0, 0, 2];

/// The base topology plus VXLAN gateways: host-a's underlay reaches everything through
/// 192.168.50.254; the edge router is a router VTEP at 198.51.100.20 joined to net-a (VNI 5000)
/// with one remote MAC entry; hardware VTEPs hw1 and hw2 (peered) join net-b with VNI 6000;
/// remote gateway rg1 extends net-a with VNI 7000 (no flood), rg2 extends net-b with its own VNI
/// (flood), each with one remote MAC.
fn gateways() -> Value {
    let mut s = base();
    s["hosts"][0]["underlay_gateway"] = json!(ip_str(IP_UL_GW));
    s["gateway_devices"] = json!([
        {"id": "rv1", "type": "router_vtep", "resource_id": "edge", "tunnel_ips": [ip_str(RV_ADDR)],
         "remote_mac_entries": [{"id": "rme1", "mac_address": mac_str(RMAC_RV), "vtep_address": ip_str(RV_REMOTE), "segmentation_id": 5000}]},
        {"id": "hw1", "type": "hw_vtep", "management_ip": "10.99.0.1", "management_port": 6632, "tunnel_ips": [ip_str(HW1)]},
        {"id": "hw2", "type": "hw_vtep", "management_ip": "10.99.0.2", "management_port": 6632, "tunnel_ips": [ip_str(HW2)]},
    ]);
    s["gateway_device_peerings"] = json!([{"id": "hw-pair", "device1_id": "hw1", "device2_id": "hw2"}]);
    s["l2_gateways"] = json!([
        {"id": "l2gw-rv", "devices": [{"device_id": "rv1"}]},
        {"id": "l2gw-hw", "devices": [{"device_id": "hw1", "segmentation_id": 6000}, {"device_id": "hw2", "segmentation_id": 6000}]},
        {"id": "l2gw-rg", "devices": []},
    ]);
    s["l2_gateway_connections"] = json!([
        {"id": "l2c-rv", "l2_gateway_id": "l2gw-rv", "network_id": "net-a", "segmentation_id": 5000},
        {"id": "l2c-hw", "l2_gateway_id": "l2gw-hw", "network_id": "net-b"},
    ]);
    s["remote_gateways"] = json!([{"id": "rg1", "ipaddr": ip_str(RG1)}, {"id": "rg2", "ipaddr": ip_str(RG2)}]);
    s["remote_gateway_connections"] = json!([
        {"id": "rc1", "l2_gateway_id": "l2gw-rg", "network_id": "net-a", "remote_gateway_id": "rg1", "segmentation_id": 7000, "flood": false},
        {"id": "rc2", "l2_gateway_id": "l2gw-rg", "network_id": "net-b", "remote_gateway_id": "rg2", "flood": true},
    ]);
    s["remote_macs"] = json!([
        {"id": "rm1", "mac": mac_str(RMAC_1), "ip": "10.0.0.50", "rgw_connection": "rc1"},
        {"id": "rm2", "mac": mac_str(RMAC_2), "ip": "10.1.0.50", "rgw_connection": "rc2"},
    ]);
    s
}

/// The underlay gateway asks for host-a's tunnel IP; host-a answers and so learns its MAC.
fn underlay_announce(c: &mut Case, t: f64) {
    c.macs = vec![("ul0", UL_A)];
    c.input(t, "ul0", arp_request(UL_GW, IP_UL_GW, TUN_A));
    c.expect(t, "ul0", arp_reply(UL_A, TUN_A, UL_GW, IP_UL_GW));
}

/// Which of the peered pair a frame goes to (§7): member `hash mod 2`, members in the order the
/// l2 gateway lists its devices (hw1, hw2); the hash is the documented VXLAN flow hash.
fn peered(inner: &[u8]) -> Ip {
    let h = vxlan_sport(inner) - 49152;
    // The source port is 49152 + hash mod 16384; hash mod 2 is the same bit.
    if h.is_multiple_of(2) {
        HW1
    } else {
        HW2
    }
}

/// Two frames from vm3 to an unknown MAC whose flows pick different members of the pair.
fn split_flows() -> (P, P) {
    let mk = |sport: u16| P::udp(VM3, [0x02, 0xdd, 0, 0, 0, 0x99], IP_VM3, [10, 1, 0, 99], sport, 9000, b"unknown unicast");
    let a = mk(40000);
    let b = (40001..41000).map(mk).find(|b| peered(&b.bytes()) != peered(&a.bytes())).expect("a flow for the other member");
    (a, b)
}

// ---- firewall and QoS topologies (issue 4) ---------------------------------------------------

/// The base topology with a firewall on r1 and four logging resources.
fn firewall_snapshot() -> Value {
    let mut s = without_fips(base());
    s["firewall_rules"] = json!([
        {"id": "allow-web", "protocol": "tcp", "destination_ip_address": "10.1.0.0/24", "destination_port": "80", "action": "allow", "tenant_id": "t1"},
        {"id": "deny-web-too-late", "protocol": "tcp", "destination_port": "80", "action": "deny", "tenant_id": "t1"},
        {"id": "deny-telnet", "protocol": "tcp", "destination_port": 23, "action": "deny", "tenant_id": "t1"},
        {"id": "reject-udp-range", "protocol": "udp", "source_ip_address": "10.0.0.0/24", "destination_port": "5000:5010", "action": "reject"},
        {"id": "reject-smtp", "protocol": "tcp", "destination_port": "25", "action": "reject"},
        {"id": "allow-everything-disabled", "action": "allow", "enabled": false},
        {"id": "allow-icmp", "protocol": "icmp", "action": "allow"},
    ]);
    s["firewall_policies"] = json!([{"id": "pol1", "firewall_rules":
        ["allow-web", "deny-web-too-late", "deny-telnet", "reject-udp-range", "reject-smtp", "allow-everything-disabled", "allow-icmp"]}]);
    s["firewalls"] = json!([{"id": "fw1", "firewall_policy_id": "pol1", "router_ids": ["r1"], "tenant_id": "t1"}]);
    s["logging_resources"] = json!([
        {"id": "tenant-log", "tenant_id": "t1", "enabled": true, "firewall_logs": [{"id": "all", "firewall_id": "fw1", "fw_event": "ALL"}]},
        {"id": "operator-log", "enabled": true, "firewall_logs": [{"id": "accepts", "firewall_id": "fw1", "fw_event": "ACCEPT"},
                                                                   {"id": "drops", "firewall_id": "fw1", "fw_event": "DROP"}]},
        {"id": "off", "enabled": false, "firewall_logs": [{"id": "never", "firewall_id": "fw1"}]},
    ]);
    s
}

/// A firewall event at `t` as §8 lists its fields, in the format of `datapath/src/fwlog.rs`,
/// written to the logs that select it. IPv6 addresses are RFC 5952 text (§10.2), which is how
/// the standard library writes them.
#[allow(clippy::too_many_arguments)]
fn fw_log<A: Into<std::net::IpAddr>>(c: &mut Case, t: f64, rule: &str, src: A, dst: A, sport: u16, dport: u16, proto: u8, accept: bool) {
    let us = (t * 1e6).round() as u64;
    let line = format!(
        "2026-01-01T00:00:{:02}.{:06}Z tenant_id=t1 firewall_id=fw1 firewall_rule_id={rule} router_id=r1 src_ip={} dst_ip={} src_port={sport} dst_port={dport} protocol={proto} action={}",
        us / 1_000_000,
        us % 1_000_000,
        src.into(),
        dst.into(),
        if accept { "ACCEPT" } else { "DROP" }
    );
    c.log("all", line.clone());
    c.log(if accept { "accepts" } else { "drops" }, line);
}

/// The base topology with QoS policies on vm1 (DSCP), vm3 (egress limit and DSCP) and vm6
/// (ingress limit).
fn qos_snapshot() -> Value {
    let mut s = without_fips(base());
    s["qos_policies"] = json!([
        {"id": "af41", "rules": [{"type": "dscp_marking", "dscp_mark": 34}]},
        {"id": "vm3-limit", "rules": [{"type": "bandwidth_limit", "max_kbps": 80, "max_burst_kbps": 16}, {"type": "dscp_marking", "dscp_mark": 10}]},
        {"id": "vm6-in", "rules": [{"type": "bandwidth_limit", "max_kbps": 80, "max_burst_kbps": 8, "direction": "ingress"}]},
    ]);
    s["ports"][0]["qos_policy_id"] = json!("af41");
    s["ports"][2]["qos_policy_id"] = json!("vm3-limit");
    s["ports"][3]["qos_policy_id"] = json!("vm6-in");
    s
}

/// The token bucket of SPEC §8, written from its text: `rate` bit/s, `depth` bits, starts full; a
/// frame passes when its bits are there.
struct Bucket {
    rate: f64,
    depth: f64,
    tokens: f64,
    last: f64,
}

impl Bucket {
    fn new(rate: u64, depth: u64) -> Bucket {
        Bucket { rate: rate as f64, depth: depth as f64, tokens: depth as f64, last: 0.0 }
    }
    fn take(&mut self, bytes: usize, t: f64) -> bool {
        self.tokens = (self.tokens + (t - self.last) * self.rate).min(self.depth);
        self.last = t;
        let bits = bytes as f64 * 8.0;
        if self.tokens + 1e-6 >= bits {
            self.tokens -= bits;
            true
        } else {
            false
        }
    }
}

// ---- cases ---------------------------------------------------------------------------------

/// Frames on one interface at one time.
type Frames = Vec<(f64, &'static str, Vec<u8>)>;

struct Case {
    name: &'static str,
    story: &'static str,
    host: &'static str,
    macs: Vec<(&'static str, Mac)>,
    snapshot: Value,
    inputs: Frames,
    expected: Frames,
    drops: Vec<(&'static str, u64)>,
    /// Expected firewall log files: `fw-<id>.log` and their lines.
    logs: BTreeMap<&'static str, Vec<String>>,
    /// A NAT64 pool of this many addresses instead of the whole of SPEC §11's (`case.json`).
    fip64_pool: Option<u32>,
}

impl Case {
    fn new(name: &'static str, story: &'static str, snapshot: Value) -> Case {
        Case {
            name,
            story,
            host: "host-a",
            macs: Vec::new(),
            snapshot,
            inputs: Vec::new(),
            expected: Vec::new(),
            drops: Vec::new(),
            logs: BTreeMap::new(),
            fip64_pool: None,
        }
    }
    fn input(&mut self, t: f64, iface: &'static str, f: Vec<u8>) -> &mut Self {
        self.inputs.push((t, iface, f));
        self
    }
    fn expect(&mut self, t: f64, iface: &'static str, f: Vec<u8>) -> &mut Self {
        self.expected.push((t, iface, f));
        self
    }
    /// Expect `n` more drops for `reason`.
    fn drop(&mut self, reason: &'static str, n: u64) -> &mut Self {
        match self.drops.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, m)) => *m += n,
            None => self.drops.push((reason, n)),
        }
        self
    }
    fn log(&mut self, id: &'static str, line: String) -> &mut Self {
        self.logs.entry(id).or_default().push(line);
        self
    }
}

/// The upstream router asks for the edge's uplink address; the edge answers (and learns it).
fn arp_announce(c: &mut Case, t: f64) {
    c.input(t, "uplink0", arp_request(UPSTREAM, IP_UPSTREAM, IP_EDGE_UP));
    c.expect(t, "uplink0", arp_reply(EDGE_UP, IP_EDGE_UP, UPSTREAM, IP_UPSTREAM));
}

fn cases() -> Vec<Case> {
    let mut all = Vec::new();

    // Story: two VMs on one network and one host talk at L2; the second packet takes the flow.
    let mut c = Case::new("l2-local", "vm1 and vm2 on net-a exchange UDP; frames are delivered unchanged", base());
    let p = P::udp(VM1, VM2, IP_VM1, IP_VM2, 4000, 5000, b"hello vm2");
    let q = P::udp(VM2, VM1, IP_VM2, IP_VM1, 5000, 4000, b"hello vm1");
    c.input(1.0, "tap-vm1", p.bytes()).expect(1.0, "tap-vm2", p.bytes());
    c.input(1.1, "tap-vm1", p.bytes()).expect(1.1, "tap-vm2", p.bytes());
    c.input(1.2, "tap-vm2", q.bytes()).expect(1.2, "tap-vm1", q.bytes());
    all.push(c);

    // Story: unknown unicast and broadcast flood to every other port of the network; the router
    // port takes no IP broadcast; nothing goes back out of the ingress port.
    let mut c = Case::new("l2-flood", "unknown unicast and broadcast from vm1 flood to vm2 only", base());
    let p = P::udp(VM1, [0x02, 0, 0xde, 0xad, 0xbe, 0xef], IP_VM1, [10, 0, 0, 99], 4000, 5000, b"who are you");
    let b = P::udp(VM1, BCAST, IP_VM1, [10, 0, 0, 255], 4000, 5000, b"everyone");
    c.input(1.0, "tap-vm1", p.bytes()).expect(1.0, "tap-vm2", p.bytes());
    c.input(2.0, "tap-vm1", b.bytes()).expect(2.0, "tap-vm2", b.bytes());
    all.push(c);

    // Story: ARP suppression (§5.4): a request for a known address is answered on the ingress
    // port with the owner's MAC and not flooded; a request for an unknown address floods.
    let mut c = Case::new("arp-suppression", "vm1 asks for vm2's address and gets the answer from the datapath", base());
    c.input(1.0, "tap-vm1", arp_request(VM1, IP_VM1, IP_VM2)).expect(1.0, "tap-vm1", arp_reply(VM2, IP_VM2, VM1, IP_VM1));
    c.input(2.0, "tap-vm1", arp_request(VM1, IP_VM1, [10, 0, 0, 77])).expect(2.0, "tap-vm2", arp_request(VM1, IP_VM1, [10, 0, 0, 77]));
    all.push(c);

    // Story: the router port's address is answered (§6.1), and echo requests to the router's own
    // IPs — the interface address and gw-ip — get echo replies from that address.
    let mut c = Case::new("router-arp-icmp", "vm2 resolves its gateway and pings the router's addresses; z resolves FIP-B", base());
    c.input(1.0, "tap-vm2", arp_request(VM2, IP_VM2, IP_R1_A)).expect(1.0, "tap-vm2", arp_reply(R1_A, IP_R1_A, VM2, IP_VM2));
    // A floating IP is answered with the MAC of the router port that owns it (FIP-B: r1-f).
    c.input(1.5, "tap-z", arp_request(Z, IP_Z, FIP_B)).expect(1.5, "tap-z", arp_reply(R1_F, FIP_B, Z, IP_Z));
    for (t, target, seq) in [(2.0, IP_R1_A, 1u16), (3.0, IP_GW, 2)] {
        let req = P { l4: L4::EchoRequest { id: 7, seq }, ..P::udp(VM2, R1_A, IP_VM2, target, 0, 0, &[0x61; 32]) };
        let rep = P { l4: L4::EchoReply { id: 7, seq }, smac: R1_A, dmac: VM2, src: target, dst: IP_VM2, ..req.clone() }.originated();
        c.input(t, "tap-vm2", req.bytes()).expect(t, "tap-vm2", rep.bytes());
    }
    all.push(c);

    // Story: east-west routing (§6.2): net-a to net-b through r1, TTL − 1, router MACs.
    let mut c = Case::new("east-west", "vm2 (net-a) and vm3 (net-b) talk through r1, untranslated", base());
    let p = P::udp(VM2, R1_A, IP_VM2, IP_VM3, 4000, 5000, b"across");
    let q = P::udp(VM3, R1_B, IP_VM3, IP_VM2, 5000, 4000, b"back");
    c.input(1.0, "tap-vm2", p.bytes()).expect(1.0, "tap-vm3", p.routed(1, R1_B, VM3).bytes());
    c.input(1.5, "tap-vm2", p.bytes()).expect(1.5, "tap-vm3", p.routed(1, R1_B, VM3).bytes());
    c.input(2.0, "tap-vm3", q.bytes()).expect(2.0, "tap-vm2", q.routed(1, R1_A, VM2).bytes());
    all.push(c);

    // Story: extra routes with MidoNet's `source` (004 §8.1.6): the same destination goes to
    // different next hops by source; a longer destination prefix still wins over a source.
    let mut s = without_fips(base());
    s["routers"][0]["routes"] = json!([
        {"destination": "172.16.0.0/16", "nexthop": ip_str(IP_VM6), "source": "10.0.0.4/32"},
        {"destination": "172.16.0.0/16", "nexthop": ip_str(IP_VM3)},
        {"destination": "172.16.5.0/24", "nexthop": ip_str(IP_VM3)},
    ]);
    let mut c = Case::new("extra-route-source", "172.16.0.0/16 from 10.0.0.4 goes via vm6, from others via vm3", s);
    let from2 = P::udp(VM2, R1_A, IP_VM2, [172, 16, 1, 1], 4000, 80, b"src route");
    let from1 = P::udp(VM1, R1_A, IP_VM1, [172, 16, 1, 1], 4000, 80, b"default");
    let longer = P::udp(VM2, R1_A, IP_VM2, [172, 16, 5, 5], 4000, 80, b"longer prefix");
    c.input(1.0, "tap-vm2", from2.bytes()).expect(1.0, "tap-vm6", from2.routed(1, R1_B, VM6).bytes());
    c.input(2.0, "tap-vm1", from1.bytes()).expect(2.0, "tap-vm3", from1.routed(1, R1_B, VM3).bytes());
    c.input(3.0, "tap-vm2", longer.bytes()).expect(3.0, "tap-vm3", longer.routed(1, R1_B, VM3).bytes());
    all.push(c);

    // Story: TTL 1 at a router: ICMP time exceeded from the ingress port's IP, quoting the
    // packet's header and 8 bytes; the packet is dropped and counted.
    let mut c = Case::new("ttl-expiry", "vm2 sends with TTL 1 and gets time exceeded from 10.0.0.1", base());
    let p = P { ttl: 1, ..P::udp(VM2, R1_A, IP_VM2, IP_VM3, 4000, 33434, b"traceroute probe") };
    let err = P { l4: L4::TimeExceeded, payload: p.quote(), ..P::udp(R1_A, VM2, IP_R1_A, IP_VM2, 0, 0, b"") }.originated();
    c.input(1.0, "tap-vm2", p.bytes()).expect(1.0, "tap-vm2", err.bytes()).drop("ttl_exceeded", 1);
    all.push(c);

    // Story: a router without a gateway has no default route: ICMP net unreachable.
    let mut s = without_fips(base());
    s["routers"][0] = json!({"id": "r1"});
    let mut c = Case::new("no-route", "vm2 sends to 8.8.8.8 through a router with no default route", s);
    let p = P::udp(VM2, R1_A, IP_VM2, [8, 8, 8, 8], 4000, 53, b"query");
    let err =
        P { l4: L4::Unreachable(DestUnreachableHeader::Network), payload: p.quote(), ..P::udp(R1_A, VM2, IP_R1_A, IP_VM2, 0, 0, b"") }
            .originated();
    c.input(1.0, "tap-vm2", p.bytes()).expect(1.0, "tap-vm2", err.bytes()).drop("no_route", 1);
    all.push(c);

    // Story: next-hop ARP (§6.4): vm3's traffic leaves via the edge, whose upstream is not yet
    // resolved. The first packet sends a request; three wait; the fourth is dropped; the reply
    // releases them in order; later packets go straight out.
    let mut c = Case::new("arp-resolution", "packets wait for the upstream's ARP reply, three at most", base());
    let p = P::udp(VM3, R1_B, IP_VM3, EXT_HOST, 4000, 53, b"query");
    let out = p.with_src(IP_GW, None).routed(2, EDGE_UP, UPSTREAM);
    c.input(1.0, "tap-vm3", p.bytes()).expect(1.0, "uplink0", arp_request(EDGE_UP, IP_EDGE_UP, IP_UPSTREAM));
    c.input(1.1, "tap-vm3", p.bytes()).input(1.2, "tap-vm3", p.bytes()).input(1.3, "tap-vm3", p.bytes());
    c.input(1.5, "uplink0", arp_reply(UPSTREAM, IP_UPSTREAM, EDGE_UP, IP_EDGE_UP));
    for _ in 0..3 {
        c.expect(1.5, "uplink0", out.bytes());
    }
    c.input(2.0, "tap-vm3", p.bytes()).expect(2.0, "uplink0", out.bytes());
    c.drop("arp_queue_full", 1);
    all.push(c);

    // Story: a next hop that never answers: the request is sent again each second on the packet
    // clock, and after three tries the waiting packets are dropped and counted.
    let mut s = base();
    s["routers"][1]["routes"] = json!([
        {"destination": "0.0.0.0/0", "nexthop": ip_str(IP_UPSTREAM)},
        {"destination": "192.0.2.128/25", "nexthop": "198.51.100.9"},
    ]);
    let mut c = Case::new("arp-retry", "requests at 10, 11 and 12 s go unanswered; at 13 s three packets are dropped", s);
    let req = arp_request(EDGE_UP, IP_EDGE_UP, [198, 51, 100, 9]);
    for (i, t) in [10.0, 11.0, 12.0].into_iter().enumerate() {
        let p = P::udp(VM3, R1_B, IP_VM3, [192, 0, 2, 200 + i as u8], 4000, 53, b"lost");
        c.input(t, "tap-vm3", p.bytes()).expect(t, "uplink0", req.clone());
    }
    let ew = P::udp(VM2, R1_A, IP_VM2, IP_VM3, 4000, 5000, b"unrelated");
    c.input(13.0, "tap-vm2", ew.bytes()).expect(13.0, "tap-vm3", ew.routed(1, R1_B, VM3).bytes());
    c.drop("arp_unresolved", 3);
    all.push(c);

    // Story: a changed ARP entry invalidates flows (§9): the upstream router answers from a new
    // MAC; the cached flow toward the old one is not used again.
    let mut c = Case::new("arp-change", "after the upstream re-announces from a new MAC, cached traffic follows it", base());
    arp_announce(&mut c, 1.0);
    let p = P::udp(VM3, R1_B, IP_VM3, EXT_HOST, 4000, 53, b"query");
    for t in [2.0, 2.5] {
        c.input(t, "tap-vm3", p.bytes()).expect(t, "uplink0", p.with_src(IP_GW, None).routed(2, EDGE_UP, UPSTREAM).bytes());
    }
    let new_mac: Mac = [0x02, 0xaa, 0, 0, 0, 2];
    c.input(3.0, "uplink0", arp_request(new_mac, IP_UPSTREAM, IP_EDGE_UP)).expect(
        3.0,
        "uplink0",
        arp_reply(EDGE_UP, IP_EDGE_UP, new_mac, IP_UPSTREAM),
    );
    c.input(4.0, "tap-vm3", p.bytes()).expect(4.0, "uplink0", p.with_src(IP_GW, None).routed(2, EDGE_UP, new_mac).bytes());
    all.push(c);

    // Story: neighbours that move (RFC 826's merge rule). The upstream router fails over and its
    // standby announces the address from a new MAC by gratuitous ARP — a request, or a reply, with
    // sender IP = target IP — which updates edge's entry: traffic cached toward the old MAC goes
    // to the new one from the next packet on. Nothing answers an announcement.
    let new_mac: Mac = [0x02, 0xaa, 0, 0, 0, 2];
    for (name, story, garp) in [
        (
            "garp-request",
            "a gratuitous ARP request from the upstream's new MAC moves edge's traffic to it",
            arp_request(new_mac, IP_UPSTREAM, IP_UPSTREAM),
        ),
        (
            "garp-reply",
            "a gratuitous ARP reply from the upstream's new MAC moves edge's traffic to it",
            arp_reply(new_mac, IP_UPSTREAM, BCAST, IP_UPSTREAM),
        ),
    ] {
        let mut c = Case::new(name, story, base());
        arp_announce(&mut c, 1.0);
        let p = P::udp(VM3, R1_B, IP_VM3, EXT_HOST, 4000, 53, b"query");
        for t in [2.0, 2.5] {
            c.input(t, "tap-vm3", p.bytes()).expect(t, "uplink0", p.with_src(IP_GW, None).routed(2, EDGE_UP, UPSTREAM).bytes());
        }
        c.input(3.0, "uplink0", garp);
        c.input(4.0, "tap-vm3", p.bytes()).expect(4.0, "uplink0", p.with_src(IP_GW, None).routed(2, EDGE_UP, new_mac).bytes());
        all.push(c);
    }

    // Story: an upstream on the external network itself (a plain uplink port of a `local`
    // ext-net, no edge router) asks for gw-ip. ARP suppression does not hide the request from r1's
    // gateway port: the port answers it and learns the asker, so vm2's default-SNAT traffic leaves
    // at once, with no ARP request of its own. After a failover the standby asks from a new MAC,
    // and traffic follows it.
    let mut s = without_fips(base());
    let up_ext: Mac = [0x02, 0xbb, 0, 0, 0, 1];
    let up_ext2: Mac = [0x02, 0xbb, 0, 0, 0, 2];
    let ext_gw: Ip = [203, 0, 113, 1];
    s["networks"][2] = json!({"id": "ext-net", "router:external": true, "provider:network_type": "local"});
    let ports: Vec<Value> = s["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter(|p| !p["id"].as_str().is_some_and(|i| i.starts_with("edge")))
        .cloned()
        .collect();
    s["ports"] = json!(ports);
    let mut uplink = port("uplink-ext", "ext-net", [0x02, 0xbb, 0, 0, 0, 0xff], [203, 0, 113, 250], "network:uplink", "", Some("uplink1"));
    uplink["port_security_enabled"] = json!(false);
    s["ports"].as_array_mut().expect("ports").push(uplink);
    s["routers"] = json!([{"id": "r1", "external_gateway_info": {"network_id": "ext-net", "enable_snat": true}}]);
    let mut c = Case::new("arp-request-for-gw-ip", "the upstream asks for gw-ip on ext-net: r1's gateway port answers and learns it", s);
    let p = P::udp(VM2, R1_A, IP_VM2, EXT_HOST, 4000, 53, b"query");
    c.input(1.0, "uplink1", arp_request(up_ext, ext_gw, IP_GW)).expect(1.0, "uplink1", arp_reply(R1_GW, IP_GW, up_ext, ext_gw));
    c.input(2.0, "tap-vm2", p.bytes()).expect(2.0, "uplink1", p.with_src(IP_GW, None).routed(1, R1_GW, up_ext).bytes());
    c.input(3.0, "uplink1", arp_request(up_ext2, ext_gw, IP_GW)).expect(3.0, "uplink1", arp_reply(R1_GW, IP_GW, up_ext2, ext_gw));
    c.input(4.0, "tap-vm2", p.bytes()).expect(4.0, "uplink1", p.with_src(IP_GW, None).routed(1, R1_GW, up_ext2).bytes());
    all.push(c);

    // Story: inbound floating IP (§6.1 PREROUTING 1): from the uplink through the edge router
    // to r1's gateway port, DNAT to vm1's fixed IP; vm1's reply leaves as the floating IP.
    let mut c = Case::new("fip-dnat-inbound", "192.0.2.50 reaches vm1 at FIP-A through the edge and r1, UDP and ping", base());
    arp_announce(&mut c, 1.0);
    let p = P::udp(UPSTREAM, EDGE_UP, EXT_HOST, FIP_A, 33000, 7000, b"inbound");
    let at_vm = p.with_dst(IP_VM1, None).routed(2, R1_A, VM1);
    c.input(2.0, "uplink0", p.bytes()).expect(2.0, "tap-vm1", at_vm.bytes());
    c.input(2.5, "uplink0", p.bytes()).expect(2.5, "tap-vm1", at_vm.bytes());
    let r = P::udp(VM1, R1_A, IP_VM1, EXT_HOST, 7000, 33000, b"reply");
    c.input(3.0, "tap-vm1", r.bytes()).expect(3.0, "uplink0", r.with_src(FIP_A, None).routed(2, EDGE_UP, UPSTREAM).bytes());
    // An echo request to the floating IP is translated to vm1, which answers it.
    let ping = P { l4: L4::EchoRequest { id: 9, seq: 1 }, ..P::udp(UPSTREAM, EDGE_UP, EXT_HOST, FIP_A, 0, 0, &[0x33; 16]) };
    c.input(4.0, "uplink0", ping.bytes()).expect(4.0, "tap-vm1", ping.with_dst(IP_VM1, None).routed(2, R1_A, VM1).bytes());
    let pong = P { l4: L4::EchoReply { id: 9, seq: 1 }, ..P::udp(VM1, R1_A, IP_VM1, EXT_HOST, 0, 0, &[0x33; 16]) };
    c.input(5.0, "tap-vm1", pong.bytes()).expect(5.0, "uplink0", pong.with_src(FIP_A, None).routed(2, EDGE_UP, UPSTREAM).bytes());
    all.push(c);

    // Story: outbound floating IP (§6.1 POSTROUTING 1): vm1 opens TCP to the outside and leaves
    // as FIP-A; the SYN-ACK comes back to the fixed IP.
    let mut c = Case::new("fip-snat-outbound", "vm1's TCP SYN leaves as 203.0.113.10; the answer reaches vm1", base());
    arp_announce(&mut c, 1.0);
    let syn =
        P { l4: L4::Tcp { sport: 40000, dport: 80, syn: true, ack: false, seq: 1000 }, ..P::udp(VM1, R1_A, IP_VM1, EXT_HOST, 0, 0, b"") };
    c.input(2.0, "tap-vm1", syn.bytes()).expect(2.0, "uplink0", syn.with_src(FIP_A, None).routed(2, EDGE_UP, UPSTREAM).bytes());
    let synack = P {
        l4: L4::Tcp { sport: 80, dport: 40000, syn: true, ack: true, seq: 5000 },
        ..P::udp(UPSTREAM, EDGE_UP, EXT_HOST, FIP_A, 0, 0, b"")
    };
    c.input(3.0, "uplink0", synack.bytes()).expect(3.0, "tap-vm1", synack.with_dst(IP_VM1, None).routed(2, R1_A, VM1).bytes());
    all.push(c);

    // Story: the worked cases of 004 §8.2.5 (SPEC §6.1). X = vm1 with FIP-A (gateway port) and
    // FIP-B (r1's interface on fip-net); Y = vm3 behind another interface; Z = z on fip-net.
    let mut c = Case::new("fip-worked-cases", "X→Z as FIP-B; X→Y as FIP-A; Y→FIP-A arrives as gw-ip; Z→FIP-B arrives as Z", base());
    let x_z = P::udp(VM1, R1_A, IP_VM1, IP_Z, 5001, 6001, b"x to z");
    c.input(1.0, "tap-vm1", x_z.bytes()).expect(1.0, "tap-z", x_z.with_src(FIP_B, None).routed(1, R1_F, Z).bytes());
    let x_y = P::udp(VM1, R1_A, IP_VM1, IP_VM3, 5002, 6002, b"x to y");
    c.input(2.0, "tap-vm1", x_y.bytes()).expect(2.0, "tap-vm3", x_y.with_src(FIP_A, None).routed(1, R1_B, VM3).bytes());
    let y_fa = P::udp(VM3, R1_B, IP_VM3, FIP_A, 6003, 5003, b"y to fip-a");
    c.input(3.0, "tap-vm3", y_fa.bytes()).expect(
        3.0,
        "tap-vm1",
        y_fa.with_dst(IP_VM1, None).with_src(IP_GW, Some(6003)).routed(1, R1_A, VM1).bytes(),
    );
    let x_gw = P::udp(VM1, R1_A, IP_VM1, IP_GW, 5003, 6003, b"x answers gw-ip");
    c.input(4.0, "tap-vm1", x_gw.bytes()).expect(
        4.0,
        "tap-vm3",
        x_gw.with_dst(IP_VM3, Some(6003)).with_src(FIP_A, None).routed(1, R1_B, VM3).bytes(),
    );
    let z_fb = P::udp(Z, R1_F, IP_Z, FIP_B, 6005, 5005, b"z to fip-b");
    c.input(5.0, "tap-z", z_fb.bytes()).expect(5.0, "tap-vm1", z_fb.with_dst(IP_VM1, None).routed(1, R1_A, VM1).bytes());
    let x_z2 = P::udp(VM1, R1_A, IP_VM1, IP_Z, 5005, 6005, b"x answers z");
    c.input(6.0, "tap-vm1", x_z2.bytes()).expect(6.0, "tap-z", x_z2.with_src(FIP_B, None).routed(1, R1_F, Z).bytes());
    let y_fb = P::udp(VM3, R1_B, IP_VM3, FIP_B, 6007, 5007, b"y to fip-b");
    c.input(7.0, "tap-vm3", y_fb.bytes()).expect(
        7.0,
        "tap-vm1",
        y_fb.with_dst(IP_VM1, None).with_src(IP_GW, Some(6007)).routed(1, R1_A, VM1).bytes(),
    );
    let x_gw2 = P::udp(VM1, R1_A, IP_VM1, IP_GW, 5007, 6007, b"x answers gw-ip again");
    c.input(8.0, "tap-vm1", x_gw2.bytes()).expect(
        8.0,
        "tap-vm3",
        x_gw2.with_dst(IP_VM3, Some(6007)).with_src(FIP_A, None).routed(1, R1_B, VM3).bytes(),
    );
    all.push(c);

    // Story: default SNAT (§6.1 POSTROUTING 5) of two VMs using the same source port to the same
    // destination: the first keeps its port, the second gets the next; replies find their VM.
    let mut c = Case::new("default-snat", "vm3 and vm6 both send from port 5000; they leave as gw-ip:5000 and gw-ip:5001", base());
    arp_announce(&mut c, 1.0);
    let a = P::udp(VM3, R1_B, IP_VM3, EXT_HOST, 5000, 53, b"from vm3");
    let b = P::udp(VM6, R1_B, IP_VM6, EXT_HOST, 5000, 53, b"from vm6");
    c.input(2.0, "tap-vm3", a.bytes()).expect(2.0, "uplink0", a.with_src(IP_GW, Some(5000)).routed(2, EDGE_UP, UPSTREAM).bytes());
    c.input(3.0, "tap-vm6", b.bytes()).expect(3.0, "uplink0", b.with_src(IP_GW, Some(5001)).routed(2, EDGE_UP, UPSTREAM).bytes());
    let rb = P::udp(UPSTREAM, EDGE_UP, EXT_HOST, IP_GW, 53, 5001, b"to vm6");
    let ra = P::udp(UPSTREAM, EDGE_UP, EXT_HOST, IP_GW, 53, 5000, b"to vm3");
    c.input(4.0, "uplink0", rb.bytes()).expect(4.0, "tap-vm6", rb.with_dst(IP_VM6, Some(5000)).routed(2, R1_B, VM6).bytes());
    c.input(5.0, "uplink0", ra.bytes()).expect(5.0, "tap-vm3", ra.with_dst(IP_VM3, Some(5000)).routed(2, R1_B, VM3).bytes());
    // A packet to gw-ip with no mapping is dropped and counted.
    let stray = P::udp(UPSTREAM, EDGE_UP, EXT_HOST, IP_GW, 53, 5999, b"no mapping");
    c.input(6.0, "uplink0", stray.bytes()).drop("to_router_unhandled", 1);
    all.push(c);

    // Story: same-subnet SNAT (§6.1 POSTROUTING 7, PREROUTING 3): vm1 reaches 172.20.0.0/16
    // through an appliance (vm2) on its own subnet; in and out of the same router interface, the
    // source becomes the interface's IP, and the appliance's answer is reversed to vm1.
    let mut s = without_fips(base());
    s["routers"][0]["routes"] = json!([{"destination": "172.20.0.0/16", "nexthop": ip_str(IP_VM2)}]);
    s["ports"][1]["allowed_address_pairs"] = json!([{"ip_address": "172.20.0.0/16"}]);
    let mut c = Case::new("same-subnet", "vm1 → 172.20.0.1 via vm2 is SNATed to 10.0.0.1; the answer returns to vm1", s);
    let p = P::udp(VM1, R1_A, IP_VM1, [172, 20, 0, 1], 5000, 7000, b"via appliance");
    c.input(1.0, "tap-vm1", p.bytes()).expect(1.0, "tap-vm2", p.with_src(IP_R1_A, Some(5000)).routed(1, R1_A, VM2).bytes());
    let r = P::udp(VM2, R1_A, [172, 20, 0, 1], IP_R1_A, 7000, 5000, b"answer");
    c.input(2.0, "tap-vm2", r.bytes()).expect(2.0, "tap-vm1", r.with_dst(IP_VM1, Some(5000)).routed(1, R1_A, VM1).bytes());
    all.push(c);

    // Story: an ICMP error about a default-SNATed packet (RFC 5508): the outside answers a probe
    // with port unreachable to gw-ip; the error reaches vm3 with its quoted header translated back.
    // An error quoting a port with no mapping is dropped.
    let mut c = Case::new("icmp-error-snat", "port unreachable for gw-ip:33434 reaches vm3 with the quote translated", base());
    arp_announce(&mut c, 1.0);
    let probe = P::udp(VM3, R1_B, IP_VM3, EXT_HOST, 33434, 33434, b"probe");
    let left = probe.with_src(IP_GW, None).routed(2, EDGE_UP, UPSTREAM);
    c.input(2.0, "tap-vm3", probe.bytes()).expect(2.0, "uplink0", left.bytes());
    let err = P {
        l4: L4::Unreachable(DestUnreachableHeader::Port),
        payload: left.quote(),
        df: false,
        ..P::udp(UPSTREAM, EDGE_UP, EXT_HOST, IP_GW, 0, 0, b"")
    };
    let quote_back = P { ttl: left.ttl, ..probe.clone() }.quote();
    let delivered = P { payload: quote_back, dst: IP_VM3, ..err.routed(2, R1_B, VM3) };
    // First an error about a port with no mapping, with the very same outer headers: it is
    // dropped, and that must not decide the fate of the next error (errors are never cached).
    let stray = P { payload: left.with_src(IP_GW, Some(40000)).quote(), ..err.clone() };
    c.input(2.5, "uplink0", stray.bytes()).drop("to_router_unhandled", 1);
    c.input(3.0, "uplink0", err.bytes()).expect(3.0, "tap-vm3", delivered.bytes());
    all.push(c);

    // Story: anti-spoofing (§5.2): a wrong source MAC, a wrong source IP and an ARP with a wrong
    // sender IP are dropped; an allowed address pair passes.
    let mut s = base();
    s["ports"][1]["allowed_address_pairs"] = json!([{"ip_address": "10.0.0.200"}]);
    let mut c = Case::new("anti-spoofing", "spoofed MAC, IP and ARP sender from vm1 are dropped; vm2's allowed pair passes", s);
    let bad_mac = P::udp([2, 0x66, 0x66, 0x66, 0x66, 0x66], VM2, IP_VM1, IP_VM2, 1, 2, b"mac");
    let bad_ip = P::udp(VM1, VM2, [10, 0, 0, 99], IP_VM2, 1, 2, b"ip");
    c.input(1.0, "tap-vm1", bad_mac.bytes()).input(2.0, "tap-vm1", bad_ip.bytes());
    c.input(3.0, "tap-vm1", arp_request(VM1, [10, 0, 0, 99], IP_VM2));
    let pair = P::udp(VM2, VM1, [10, 0, 0, 200], IP_VM1, 1, 2, b"allowed pair");
    c.input(4.0, "tap-vm2", pair.bytes()).expect(4.0, "tap-vm1", pair.bytes());
    c.drop("spoofed_mac", 1).drop("spoofed_ip", 2);
    all.push(c);

    // Story: two compute hosts over VXLAN (§7, §7.1), as host-a: vm1 → vm4 (on host-b) is
    // encapsulated to host-b's tunnel IP with net-a's VNI after ARP on the underlay; host-b's
    // VXLAN is decapsulated to vm1; VXLAN without the I flag, from an unknown endpoint or with an
    // unknown VNI is dropped.
    let mut s = base();
    s["ports"].as_array_mut().expect("ports").push(json!({
        "id": "vm4", "network_id": "net-a", "mac_address": mac_str(VM4), "fixed_ips": [{"ip_address": ip_str(IP_VM4)}],
        "device_owner": "compute:nova", "binding:host_id": "host-b", "binding:profile": {"if_name": "tap-vm4"},
    }));
    let to4 = P::udp(VM1, VM4, IP_VM1, IP_VM4, 4000, 5000, b"to host-b");
    let from4 = P::udp(VM4, VM1, IP_VM4, IP_VM1, 5000, 4000, b"from host-b");
    let enc_ab = vxlan(UL_A, UL_B, TUN_A, TUN_B, 100, 0x08, &to4.bytes());
    let enc_ba = vxlan(UL_B, UL_A, TUN_B, TUN_A, 100, 0x08, &from4.bytes());
    let mut c = Case::new("vxlan-host-a", "host-a tunnels vm1's frames to host-b and decapsulates host-b's", s.clone());
    c.macs = vec![("ul0", UL_A)];
    c.input(1.0, "tap-vm1", to4.bytes()).expect(1.0, "ul0", arp_request(UL_A, TUN_A, TUN_B));
    c.input(1.5, "ul0", arp_reply(UL_B, TUN_B, UL_A, TUN_A)).expect(1.5, "ul0", enc_ab.clone());
    c.input(2.0, "tap-vm1", to4.bytes()).expect(2.0, "ul0", enc_ab.clone());
    c.input(3.0, "ul0", enc_ba.clone()).expect(3.0, "tap-vm1", from4.bytes());
    c.input(4.0, "ul0", vxlan(UL_B, UL_A, TUN_B, TUN_A, 100, 0x00, &from4.bytes()));
    c.input(5.0, "ul0", vxlan(UL_B, UL_A, [192, 168, 50, 99], TUN_A, 100, 0x08, &from4.bytes()));
    c.input(6.0, "ul0", vxlan(UL_B, UL_A, TUN_B, TUN_A, 999, 0x08, &from4.bytes()));
    c.drop("vxlan_no_i_flag", 1).drop("vxlan_unknown_source", 1).drop("vxlan_unknown_vni", 1);
    all.push(c);

    // Story: learning invalidates flows (§5.3, §9): a frame to an unknown MAC floods — to vm2
    // and through the tunnel to host-b — and that flood is cached; when the MAC is learned from
    // host-b's VXLAN, the next frame goes through the tunnel only.
    let m: Mac = [0x02, 0xbb, 0, 0, 0, 0x09];
    let mut c = Case::new("mac-learning", "a cached flood becomes a unicast tunnel once the MAC is learned behind host-b", s.clone());
    c.macs = vec![("ul0", UL_A)];
    c.input(1.0, "ul0", arp_reply(UL_B, TUN_B, UL_A, TUN_A));
    let to_m = P::udp(VM1, m, IP_VM1, [10, 0, 0, 9], 4000, 5000, b"to m");
    for t in [2.0, 2.5] {
        c.input(t, "tap-vm1", to_m.bytes()).expect(t, "tap-vm2", to_m.bytes()).expect(
            t,
            "ul0",
            vxlan(UL_A, UL_B, TUN_A, TUN_B, 100, 0x08, &to_m.bytes()),
        );
    }
    let from_m = P::udp(m, VM1, [10, 0, 0, 9], IP_VM1, 5000, 4000, b"from m");
    c.input(3.0, "ul0", vxlan(UL_B, UL_A, TUN_B, TUN_A, 100, 0x08, &from_m.bytes())).expect(3.0, "tap-vm1", from_m.bytes());
    c.input(4.0, "tap-vm1", to_m.bytes()).expect(4.0, "ul0", vxlan(UL_A, UL_B, TUN_A, TUN_B, 100, 0x08, &to_m.bytes()));
    all.push(c);

    // Story: the same exchange replayed as host-b: it answers host-a's ARP for its tunnel IP,
    // decapsulates host-a's frames to vm4, and tunnels vm4's answer back.
    let mut c = Case::new("vxlan-host-b", "host-b answers ARP on the underlay, decapsulates to vm4 and tunnels back", s);
    c.host = "host-b";
    c.macs = vec![("ul0", UL_B)];
    c.input(1.0, "ul0", arp_request(UL_A, TUN_A, TUN_B)).expect(1.0, "ul0", arp_reply(UL_B, TUN_B, UL_A, TUN_A));
    c.input(1.5, "ul0", enc_ab.clone()).expect(1.5, "tap-vm4", to4.bytes());
    c.input(2.0, "ul0", enc_ab).expect(2.0, "tap-vm4", to4.bytes());
    c.input(3.0, "tap-vm4", from4.bytes()).expect(3.0, "ul0", enc_ba);
    all.push(c);

    // Story: float NAT applies to every fragment (§6.1): a UDP datagram in three fragments to
    // FIP-A reaches vm1 with the destination rewritten in each and the UDP checksum, carried by
    // the first, updated; through default SNAT the first fragment is translated and the later
    // ones, which carry no ports, are dropped.
    let mut c = Case::new("fragments", "fragments to FIP-A are all translated; later fragments cannot take default SNAT", base());
    arp_announce(&mut c, 1.0);
    let payload: Vec<u8> = (0..1200u32).map(|i| (i % 251) as u8).collect();
    let inbound = udp_fragments(UPSTREAM, EDGE_UP, EXT_HOST, FIP_A, 64, 0x1234, 33000, 7000, &payload, 504);
    let delivered = udp_fragments(R1_A, VM1, EXT_HOST, IP_VM1, 62, 0x1234, 33000, 7000, &payload, 504);
    for (i, (f, d)) in inbound.into_iter().zip(delivered).enumerate() {
        let t = 2.0 + i as f64 * 0.1;
        c.input(t, "uplink0", f).expect(t, "tap-vm1", d);
    }
    let outbound = udp_fragments(VM3, R1_B, IP_VM3, EXT_HOST, 64, 0x4321, 5000, 53, &payload, 504);
    let first_out = udp_fragments(EDGE_UP, UPSTREAM, IP_GW, EXT_HOST, 62, 0x4321, 5000, 53, &payload, 504);
    for (i, f) in outbound.into_iter().enumerate() {
        let t = 3.0 + i as f64 * 0.1;
        c.input(t, "tap-vm3", f);
        if i == 0 {
            c.expect(t, "uplink0", first_out[0].clone());
        }
    }
    c.drop("snat_untranslatable", 2);
    all.push(c);

    // Story: ICMP echo through default SNAT (§6.1): identifiers are translated like ports, from
    // 1024–65535; two VMs using the same identifier get distinct ones, and replies find their VM.
    let mut c = Case::new("icmp-echo-snat", "vm3 and vm6 ping out with id 119; they leave with ids 1024 and 1025", base());
    arp_announce(&mut c, 1.0);
    for (t, (smac, ip, nat_id)) in [(2.0, (VM3, IP_VM3, 1024u16)), (3.0, (VM6, IP_VM6, 1025))] {
        let req = P { l4: L4::EchoRequest { id: 119, seq: 1 }, ..P::udp(smac, R1_B, ip, EXT_HOST, 0, 0, &[0x70; 24]) };
        let out = P { l4: L4::EchoRequest { id: nat_id, seq: 1 }, ..req.with_src(IP_GW, None).routed(2, EDGE_UP, UPSTREAM) };
        c.input(t, if smac == VM3 { "tap-vm3" } else { "tap-vm6" }, req.bytes()).expect(t, "uplink0", out.bytes());
    }
    for (t, (dmac, ip, nat_id, iface)) in [(4.0, (VM6, IP_VM6, 1025u16, "tap-vm6")), (5.0, (VM3, IP_VM3, 1024, "tap-vm3"))] {
        let rep = P { l4: L4::EchoReply { id: nat_id, seq: 1 }, ..P::udp(UPSTREAM, EDGE_UP, EXT_HOST, IP_GW, 0, 0, &[0x70; 24]) };
        let back = P { l4: L4::EchoReply { id: 119, seq: 1 }, ..rep.with_dst(ip, None).routed(2, R1_B, dmac) };
        c.input(t, "uplink0", rep.bytes()).expect(t, iface, back.bytes());
    }
    all.push(c);

    // Story: mappings expire on the packet clock (UDP 300 s, RFC 4787): the answer at 3 s is
    // delivered; at 400 s the mapping is gone and the cached return flow with it, so the answer is
    // dropped; vm3's next packet makes a new mapping, and its answer is delivered again.
    let mut c = Case::new("snat-timeout", "a UDP mapping idle for more than 300 s is gone; a new packet makes a new one", base());
    arp_announce(&mut c, 1.0);
    let out = P::udp(VM3, R1_B, IP_VM3, EXT_HOST, 5000, 53, b"query");
    let back = P::udp(UPSTREAM, EDGE_UP, EXT_HOST, IP_GW, 53, 5000, b"answer");
    let left = out.with_src(IP_GW, None).routed(2, EDGE_UP, UPSTREAM);
    let arrived = back.with_dst(IP_VM3, None).routed(2, R1_B, VM3);
    c.input(2.0, "tap-vm3", out.bytes()).expect(2.0, "uplink0", left.bytes());
    c.input(3.0, "uplink0", back.bytes()).expect(3.0, "tap-vm3", arrived.bytes());
    c.input(200.0, "uplink0", back.bytes()).expect(200.0, "tap-vm3", arrived.bytes());
    c.input(501.0, "uplink0", back.bytes()).drop("to_router_unhandled", 1);
    c.input(502.0, "tap-vm3", out.bytes()).expect(502.0, "uplink0", left.bytes());
    c.input(503.0, "uplink0", back.bytes()).expect(503.0, "tap-vm3", arrived.bytes());
    all.push(c);

    // Story: admin state (§5.2): a port that is down neither sends nor receives; a network that
    // is down forwards nothing, from its ports or from a router.
    let mut s = base();
    s["ports"][1]["admin_state_up"] = json!(false);
    s["networks"][1]["admin_state_up"] = json!(false);
    let mut c = Case::new("admin-down", "vm2's port and net-b are administratively down", s);
    c.input(1.0, "tap-vm1", P::udp(VM1, VM2, IP_VM1, IP_VM2, 1, 2, b"to vm2").bytes());
    c.input(2.0, "tap-vm2", P::udp(VM2, VM1, IP_VM2, IP_VM1, 2, 1, b"from vm2").bytes());
    c.input(3.0, "tap-vm3", P::udp(VM3, R1_B, IP_VM3, IP_VM1, 3, 4, b"from net-b").bytes());
    c.input(4.0, "tap-vm1", P::udp(VM1, R1_A, IP_VM1, IP_VM3, 4, 3, b"into net-b").bytes());
    c.drop("port_down", 2).drop("network_down", 2);
    all.push(c);

    // Story: the loop guard (§6.5): r1 and the edge router each route 172.30.0.0/16 to the other;
    // the packet is dropped once its walk passes 16 devices, long before its TTL runs out.
    let mut s = base();
    s["routers"][0]["routes"] = json!([{"destination": "172.30.0.0/16", "nexthop": "203.0.113.1"}]);
    s["routers"][1]["routes"] = json!([
        {"destination": "0.0.0.0/0", "nexthop": ip_str(IP_UPSTREAM)},
        {"destination": "172.30.0.0/16", "nexthop": ip_str(IP_GW)},
    ]);
    let mut c = Case::new("loop-guard", "a routing loop between r1 and the edge is cut after 16 devices", s);
    c.input(1.0, "tap-vm2", P { ttl: 255, ..P::udp(VM2, R1_A, IP_VM2, [172, 30, 0, 1], 1, 2, b"round and round") }.bytes());
    c.drop("loop_guard", 1);
    all.push(c);

    // ---- VXLAN gateways (SPEC §7.2–§7.4, issue 3) -------------------------------------------

    // Story: a router VTEP (§7.2): the edge router is made a VTEP at 198.51.100.20 by a
    // router_vtep device joined to net-a (VNI 5000). vm1's frame to a remote MAC entry is
    // encapsulated with the entry's VNI toward its VTEP, and the edge routes the outer packet out
    // of the uplink once ARP resolves the upstream. VXLAN back to .20 is decapsulated into net-a;
    // an unknown VNI at that VTEP is dropped; the edge answers ARP for its VTEP address.
    let mut c = Case::new("router-vtep", "vm1 reaches a remote MAC through the edge router's VTEP, and back", gateways());
    let to_rm = P::udp(VM1, RMAC_RV, IP_VM1, [10, 0, 0, 60], 4000, 4789, b"to the remote mac");
    let enc = vxlan(EDGE_UP, UPSTREAM, RV_ADDR, RV_REMOTE, 5000, 0x08, &to_rm.bytes());
    c.input(1.0, "tap-vm1", to_rm.bytes()).expect(1.0, "uplink0", arp_request(EDGE_UP, IP_EDGE_UP, IP_UPSTREAM));
    c.input(1.5, "uplink0", arp_reply(UPSTREAM, IP_UPSTREAM, EDGE_UP, IP_EDGE_UP)).expect(1.5, "uplink0", enc.clone());
    c.input(2.0, "tap-vm1", to_rm.bytes()).expect(2.0, "uplink0", enc);
    let from_rm = P::udp(RMAC_RV, VM1, [10, 0, 0, 60], IP_VM1, 4789, 4000, b"from the remote mac");
    c.input(3.0, "uplink0", vxlan(UPSTREAM, EDGE_UP, RV_REMOTE, RV_ADDR, 5000, 0x08, &from_rm.bytes())).expect(
        3.0,
        "tap-vm1",
        from_rm.bytes(),
    );
    c.input(3.5, "uplink0", vxlan(UPSTREAM, EDGE_UP, RV_REMOTE, RV_ADDR, 5000, 0x08, &from_rm.bytes())).expect(
        3.5,
        "tap-vm1",
        from_rm.bytes(),
    );
    c.input(4.0, "uplink0", vxlan(UPSTREAM, EDGE_UP, RV_REMOTE, RV_ADDR, 100, 0x08, &from_rm.bytes())).drop("vxlan_unknown_vni", 1);
    c.input(5.0, "uplink0", arp_request(UPSTREAM, IP_UPSTREAM, RV_ADDR)).expect(
        5.0,
        "uplink0",
        arp_reply(EDGE_UP, RV_ADDR, UPSTREAM, IP_UPSTREAM),
    );
    all.push(c);

    // Story: a router VTEP behind a gateway port (§7.2, §7.4): r1 is a VTEP at 203.0.113.30
    // (on ext-net) for net-b, with a remote MAC entry and a remote gateway rg3 on its l2 gateway.
    // Both are reached from r1: the outer packet leaves by r1's gateway port, crosses the edge
    // router (outer TTL 63, edge MACs) and leaves on the uplink. VXLAN back to .30 makes the edge
    // resolve r1's VTEP address by ARP on ext-net (r1 answers for it) before r1 decapsulates.
    let mut s = gateways();
    s["gateway_devices"].as_array_mut().expect("devices").push(json!(
        {"id": "rv2", "type": "router_vtep", "resource_id": "r1", "tunnel_ips": ["203.0.113.30"],
         "remote_mac_entries": [{"id": "rme2", "mac_address": mac_str(RMAC_RV2), "vtep_address": "192.0.2.78", "segmentation_id": 5100}]}));
    s["l2_gateways"].as_array_mut().expect("l2gws").push(json!({"id": "l2gw-rv2", "devices": [{"device_id": "rv2"}]}));
    s["l2_gateway_connections"]
        .as_array_mut()
        .expect("conns")
        .push(json!({"id": "l2c-rv2", "l2_gateway_id": "l2gw-rv2", "network_id": "net-b", "segmentation_id": 5100}));
    s["remote_gateways"].as_array_mut().expect("rgws").push(json!({"id": "rg3", "ipaddr": "192.0.2.90"}));
    s["remote_gateway_connections"].as_array_mut().expect("rcs").push(json!(
        {"id": "rc3", "l2_gateway_id": "l2gw-rv2", "network_id": "net-b", "remote_gateway_id": "rg3", "segmentation_id": 5200}));
    s["remote_macs"].as_array_mut().expect("rms").push(json!({"id": "rm3", "mac": mac_str(RMAC_3), "rgw_connection": "rc3"}));
    let mut c = Case::new("router-vtep-gateway-port", "r1's VTEP traffic leaves by its gateway port through the edge, and comes back", s);
    arp_announce(&mut c, 1.0);
    let r1_vtep: Ip = [203, 0, 113, 30];
    let to_entry = P::udp(VM3, RMAC_RV2, IP_VM3, [10, 1, 0, 61], 4000, 4000, b"to r1's remote mac entry");
    let out = vxlan_ttl(EDGE_UP, UPSTREAM, r1_vtep, [192, 0, 2, 78], 5100, 0x08, &to_entry.bytes(), 63);
    c.input(2.0, "tap-vm3", to_entry.bytes()).expect(2.0, "uplink0", out.clone());
    c.input(2.5, "tap-vm3", to_entry.bytes()).expect(2.5, "uplink0", out);
    let to_rg3 = P::udp(VM3, RMAC_3, IP_VM3, [10, 1, 0, 62], 4000, 4001, b"to rg3's remote mac");
    c.input(3.0, "tap-vm3", to_rg3.bytes()).expect(
        3.0,
        "uplink0",
        vxlan_ttl(EDGE_UP, UPSTREAM, r1_vtep, [192, 0, 2, 90], 5200, 0x08, &to_rg3.bytes(), 63),
    );
    let back = P::udp(RMAC_RV2, VM3, [10, 1, 0, 61], IP_VM3, 4000, 4000, b"back from the entry's vtep");
    let enc = vxlan(UPSTREAM, EDGE_UP, [192, 0, 2, 78], r1_vtep, 5100, 0x08, &back.bytes());
    c.input(4.0, "uplink0", enc.clone()).expect(4.0, "tap-vm3", back.bytes());
    c.input(4.5, "uplink0", enc).expect(4.5, "tap-vm3", back.bytes());
    all.push(c);

    // Story: hardware VTEPs (§7.3) and split horizon: hw1 and hw2 (peered) are joined to net-b with
    // VNI 6000; a remote gateway on net-b floods too. vm3's broadcast goes to vm6, to one of the
    // peered pair and to the remote gateway. A MAC behind hw1 is learned from its VXLAN, and vm3's
    // frame to it then goes to hw1 alone. A broadcast decapsulated from hw1 reaches net-b's ports
    // only: never another VTEP.
    let mut c = Case::new("hw-vtep", "flooding to hardware VTEPs, learning behind hw1, split horizon", gateways());
    underlay_announce(&mut c, 1.0);
    let bcast = P::udp(VM3, BCAST, IP_VM3, [10, 1, 0, 255], 5000, 5001, b"hello net-b");
    c.input(2.0, "tap-vm3", bcast.bytes()).expect(2.0, "tap-vm6", bcast.bytes());
    c.expect(2.0, "ul0", vxlan(UL_A, UL_GW, TUN_A, peered(&bcast.bytes()), 6000, 0x08, &bcast.bytes()));
    c.expect(2.0, "ul0", vxlan(UL_A, UL_GW, TUN_A, RG2, 200, 0x08, &bcast.bytes()));
    let from_hw = P::udp(HW_MAC, VM3, [10, 1, 0, 70], IP_VM3, 6000, 6001, b"from behind hw1");
    c.input(3.0, "ul0", vxlan(UL_GW, UL_A, HW1, TUN_A, 6000, 0x08, &from_hw.bytes())).expect(3.0, "tap-vm3", from_hw.bytes());
    let to_hw = P::udp(VM3, HW_MAC, IP_VM3, [10, 1, 0, 70], 6001, 6000, b"to behind hw1");
    c.input(4.0, "tap-vm3", to_hw.bytes()).expect(4.0, "ul0", vxlan(UL_A, UL_GW, TUN_A, HW1, 6000, 0x08, &to_hw.bytes()));
    let hw_bcast = P::udp(HW_MAC, BCAST, [10, 1, 0, 70], [10, 1, 0, 255], 6000, 6002, b"everyone on net-b");
    c.input(5.0, "ul0", vxlan(UL_GW, UL_A, HW1, TUN_A, 6000, 0x08, &hw_bcast.bytes()));
    c.expect(5.0, "tap-vm3", hw_bcast.bytes()).expect(5.0, "tap-vm6", hw_bcast.bytes());
    all.push(c);

    // Story: active-active peering (§7): hw1 and hw2 are one logical VTEP. Two flows to an unknown
    // MAC are each sent to exactly one of them — one to hw1, the other to hw2, by the fixed flow
    // hash — and every packet of a flow to the same one.
    let mut c = Case::new("vtep-peering", "two flows split between peered hardware VTEPs, each flow staying on one", gateways());
    underlay_announce(&mut c, 1.0);
    let (a, b) = split_flows();
    assert_ne!(peered(&a.bytes()), peered(&b.bytes()));
    for (t, p) in [(2.0, &a), (2.1, &b), (3.0, &a), (3.1, &b)] {
        c.input(t, "tap-vm3", p.bytes()).expect(t, "tap-vm6", p.bytes());
        c.expect(t, "ul0", vxlan(UL_A, UL_GW, TUN_A, peered(&p.bytes()), 6000, 0x08, &p.bytes()));
        c.expect(t, "ul0", vxlan(UL_A, UL_GW, TUN_A, RG2, 200, 0x08, &p.bytes()));
    }
    all.push(c);

    // Story: remote gateways and remote MACs (§7.4, §5.4): rg1 extends net-a with VNI 7000 and
    // does not flood; its remote MAC's address is answered by ARP suppression and unicast to it is
    // tunnelled there; net-a's broadcast stays local; rg1's VXLAN is decapsulated into net-a only;
    // rg2 extends net-b with net-b's own VNI. VXLAN from an unknown address, with an unknown VNI or
    // without the I flag is dropped.
    let mut c = Case::new("remote-gateway", "remote MACs behind remote gateways, flood off and on, and the drops", gateways());
    underlay_announce(&mut c, 1.0);
    c.input(2.0, "tap-vm1", arp_request(VM1, IP_VM1, [10, 0, 0, 50])).expect(
        2.0,
        "tap-vm1",
        arp_reply(RMAC_1, [10, 0, 0, 50], VM1, IP_VM1),
    );
    let to_r1 = P::udp(VM1, RMAC_1, IP_VM1, [10, 0, 0, 50], 4000, 80, b"to rg1's mac");
    c.input(3.0, "tap-vm1", to_r1.bytes()).expect(3.0, "ul0", vxlan(UL_A, UL_GW, TUN_A, RG1, 7000, 0x08, &to_r1.bytes()));
    let local_bcast = P::udp(VM1, BCAST, IP_VM1, [10, 0, 0, 255], 4000, 4001, b"net-a only");
    c.input(4.0, "tap-vm1", local_bcast.bytes()).expect(4.0, "tap-vm2", local_bcast.bytes());
    let from_r1 = P::udp(RMAC_1, BCAST, [10, 0, 0, 50], [10, 0, 0, 255], 80, 4000, b"from rg1");
    c.input(5.0, "ul0", vxlan(UL_GW, UL_A, RG1, TUN_A, 7000, 0x08, &from_r1.bytes()));
    c.expect(5.0, "tap-vm1", from_r1.bytes()).expect(5.0, "tap-vm2", from_r1.bytes());
    let to_r2 = P::udp(VM3, RMAC_2, IP_VM3, [10, 1, 0, 50], 4000, 80, b"to rg2's mac");
    c.input(6.0, "tap-vm3", to_r2.bytes()).expect(6.0, "ul0", vxlan(UL_A, UL_GW, TUN_A, RG2, 200, 0x08, &to_r2.bytes()));
    c.input(7.0, "ul0", vxlan(UL_GW, UL_A, [192, 168, 99, 9], TUN_A, 7000, 0x08, &from_r1.bytes()));
    c.input(8.0, "ul0", vxlan(UL_GW, UL_A, RG1, TUN_A, 4242, 0x08, &from_r1.bytes()));
    c.input(9.0, "ul0", vxlan(UL_GW, UL_A, RG1, TUN_A, 7000, 0x00, &from_r1.bytes()));
    c.drop("vxlan_unknown_source", 1).drop("vxlan_unknown_vni", 1).drop("vxlan_no_i_flag", 1);
    all.push(c);

    // ---- firewall, logging, QoS (SPEC §6.2, §8; issue 4) ------------------------------------

    // Story: a firewall on r1 (FWaaS v1, §6.2) between net-a and net-b: first match in policy
    // order (an allow for web before a deny for the same port), CIDRs and port ranges, allow /
    // deny / reject (RST for TCP, port unreachable otherwise), a disabled rule skipped, default
    // drop, and stateful return traffic that no rule allows. Logs (§8): one resource logs ALL,
    // another ACCEPT only, another DROP only, and a disabled one nothing; ACCEPT once per new
    // connection, DROP for every dropped packet, the default drop never.
    let mut c = Case::new("firewall", "first-match rules, each action, state, default drop, and the logs they write", firewall_snapshot());
    let t_syn =
        |sport, dport| P { l4: L4::Tcp { sport, dport, syn: true, ack: false, seq: 1000 }, ..P::udp(VM2, R1_A, IP_VM2, IP_VM3, 0, 0, b"") };
    let syn = t_syn(40000, 80);
    c.input(1.0, "tap-vm2", syn.bytes()).expect(1.0, "tap-vm3", syn.routed(1, R1_B, VM3).bytes());
    fw_log(&mut c, 1.0, "allow-web", IP_VM2, IP_VM3, 40000, 80, 6, true);
    let synack =
        P { l4: L4::Tcp { sport: 80, dport: 40000, syn: true, ack: true, seq: 5000 }, ..P::udp(VM3, R1_B, IP_VM3, IP_VM2, 0, 0, b"") };
    c.input(2.0, "tap-vm3", synack.bytes()).expect(2.0, "tap-vm2", synack.routed(1, R1_A, VM2).bytes());
    let ack = P {
        l4: L4::Tcp { sport: 40000, dport: 80, syn: false, ack: true, seq: 1001 },
        ..P::udp(VM2, R1_A, IP_VM2, IP_VM3, 0, 0, b"GET /")
    };
    c.input(3.0, "tap-vm2", ack.bytes()).expect(3.0, "tap-vm3", ack.routed(1, R1_B, VM3).bytes());
    c.input(3.5, "tap-vm2", ack.bytes()).expect(3.5, "tap-vm3", ack.routed(1, R1_B, VM3).bytes());
    let telnet = t_syn(40001, 23);
    for t in [4.0, 4.5] {
        c.input(t, "tap-vm2", telnet.bytes());
        fw_log(&mut c, t, "deny-telnet", IP_VM2, IP_VM3, 40001, 23, 6, false);
    }
    let udp = P::udp(VM2, R1_A, IP_VM2, IP_VM3, 6000, 5005, b"to a rejected port");
    let unreach =
        P { l4: L4::Unreachable(DestUnreachableHeader::Port), payload: udp.quote(), ..P::udp(R1_A, VM2, IP_R1_A, IP_VM2, 0, 0, b"") }
            .originated();
    c.input(5.0, "tap-vm2", udp.bytes()).expect(5.0, "tap-vm2", unreach.bytes());
    fw_log(&mut c, 5.0, "reject-udp-range", IP_VM2, IP_VM3, 6000, 5005, 17, false);
    let smtp = t_syn(40002, 25);
    let rst = P { l4: L4::TcpRst { sport: 25, dport: 40002, seq: 0, ack: Some(1001) }, ..P::udp(R1_A, VM2, IP_VM3, IP_VM2, 0, 0, b"") }
        .originated();
    c.input(6.0, "tap-vm2", smtp.bytes()).expect(6.0, "tap-vm2", rst.bytes());
    fw_log(&mut c, 6.0, "reject-smtp", IP_VM2, IP_VM3, 40002, 25, 6, false);
    c.input(7.0, "tap-vm2", P::udp(VM2, R1_A, IP_VM2, IP_VM3, 6000, 9999, b"no rule").bytes());
    let ping = P { l4: L4::EchoRequest { id: 5, seq: 1 }, ..P::udp(VM2, R1_A, IP_VM2, IP_VM3, 0, 0, &[0x11; 16]) };
    c.input(8.0, "tap-vm2", ping.bytes()).expect(8.0, "tap-vm3", ping.routed(1, R1_B, VM3).bytes());
    fw_log(&mut c, 8.0, "allow-icmp", IP_VM2, IP_VM3, 0, 0, 1, true);
    let pong = P { l4: L4::EchoReply { id: 5, seq: 1 }, ..P::udp(VM3, R1_B, IP_VM3, IP_VM2, 0, 0, &[0x11; 16]) };
    c.input(9.0, "tap-vm3", pong.bytes()).expect(9.0, "tap-vm2", pong.routed(1, R1_A, VM2).bytes());
    c.drop("fw_denied", 2).drop("fw_rejected", 2).drop("fw_default_drop", 1);
    all.push(c);

    // Story: QoS (§8). vm1's policy marks DSCP AF41 (34), keeping ECN: TOS 0x03, 0x01, 0xb8 leave
    // as 0x8b, 0x89, 0x88, with a valid checksum. vm3's policy limits egress to 80 kbit/s with a
    // 16 kbit burst and marks DSCP 10, and its traffic leaves through default SNAT: a burst of six
    // 500-byte frames passes four; 0.1 s later (1000 bytes of tokens) two more fit, a third not;
    // the frames that pass are SNATed,
    // marked and routed. vm6 takes at most 80 kbit/s with an 8 kbit burst: of three 500-byte frames
    // sent to it at once, two arrive.
    let mut c = Case::new("qos", "DSCP marking with ECN kept; egress policing with burst, through SNAT; ingress policing", qos_snapshot());
    arp_announce(&mut c, 1.0);
    for (i, (tos, out)) in [(0x03u8, 0x8bu8), (0x01, 0x89), (0xb8, 0x88)].into_iter().enumerate() {
        let t = 2.0 + i as f64 * 0.1;
        let p = P { tos, ..P::udp(VM1, VM2, IP_VM1, IP_VM2, 7000, 7001, b"marked") };
        c.input(t, "tap-vm1", p.bytes()).expect(t, "tap-vm2", P { tos: out, ..p }.bytes());
    }
    let big = P::udp(VM3, R1_B, IP_VM3, EXT_HOST, 5000, 53, &[0x42; 458]);
    assert_eq!(big.bytes().len(), 500);
    let left = P { tos: 10 << 2, ..big.with_src(IP_GW, None).routed(2, EDGE_UP, UPSTREAM) };
    let mut bucket = Bucket::new(80_000, 16_000);
    let mut passed = 0;
    for t in [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.1, 3.1, 3.1] {
        c.input(t, "tap-vm3", big.bytes());
        if bucket.take(500, t) {
            c.expect(t, "uplink0", left.bytes());
            passed += 1;
        }
    }
    assert_eq!(passed, 6, "four of the burst and two after 0.1 s");
    c.drop("qos_policed", 3);
    let to6 = P::udp(VM2, R1_A, IP_VM2, IP_VM6, 5000, 5001, &[0x24; 458]);
    for _ in 0..3 {
        c.input(4.0, "tap-vm2", to6.bytes());
    }
    for _ in 0..2 {
        c.expect(4.0, "tap-vm6", to6.routed(1, R1_B, VM6).bytes());
    }
    c.drop("qos_policed", 1);
    all.push(c);

    // Story: malformed frames (§5.1) are dropped, each under its own counter, and nothing panics.
    let mut c = Case::new("malformed", "truncated Ethernet/IPv4/UDP, bad IHL and bad checksum are counted drops", base());
    let good = P::udp(VM1, VM2, IP_VM1, IP_VM2, 4000, 5000, b"payload").bytes();
    c.input(1.0, "tap-vm1", good[..10].to_vec());
    c.input(2.0, "tap-vm1", good[..24].to_vec());
    let mut ihl = good.clone();
    ihl[14] = 0x44;
    c.input(3.0, "tap-vm1", ihl);
    let mut csum = good.clone();
    csum[24] ^= 0x5a;
    c.input(4.0, "tap-vm1", csum);
    // IPv4 total length 24: a 4-byte UDP header, with a valid IPv4 checksum.
    let mut short = good[..14 + 24].to_vec();
    short[16..18].copy_from_slice(&24u16.to_be_bytes());
    short[24] = 0;
    short[25] = 0;
    let mut sum: u32 = short[14..34].chunks(2).map(|w| u16::from_be_bytes([w[0], w[1]]) as u32).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    short[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    c.input(5.0, "tap-vm1", short);
    c.drop("truncated_ethernet", 1).drop("truncated_ipv4", 1).drop("bad_ihl", 1).drop("bad_ipv4_checksum", 1).drop("truncated_l4", 1);
    all.push(c);

    ipv6::cases(&mut all);
    fip64::cases(&mut all);
    all
}

// ---- writing ---------------------------------------------------------------------------------

fn write_pcap(path: &Path, frames: &[(f64, Vec<u8>)]) {
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: 65535,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Little,
    };
    let f = fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut w = PcapWriter::with_header(f, header).expect("pcap header");
    for (t, data) in frames {
        let ts = Duration::from_micros((BASE_TIME + t * 1e6).round() as u64);
        w.write_packet(&PcapPacket::new(ts, data.len() as u32, data)).expect("pcap write");
    }
}

/// Every case starts on this clock (2026-01-01T00:00:00Z), in microseconds.
const BASE_TIME: f64 = 1_767_225_600_000_000.0;

fn by_iface(frames: &Frames) -> BTreeMap<&'static str, Vec<(f64, Vec<u8>)>> {
    let mut m: BTreeMap<&'static str, Vec<(f64, Vec<u8>)>> = BTreeMap::new();
    for (t, i, f) in frames {
        m.entry(i).or_default().push((*t, f.clone()));
    }
    m
}

/// Write every case under `root`; returns the case names and stories.
pub fn write_all(root: &Path) -> Vec<(String, String)> {
    let mut written = Vec::new();
    for c in cases() {
        let dir = root.join(c.name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("in")).expect("mkdir");
        fs::create_dir_all(dir.join("expected")).expect("mkdir");
        let mut snap = serde_json::to_string_pretty(&c.snapshot).expect("json");
        snap.push('\n');
        fs::write(dir.join("snapshot.json"), snap).expect("write snapshot");
        let macs: serde_json::Map<String, Value> = c.macs.iter().map(|(i, m)| (i.to_string(), json!(mac_str(*m)))).collect();
        let mut meta = json!({"story": c.story, "host": c.host, "macs": macs});
        if let Some(n) = c.fip64_pool {
            meta["fip64_pool"] = json!(n);
        }
        fs::write(dir.join("case.json"), serde_json::to_string_pretty(&meta).expect("json") + "\n").expect("write case");
        for (iface, frames) in by_iface(&c.inputs) {
            write_pcap(&dir.join("in").join(format!("{iface}.pcap")), &frames);
        }
        for (iface, frames) in by_iface(&c.expected) {
            write_pcap(&dir.join("expected").join(format!("{iface}.pcap")), &frames);
        }
        let mut drops: String = c.drops.iter().map(|(r, n)| format!("{r} {n}\n")).collect();
        if drops.is_empty() {
            drops.push_str("# no drops\n");
        }
        fs::write(dir.join("expected").join("drops.txt"), drops).expect("write drops");
        for (id, lines) in &c.logs {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            fs::write(dir.join("expected").join(format!("fw-{id}.log")), text).expect("write log");
        }
        written.push((c.name.to_string(), c.story.to_string()));
    }
    written
}
