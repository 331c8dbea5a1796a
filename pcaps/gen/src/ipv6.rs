//! The IPv6 scenarios (SPEC §10), on the base topology made dual-stack: net-a also carries
//! 2001:db8:a::/64 (r1-a ::1, vm1 ::3, vm2 ::4), and every port has its EUI-64 link-local
//! address. Frames are built with etherparse (checksums over the IPv6 pseudo-header), expected
//! ones from the spec's words, as for IPv4.

use etherparse::{IpHeaders, IpNumber, Ipv6Extensions, Ipv6Header, Ipv6RawExtHeader, PacketBuilder};

use super::*;

pub type Ip6 = [u8; 16];

/// 2001:db8:`net`::`host`.
pub fn a6(net: u16, host: u16) -> Ip6 {
    let [n0, n1] = net.to_be_bytes();
    let [h0, h1] = host.to_be_bytes();
    [0x20, 0x01, 0x0d, 0xb8, n0, n1, 0, 0, 0, 0, 0, 0, 0, 0, h0, h1]
}

/// The link-local address of a MAC (modified EUI-64, RFC 4291 appendix A).
pub fn ll(m: Mac) -> Ip6 {
    [0xfe, 0x80, 0, 0, 0, 0, 0, 0, m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]
}

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1).
pub fn solicited(a: Ip6) -> Ip6 {
    [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, a[13], a[14], a[15]]
}

/// The Ethernet MAC of an IPv6 multicast address (RFC 2464 §7).
pub fn mcast_mac(a: Ip6) -> Mac {
    [0x33, 0x33, a[12], a[13], a[14], a[15]]
}

pub const ALL_NODES: Ip6 = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const ALL_MLDV2_ROUTERS: Ip6 = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16];
pub const UNSPECIFIED: Ip6 = [0; 16];

fn ip6_str(a: Ip6) -> String {
    std::net::Ipv6Addr::from(a).to_string()
}

/// The upper layer of an IPv6 packet.
#[derive(Clone, Debug)]
pub enum L6 {
    Udp(u16, u16),
    EchoRequest {
        id: u16,
        seq: u16,
    },
    /// Any ICMPv6 message: type, code, and the second 32-bit word; the body is the payload.
    Icmp(u8, u8, [u8; 4]),
    /// A TCP segment or reset, as IPv4's [`L4::Tcp`] and [`L4::TcpRst`] describe it.
    Tcp(L4),
}

/// An Ethernet/IPv6 packet, described by its fields.
#[derive(Clone, Debug)]
pub struct P6 {
    pub smac: Mac,
    pub dmac: Mac,
    pub src: Ip6,
    pub dst: Ip6,
    pub hop_limit: u8,
    pub tclass: u8,
    /// A hop-by-hop header with the router alert option (RFC 2711), as MLD carries.
    pub router_alert: bool,
    pub l4: L6,
    pub payload: Vec<u8>,
}

impl P6 {
    pub fn udp(smac: Mac, dmac: Mac, src: Ip6, dst: Ip6, sport: u16, dport: u16, payload: &[u8]) -> P6 {
        P6 { smac, dmac, src, dst, hop_limit: 64, tclass: 0, router_alert: false, l4: L6::Udp(sport, dport), payload: payload.to_vec() }
    }

    pub fn icmp(smac: Mac, dmac: Mac, src: Ip6, dst: Ip6, l4: L6, payload: &[u8]) -> P6 {
        P6 { smac, dmac, src, dst, hop_limit: 255, tclass: 0, router_alert: false, l4, payload: payload.to_vec() }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let ip = Ipv6Header {
            traffic_class: self.tclass,
            flow_label: Default::default(),
            payload_length: 0,
            next_header: IpNumber::UDP,
            hop_limit: self.hop_limit,
            source: self.src,
            destination: self.dst,
        };
        let mut ext = Ipv6Extensions::default();
        if self.router_alert {
            ext.hop_by_hop_options = Some(Ipv6RawExtHeader::new_raw(IpNumber::IPV6_ICMP, &[5, 2, 0, 0, 1, 0]).expect("hop-by-hop"));
        }
        let b = PacketBuilder::ethernet2(self.smac, self.dmac).ip(IpHeaders::Ipv6(ip, ext));
        let mut out = Vec::new();
        match self.l4 {
            L6::Udp(s, d) => b.udp(s, d).write(&mut out, &self.payload),
            L6::EchoRequest { id, seq } => b.icmpv6_echo_request(id, seq).write(&mut out, &self.payload),
            L6::Icmp(t, c, w) => b.icmpv6_raw(t, c, w).write(&mut out, &self.payload),
            L6::Tcp(ref t) => write_tcp(b, t, &mut out, &self.payload),
        }
        .expect("build");
        out
    }
}

/// A Neighbor Solicitation for `target` (RFC 4861 §4.3): to its solicited-node address, with the
/// source link-layer option unless it is a duplicate address detection probe (source `::`).
pub fn ns(smac: Mac, src: Ip6, target: Ip6) -> P6 {
    let dst = solicited(target);
    let mut body = target.to_vec();
    if src != UNSPECIFIED {
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&smac);
    }
    P6::icmp(smac, mcast_mac(dst), src, dst, L6::Icmp(135, 0, [0; 4]), &body)
}

/// A Neighbor Advertisement for `target` with flags R (0x80), S (0x40), O (0x20) and the target
/// link-layer option (RFC 4861 §4.4).
pub fn na(smac: Mac, dmac: Mac, src: Ip6, dst: Ip6, target: Ip6, flags: u8) -> P6 {
    let mut body = target.to_vec();
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&smac);
    P6::icmp(smac, dmac, src, dst, L6::Icmp(136, 0, [flags, 0, 0, 0]), &body)
}

/// A Router Advertisement as SPEC §10.3 lists it: hop limit 64, `flags` (M 0x80, O 0x40),
/// router lifetime 1800 s, the source link-layer option, then per prefix (its /64 network, A)
/// an option with L=1, valid 86400 s and preferred 14400 s.
pub fn ra(smac: Mac, dmac: Mac, dst: Ip6, flags: u8, prefixes: &[(Ip6, bool)]) -> P6 {
    let mut body = vec![0u8; 8];
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&smac);
    for (prefix, autonomous) in prefixes {
        body.extend_from_slice(&[3, 4, 64, if *autonomous { 0xc0 } else { 0x80 }]);
        body.extend_from_slice(&86_400u32.to_be_bytes());
        body.extend_from_slice(&14_400u32.to_be_bytes());
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(prefix);
    }
    P6::icmp(smac, dmac, ll(smac), dst, L6::Icmp(134, 0, [64, flags, 0x07, 0x08]), &body)
}

/// Add subnet `id`, 2001:db8:`net`::/64 on `network` (gateway ::1, no router advertisements),
/// and give each of `hosts` — a port id and its host number — its address there.
fn add_v6_subnet(s: &mut Value, id: &str, network: &str, net: u16, hosts: &[(&str, u16)]) {
    s["subnets"].as_array_mut().expect("subnets").push(json!({
        "id": id, "network_id": network, "cidr": format!("{}/64", ip6_str(a6(net, 0))), "ip_version": 6,
        "gateway_ip": ip6_str(a6(net, 1)),
    }));
    for p in s["ports"].as_array_mut().expect("ports") {
        let Some(&(_, host)) = hosts.iter().find(|(port, _)| p["id"] == *port) else { continue };
        p["fixed_ips"].as_array_mut().expect("fixed_ips").push(json!({"subnet_id": id, "ip_address": ip6_str(a6(net, host))}));
    }
}

/// net-a dual-stack: 2001:db8:a::/64 beside 10.0.0.0/24, without router advertisements.
fn dual_stack() -> Value {
    let mut s = base();
    add_v6_subnet(&mut s, "sub-a6", "net-a", 0xa, &[("r1-a", 1), ("vm1", 3), ("vm2", 4)]);
    s
}

/// Dual-stack net-a and net-b: 2001:db8:b::/64 too (r1-b ::1, vm3 ::3, vm6 ::4).
fn dual_stack_routed() -> Value {
    let mut s = dual_stack();
    add_v6_subnet(&mut s, "sub-b6", "net-b", 0xb, &[("r1-b", 1), ("vm3", 3), ("vm6", 4)]);
    s
}

/// The same packet after one router, leaving with the given MACs.
fn routed6(p: &P6, smac: Mac, dmac: Mac) -> P6 {
    P6 { smac, dmac, hop_limit: p.hop_limit - 1, ..p.clone() }
}

/// An ICMPv6 error from `src` at `smac` about `orig`, quoting all of it (the suites' packets
/// are far below 1280 bytes).
pub(super) fn error6(smac: Mac, src: Ip6, typ: u8, code: u8, orig: &P6) -> P6 {
    let mut e = P6::icmp(smac, orig.smac, src, orig.src, L6::Icmp(typ, code, [0; 4]), &orig.bytes()[14..]);
    e.hop_limit = 64;
    e
}

/// A frame of another ethertype, padded to the Ethernet minimum.
fn raw(smac: Mac, dmac: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = [dmac, smac].concat();
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f.resize(f.len().max(60), 0);
    f
}

pub(super) fn cases(all: &mut Vec<Case>) {
    // Story: a network bridges every ethertype (§10.1): IPv6 unicast and multicast between VMs,
    // another protocol between ports without port security (vm2); a secured port (vm1) sends
    // only IPv4, ARP and IPv6; frames to the 802.1D reserved group addresses (LLDP, STP) are
    // never forwarded.
    let mut s = dual_stack();
    s["ports"][1]["port_security_enabled"] = json!(false);
    let mut c = Case::new("ipv6-bridging", "IPv6 unicast and multicast, and any ethertype without port security, are bridged", s);
    let (g1, g2) = (a6(0xa, 3), a6(0xa, 4));
    let uni = P6::udp(VM1, VM2, g1, g2, 5000, 6000, b"v6 unicast");
    c.input(1.0, "tap-vm1", uni.bytes()).expect(1.0, "tap-vm2", uni.bytes());
    let multi = P6::icmp(VM1, mcast_mac(ALL_NODES), ll(VM1), ALL_NODES, L6::EchoRequest { id: 7, seq: 1 }, b"all nodes");
    c.input(2.0, "tap-vm1", multi.bytes()).expect(2.0, "tap-vm2", multi.bytes());
    let other = raw(VM2, VM1, 0x88b5, b"local experimental ethertype");
    c.input(3.0, "tap-vm2", other.clone()).expect(3.0, "tap-vm1", other);
    c.input(4.0, "tap-vm2", raw(VM2, [0x01, 0x80, 0xc2, 0, 0, 0x0e], 0x88cc, b"lldp"));
    c.input(5.0, "tap-vm2", raw(VM2, [0x01, 0x80, 0xc2, 0, 0, 0x00], 0x0026, &[0x42, 0x42, 0x03]));
    c.input(6.0, "tap-vm1", raw(VM1, VM2, 0x88b5, b"from a secured port"));
    let unsecured = P6::udp(VM2, VM1, a6(0xa, 0x99), g1, 6000, 5000, b"vm2 has no port security");
    c.input(7.0, "tap-vm2", unsecured.bytes()).expect(7.0, "tap-vm1", unsecured.bytes());
    c.drop("reserved_group", 2).drop("ethertype_not_allowed", 1);
    all.push(c);

    // Story: IPv6 port security (§10.1) on vm1, which also has the allowed pairs 2001:db8:a::200
    // and 2001:db8:a::201 (the latter with a MAC of its own):
    // a source that is not its own is dropped — `::` included, except for duplicate address
    // detection and MLD reports; an NA for vm2's address, a router advertisement and a DHCPv6
    // server message are dropped; its link-local and its pair pass.
    let mut s = dual_stack();
    let pair_mac: Mac = [0x02, 0, 0, 0, 0x02, 0x01];
    s["ports"][0]["allowed_address_pairs"] =
        json!([{"ip_address": "2001:db8:a::200"}, {"ip_address": "2001:db8:a::201", "mac_address": mac_str(pair_mac)}]);
    let mut c = Case::new("ipv6-port-security", "vm1's spoofed IPv6 sources, NA targets, RAs and DHCPv6 replies are dropped", s);
    c.input(1.0, "tap-vm1", P6::udp(VM1, VM2, a6(0xa, 0x99), g2, 1, 2, b"spoofed").bytes());
    let dad = ns(VM1, UNSPECIFIED, g1);
    c.input(2.0, "tap-vm1", dad.bytes()).expect(2.0, "tap-vm2", dad.bytes());
    let mut mld = P6::icmp(VM1, mcast_mac(ALL_MLDV2_ROUTERS), UNSPECIFIED, ALL_MLDV2_ROUTERS, L6::Icmp(143, 0, [0, 0, 0, 1]), &{
        let mut rec = vec![4, 0, 0, 0];
        rec.extend_from_slice(&solicited(g1));
        rec
    });
    mld.hop_limit = 1;
    mld.router_alert = true;
    c.input(3.0, "tap-vm1", mld.bytes()).expect(3.0, "tap-vm2", mld.bytes());
    c.input(4.0, "tap-vm1", na(VM1, mcast_mac(ALL_NODES), g1, ALL_NODES, g2, 0x20).bytes());
    let own = na(VM1, mcast_mac(ALL_NODES), g1, ALL_NODES, g1, 0x20);
    c.input(5.0, "tap-vm1", own.bytes()).expect(5.0, "tap-vm2", own.bytes());
    let from_vm = P6::icmp(VM1, mcast_mac(ALL_NODES), ll(VM1), ALL_NODES, L6::Icmp(134, 0, [64, 0, 0x07, 0x08]), &[0; 8]);
    c.input(6.0, "tap-vm1", from_vm.bytes());
    c.input(7.0, "tap-vm1", P6::udp(VM1, VM2, ll(VM1), ll(VM2), 547, 546, b"dhcpv6 reply").bytes());
    let local = P6::udp(VM1, VM2, ll(VM1), ll(VM2), 4000, 4001, b"link-local");
    c.input(8.0, "tap-vm1", local.bytes()).expect(8.0, "tap-vm2", local.bytes());
    let pair = P6::udp(VM1, VM2, a6(0xa, 0x200), g2, 4000, 4001, b"allowed pair");
    c.input(9.0, "tap-vm1", pair.bytes()).expect(9.0, "tap-vm2", pair.bytes());
    let own_mac = P6::udp(pair_mac, VM2, a6(0xa, 0x201), g2, 4000, 4001, b"a pair with its own MAC");
    c.input(9.5, "tap-vm1", own_mac.bytes()).expect(9.5, "tap-vm2", own_mac.bytes());
    c.input(10.0, "tap-vm1", P6::udp(VM1, VM2, ll(UPSTREAM), g2, 1, 2, b"another MAC's link-local").bytes());
    c.input(11.0, "tap-vm1", P6::icmp(VM1, VM2, UNSPECIFIED, g2, L6::EchoRequest { id: 1, seq: 1 }, b"from ::").bytes());
    c.drop("spoofed_ip", 3).drop("spoofed_na_target", 1).drop("router_advert_from_vm", 1).drop("dhcpv6_server_from_vm", 1);
    all.push(c);

    // Story: ND suppression (§10.1) and the router's own addresses (§10.2): vm1's multicast NS
    // for vm2's global and link-local addresses are answered on vm1's port (S=1, O=1), a DAD
    // probe for vm2's address is answered to all nodes (S=0) and one for vm1's own address is
    // flooded, as are an NS for an unknown address and a unicast NS; the router answers NS for
    // its addresses (R=1) and echo requests to them.
    let mut c = Case::new(
        "ipv6-nd",
        "NS for known addresses are answered, the router answers NS and echo, DAD for one's own address floods",
        dual_stack(),
    );
    let r1 = a6(0xa, 1);
    let sol = |t: Ip6| ns(VM1, g1, t);
    c.input(1.0, "tap-vm1", sol(g2).bytes()).expect(1.0, "tap-vm1", na(VM2, VM1, g2, g1, g2, 0x60).bytes());
    c.input(2.0, "tap-vm1", ns(VM1, ll(VM1), ll(VM2)).bytes()).expect(
        2.0,
        "tap-vm1",
        na(VM2, VM1, ll(VM2), ll(VM1), ll(VM2), 0x60).bytes(),
    );
    c.input(3.0, "tap-vm1", ns(VM1, UNSPECIFIED, g2).bytes());
    c.expect(3.0, "tap-vm1", na(VM2, mcast_mac(ALL_NODES), g2, ALL_NODES, g2, 0x20).bytes());
    let own = ns(VM1, UNSPECIFIED, g1);
    c.input(4.0, "tap-vm1", own.bytes()).expect(4.0, "tap-vm2", own.bytes());
    let unknown = sol(a6(0xa, 0x77));
    c.input(5.0, "tap-vm1", unknown.bytes()).expect(5.0, "tap-vm2", unknown.bytes());
    let mut unicast = sol(g2);
    (unicast.dmac, unicast.dst) = (VM2, g2);
    c.input(6.0, "tap-vm1", unicast.bytes()).expect(6.0, "tap-vm2", unicast.bytes());
    c.input(7.0, "tap-vm1", sol(r1).bytes()).expect(7.0, "tap-vm1", na(R1_A, VM1, r1, g1, r1, 0xe0).bytes());
    c.input(8.0, "tap-vm1", ns(VM1, ll(VM1), ll(R1_A)).bytes());
    c.expect(8.0, "tap-vm1", na(R1_A, VM1, ll(R1_A), ll(VM1), ll(R1_A), 0xe0).bytes());
    for (t, to, from) in [(9.0, r1, g1), (10.0, ll(R1_A), ll(VM1))] {
        let mut ping = P6::icmp(VM1, R1_A, from, to, L6::EchoRequest { id: 9, seq: t as u16 }, b"ping the router");
        ping.hop_limit = 64;
        let mut pong = P6::icmp(R1_A, VM1, to, from, L6::Icmp(129, 0, [0, 9, 0, t as u8]), b"ping the router");
        pong.hop_limit = 64;
        c.input(t, "tap-vm1", ping.bytes()).expect(t, "tap-vm1", pong.bytes());
    }
    all.push(c);

    // Story: IPv6 routing (§10.2) across net-a and net-b, untranslated, hop limit − 1; hop limit
    // 1 gets time exceeded and an address with no route gets unreachable, from r1-a's global
    // address; a neighbour the snapshot does not know (vm6's allowed pair ::77) is asked by NS,
    // and its NA releases the waiting packet; one that never answers is asked three times, a
    // second apart, and its packets are then dropped.
    let mut s = dual_stack_routed();
    s["ports"][3]["allowed_address_pairs"] = json!([{"ip_address": "2001:db8:b::77"}]);
    let mut c = Case::new("ipv6-routing", "IPv6 routed between subnets, hop limit, ICMPv6 errors, next hops resolved by NS", s);
    let (g3, rb, p77, p78) = (a6(0xb, 3), a6(0xb, 1), a6(0xb, 0x77), a6(0xb, 0x78));
    let there = P6::udp(VM1, R1_A, g1, g3, 4000, 5000, b"v6 across the router");
    let back = P6::udp(VM3, R1_B, g3, g1, 5000, 4000, b"and back");
    c.input(1.0, "tap-vm1", there.bytes()).expect(1.0, "tap-vm3", routed6(&there, R1_B, VM3).bytes());
    c.input(2.0, "tap-vm3", back.bytes()).expect(2.0, "tap-vm1", routed6(&back, R1_A, VM1).bytes());
    let mut last_hop = there.clone();
    last_hop.hop_limit = 1;
    c.input(3.0, "tap-vm1", last_hop.bytes()).expect(3.0, "tap-vm1", error6(R1_A, a6(0xa, 1), 3, 0, &last_hop).bytes());
    let nowhere = P6::udp(VM1, R1_A, g1, a6(0x99, 1), 4000, 5000, b"no route");
    c.input(4.0, "tap-vm1", nowhere.bytes()).expect(4.0, "tap-vm1", error6(R1_A, a6(0xa, 1), 1, 0, &nowhere).bytes());
    let to77 = P6::udp(VM1, R1_A, g1, p77, 4000, 5000, b"to a pair");
    let ask77 = ns(R1_B, rb, p77);
    c.input(5.0, "tap-vm1", to77.bytes()).expect(5.0, "tap-vm3", ask77.bytes()).expect(5.0, "tap-vm6", ask77.bytes());
    c.input(5.5, "tap-vm6", na(VM6, R1_B, p77, rb, p77, 0x60).bytes()).expect(5.5, "tap-vm6", routed6(&to77, R1_B, VM6).bytes());
    c.input(6.0, "tap-vm1", to77.bytes()).expect(6.0, "tap-vm6", routed6(&to77, R1_B, VM6).bytes());
    let ask78 = ns(R1_B, rb, p78);
    for t in [10.0, 11.0, 12.0] {
        let lost = P6::udp(VM1, R1_A, g1, p78, 4000, t as u16, b"lost");
        c.input(t, "tap-vm1", lost.bytes()).expect(t, "tap-vm3", ask78.bytes()).expect(t, "tap-vm6", ask78.bytes());
    }
    c.input(13.0, "tap-vm1", there.bytes()).expect(13.0, "tap-vm3", routed6(&there, R1_B, VM3).bytes());
    c.drop("ttl_exceeded", 1).drop("no_route", 1).drop("arp_unresolved", 3);
    all.push(c);

    // Story: IPv6 flows (§10.2, §9): a routed UDP flow, a bridged one and routed echo requests
    // are simulated once each and then taken from the cache, with the same bytes.
    let mut c =
        Case::new("ipv6-flows", "routed and bridged IPv6 flows, and echo, are cached after their first packet", dual_stack_routed());
    let routed = P6::udp(VM1, R1_A, g1, g3, 4000, 5000, b"routed");
    let bridged = P6::udp(VM1, VM2, g1, g2, 4000, 5000, b"bridged");
    let mut echo = P6::icmp(VM3, R1_B, g3, g1, L6::EchoRequest { id: 3, seq: 1 }, b"echo");
    echo.hop_limit = 64;
    for t in [1.0, 2.0, 3.0] {
        c.input(t, "tap-vm1", routed.bytes()).expect(t, "tap-vm3", routed6(&routed, R1_B, VM3).bytes());
    }
    for t in [4.0, 5.0] {
        c.input(t, "tap-vm1", bridged.bytes()).expect(t, "tap-vm2", bridged.bytes());
        c.input(t + 0.5, "tap-vm3", echo.bytes()).expect(t + 0.5, "tap-vm1", routed6(&echo, R1_A, VM1).bytes());
    }
    all.push(c);

    // Story: QoS for IPv6 (§10.2): vm1's DSCP marking rewrites the DSCP bits of the traffic
    // class of the IPv6 it sends, keeping ECN; the flow label and everything else stay. vm2
    // takes at most 80 kbit/s with an 8 kbit burst: IPv6 frames are policed like any other, so
    // of three 500-byte frames sent to it at once, two arrive.
    let mut s = dual_stack();
    s["qos_policies"] = json!([
        {"id": "mark", "rules": [{"type": "dscp_marking", "dscp_mark": 26}]},
        {"id": "vm2-in", "rules": [{"type": "bandwidth_limit", "max_kbps": 80, "max_burst_kbps": 8, "direction": "ingress"}]},
    ]);
    s["ports"][0]["qos_policy_id"] = json!("mark");
    s["ports"][1]["qos_policy_id"] = json!("vm2-in");
    let mut c = Case::new("ipv6-dscp", "vm1's IPv6 leaves with DSCP 26 in its traffic class, ECN kept; IPv6 to vm2 is policed", s);
    let mut sent = P6::udp(VM1, VM2, g1, g2, 4000, 5000, b"marked");
    sent.tclass = 0x01;
    let mut marked = sent.clone();
    marked.tclass = (26 << 2) | 0x01;
    c.input(1.0, "tap-vm1", sent.bytes()).expect(1.0, "tap-vm2", marked.bytes());
    // 2.0 s later the 8 kbit bucket is full again (the first frame took far less than 2 s of it).
    let big = P6::udp(VM1, VM2, g1, g2, 4000, 5001, &[0x24; 438]);
    assert_eq!(big.bytes().len(), 500);
    let mut bucket = Bucket::new(80_000, 8_000);
    bucket.take(marked.bytes().len(), 1.0);
    for _ in 0..3 {
        c.input(3.0, "tap-vm1", big.bytes());
        if bucket.take(500, 3.0) {
            c.expect(3.0, "tap-vm2", P6 { tclass: 26 << 2, ..big.clone() }.bytes());
        }
    }
    c.drop("qos_policed", 1);
    all.push(c);

    // Story: router advertisements (§10.3): r1-a advertises net-a's 2001:db8:a::/64 (slaac)
    // and 2001:db8:aa::/64 (dhcpv6-stateful, so M=1 and A=0 for it). The first input brings the
    // unsolicited RAs to every local port of net-a; vm1's RS is answered with a unicast RA (and
    // flooded like any multicast); 100 s after the first, the next input brings them again.
    let mut s = dual_stack();
    s["subnets"][5]["ipv6_ra_mode"] = json!("slaac");
    s["subnets"][5]["ipv6_address_mode"] = json!("slaac");
    s["subnets"].as_array_mut().expect("subnets").push(json!({
        "id": "sub-aa6", "network_id": "net-a", "cidr": "2001:db8:aa::/64", "ip_version": 6, "ipv6_ra_mode": "dhcpv6-stateful",
    }));
    s["ports"][5]["fixed_ips"].as_array_mut().expect("fixed_ips").push(json!({"subnet_id": "sub-aa6", "ip_address": "2001:db8:aa::1"}));
    let mut c = Case::new("ipv6-ra", "RAs at start and every 100 s to local ports, and in answer to an RS", s);
    let prefixes = [(a6(0xa, 0), true), (a6(0xaa, 0), false)];
    let every = ra(R1_A, mcast_mac(ALL_NODES), ALL_NODES, 0x80, &prefixes);
    let all_routers: Ip6 = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let mut rs = P6::icmp(
        VM1,
        mcast_mac(all_routers),
        ll(VM1),
        all_routers,
        L6::Icmp(133, 0, [0; 4]),
        &[1, 1, VM1[0], VM1[1], VM1[2], VM1[3], VM1[4], VM1[5]],
    );
    rs.hop_limit = 255;
    c.input(1.0, "tap-vm1", rs.bytes()).expect(1.0, "tap-vm1", every.bytes()).expect(1.0, "tap-vm2", every.bytes());
    c.expect(1.0, "tap-vm2", rs.bytes()).expect(1.0, "tap-vm1", ra(R1_A, VM1, ll(VM1), 0x80, &prefixes).bytes());
    let later = P6::udp(VM1, VM2, g1, g2, 4000, 5000, b"between the adverts");
    c.input(50.0, "tap-vm1", later.bytes()).expect(50.0, "tap-vm2", later.bytes());
    c.input(101.0, "tap-vm1", later.bytes()).expect(101.0, "tap-vm1", every.bytes()).expect(101.0, "tap-vm2", every.bytes());
    c.expect(101.0, "tap-vm2", later.bytes());
    all.push(c);

    // Story: IPv6 crosses VXLAN like any frame (§7, §10.1): vm1 → vm4 on host-b is encapsulated
    // with net-a's VNI once host-b's tunnel IP answers ARP; host-b's IPv6 is decapsulated to
    // vm1; an all-nodes multicast floods to vm2 and through the tunnel.
    let mut s = dual_stack();
    s["ports"].as_array_mut().expect("ports").push(json!({
        "id": "vm4", "network_id": "net-a", "mac_address": mac_str(VM4),
        "fixed_ips": [{"ip_address": ip_str(IP_VM4)}, {"ip_address": ip6_str(a6(0xa, 5))}],
        "device_owner": "compute:nova", "binding:host_id": "host-b", "binding:profile": {"if_name": "tap-vm4"},
    }));
    let mut c = Case::new("ipv6-over-vxlan", "IPv6 to and from a VM on host-b, and IPv6 multicast, cross the tunnel", s);
    c.macs = vec![("ul0", UL_A)];
    let to4 = P6::udp(VM1, VM4, g1, a6(0xa, 5), 4000, 5000, b"v6 to host-b");
    let from4 = P6::udp(VM4, VM1, a6(0xa, 5), g1, 5000, 4000, b"v6 from host-b");
    c.input(1.0, "tap-vm1", to4.bytes()).expect(1.0, "ul0", arp_request(UL_A, TUN_A, TUN_B));
    c.input(1.5, "ul0", arp_reply(UL_B, TUN_B, UL_A, TUN_A)).expect(1.5, "ul0", vxlan(UL_A, UL_B, TUN_A, TUN_B, 100, 0x08, &to4.bytes()));
    c.input(2.0, "ul0", vxlan(UL_B, UL_A, TUN_B, TUN_A, 100, 0x08, &from4.bytes())).expect(2.0, "tap-vm1", from4.bytes());
    c.input(3.0, "tap-vm1", multi.bytes()).expect(3.0, "tap-vm2", multi.bytes());
    c.expect(3.0, "ul0", vxlan(UL_A, UL_B, TUN_A, TUN_B, 100, 0x08, &multi.bytes()));
    all.push(c);

    // Story: the firewall for IPv6 (§10.2). r1's policy starts with an IPv4 allow-everything
    // rule, which IPv6 never matches; then IPv6 rules (`ip_version` 6): web to net-b allowed and
    // tracked (the answer, the next segment, and an ICMPv6 error quoting it pass by state),
    // telnet denied, a UDP range rejected with ICMPv6 port unreachable, SMTP rejected with a TCP
    // RST over IPv6, ICMPv6 to net-b allowed; a datagram no IPv6 rule matches takes the default
    // drop. IPv4 still passes by its own rule. Each decision logs with RFC 5952 addresses and
    // protocol 58 for ICMPv6.
    let mut s = dual_stack_routed();
    let fw = firewall_snapshot();
    for k in ["firewalls", "logging_resources"] {
        s[k] = fw[k].clone();
    }
    s["firewall_rules"] = json!([
        {"id": "allow-all-v4", "action": "allow", "tenant_id": "t1"},
        {"id": "allow-web6", "ip_version": 6, "protocol": "tcp", "destination_ip_address": "2001:db8:b::/64", "destination_port": "80", "action": "allow"},
        {"id": "deny-telnet6", "ip_version": 6, "protocol": "tcp", "destination_port": "23", "action": "deny"},
        {"id": "reject-udp6", "ip_version": 6, "protocol": "udp", "source_ip_address": "2001:db8:a::/64", "destination_port": "5000:5010", "action": "reject"},
        {"id": "reject-smtp6", "ip_version": 6, "protocol": "tcp", "destination_port": "25", "action": "reject"},
        {"id": "allow-icmp6", "ip_version": 6, "protocol": "icmp", "destination_ip_address": "2001:db8:b::/64", "action": "allow"},
    ]);
    s["firewall_policies"] = json!([{"id": "pol1", "firewall_rules": ["allow-all-v4", "allow-web6", "deny-telnet6", "reject-udp6", "reject-smtp6", "allow-icmp6"]}]);
    let mut c = Case::new("ipv6-firewall", "IPv6 rules allow, track, deny and reject (RST, ICMPv6), apart from IPv4's, and log", s);
    let tcp6 = |src: Ip6, dst: Ip6, smac: Mac, dmac: Mac, t: L4, payload: &[u8]| P6 {
        l4: L6::Tcp(t),
        hop_limit: 64,
        ..P6::udp(smac, dmac, src, dst, 0, 0, payload)
    };
    let syn = |sport, dport| tcp6(g1, g3, VM1, R1_A, L4::Tcp { sport, dport, syn: true, ack: false, seq: 1000 }, b"");
    let web = syn(40000, 80);
    c.input(1.0, "tap-vm1", web.bytes()).expect(1.0, "tap-vm3", routed6(&web, R1_B, VM3).bytes());
    fw_log(&mut c, 1.0, "allow-web6", g1, g3, 40000, 80, 6, true);
    let synack = tcp6(g3, g1, VM3, R1_B, L4::Tcp { sport: 80, dport: 40000, syn: true, ack: true, seq: 5000 }, b"");
    c.input(2.0, "tap-vm3", synack.bytes()).expect(2.0, "tap-vm1", routed6(&synack, R1_A, VM1).bytes());
    let get = tcp6(g1, g3, VM1, R1_A, L4::Tcp { sport: 40000, dport: 80, syn: false, ack: true, seq: 1001 }, b"GET /");
    c.input(3.0, "tap-vm1", get.bytes()).expect(3.0, "tap-vm3", routed6(&get, R1_B, VM3).bytes());
    let mut too_big = P6::icmp(VM3, R1_B, g3, g1, L6::Icmp(2, 0, 1280u32.to_be_bytes()), &routed6(&get, R1_B, VM3).bytes()[14..]);
    too_big.hop_limit = 64;
    c.input(3.5, "tap-vm3", too_big.bytes()).expect(3.5, "tap-vm1", routed6(&too_big, R1_A, VM1).bytes());
    let telnet = syn(40001, 23);
    for t in [4.0, 4.5] {
        c.input(t, "tap-vm1", telnet.bytes());
        fw_log(&mut c, t, "deny-telnet6", g1, g3, 40001, 23, 6, false);
    }
    let udp = P6::udp(VM1, R1_A, g1, g3, 6000, 5005, b"to a rejected port");
    c.input(5.0, "tap-vm1", udp.bytes()).expect(5.0, "tap-vm1", error6(R1_A, a6(0xa, 1), 1, 4, &udp).bytes());
    fw_log(&mut c, 5.0, "reject-udp6", g1, g3, 6000, 5005, 17, false);
    let smtp = syn(40002, 25);
    let rst = tcp6(g3, g1, R1_A, VM1, L4::TcpRst { sport: 25, dport: 40002, seq: 0, ack: Some(1001) }, b"");
    c.input(6.0, "tap-vm1", smtp.bytes()).expect(6.0, "tap-vm1", rst.bytes());
    fw_log(&mut c, 6.0, "reject-smtp6", g1, g3, 40002, 25, 6, false);
    c.input(7.0, "tap-vm1", P6::udp(VM1, R1_A, g1, g3, 6000, 9999, b"no IPv6 rule").bytes());
    let mut ping = P6::icmp(VM1, R1_A, g1, g3, L6::EchoRequest { id: 7, seq: 1 }, &[0x11; 16]);
    ping.hop_limit = 64;
    c.input(8.0, "tap-vm1", ping.bytes()).expect(8.0, "tap-vm3", routed6(&ping, R1_B, VM3).bytes());
    fw_log(&mut c, 8.0, "allow-icmp6", g1, g3, 0, 0, 58, true);
    let mut pong = P6::icmp(VM3, R1_B, g3, g1, L6::Icmp(129, 0, [0, 7, 0, 1]), &[0x11; 16]);
    pong.hop_limit = 64;
    c.input(9.0, "tap-vm3", pong.bytes()).expect(9.0, "tap-vm1", routed6(&pong, R1_A, VM1).bytes());
    // vm2 has no floating IP, so its IPv4 crosses r1 untranslated.
    let v4 = P::udp(VM2, R1_A, IP_VM2, IP_VM3, 7000, 7001, b"IPv4 by its own rule");
    c.input(10.0, "tap-vm2", v4.bytes()).expect(10.0, "tap-vm3", v4.routed(1, R1_B, VM3).bytes());
    fw_log(&mut c, 10.0, "allow-all-v4", IP_VM2, IP_VM3, 7000, 7001, 17, true);
    c.drop("fw_denied", 2).drop("fw_rejected", 2).drop("fw_default_drop", 1);
    all.push(c);
}
