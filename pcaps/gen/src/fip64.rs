//! The fip64 scenarios (SPEC §11), on a topology of their own: router r6 with net-b behind it
//! (vm3 10.1.0.3, vm6 10.1.0.4) and its gateway port r6-gw on ext6, bound to uplink0, with
//! 198.51.100.2 and 2001:db8:e::2, and default SNAT on (which traffic to and from the NAT64
//! pool never takes). vm3 has fip64 2001:db8:e::100, vm6 2001:db8:e::106. IPv6
//! clients are on-link on ext6 behind uplink0. Expected frames are built from RFC 7915's rules
//! with etherparse (every checksum computed in full), and the pool address a client gets from
//! the hash SPEC §11 and `datapath/src/ct/bindings.rs` document — never from edgepath's output.

use super::ipv6::{a6, error6, ns, Ip6, L6, P6};
use super::*;

const GW6: Mac = [0xfa, 0x16, 0x3e, 0xcc, 0, 2];
const RB6: Mac = [0xfa, 0x16, 0x3e, 0xcc, 0, 1];
const C1: Mac = [0x02, 0xc1, 0, 0, 0, 1];
const C2: Mac = [0x02, 0xc2, 0, 0, 0, 2];
const C3: Mac = [0x02, 0xc3, 0, 0, 0, 3];

fn fip_vm3() -> Ip6 {
    a6(0xe, 0x100)
}

fn fip_vm6() -> Ip6 {
    a6(0xe, 0x106)
}

/// The client's pool address: FNV-1a (32-bit) of its 16 bytes modulo the pool size, from
/// 100.64.0.1; the next ones upward when taken (`taken`).
fn pool(client: Ip6, size: u32, taken: &[Ip]) -> Ip {
    let mut h: u32 = 0x811c_9dc5;
    for b in client {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    let mut off = h % size;
    loop {
        let a = (u32::from_be_bytes([100, 64, 0, 0]) + 1 + off).to_be_bytes();
        if !taken.contains(&a) {
            return a;
        }
        off = (off + 1) % size;
    }
}

fn topology() -> Value {
    let mut gw = port("r6-gw", "ext6", GW6, [198, 51, 100, 2], "network:router_gateway", "r6", Some("uplink0"));
    gw["fixed_ips"].as_array_mut().expect("fixed_ips").push(json!({"ip_address": "2001:db8:e::2"}));
    json!({
        "version": 1,
        "hosts": [{"id": "host-a", "tunnel_ip": ip_str(TUN_A), "underlay_interface": "ul0"}],
        "networks": [
            {"id": "net-b", "provider:segmentation_id": 200},
            {"id": "ext6", "router:external": true, "provider:network_type": "local"},
        ],
        "subnets": [
            {"id": "sub-b", "network_id": "net-b", "cidr": "10.1.0.0/24", "gateway_ip": "10.1.0.1"},
            {"id": "sub-e4", "network_id": "ext6", "cidr": "198.51.100.0/24", "gateway_ip": "198.51.100.1"},
            {"id": "sub-e6", "network_id": "ext6", "cidr": "2001:db8:e::/64", "ip_version": 6, "gateway_ip": "2001:db8:e::1"},
        ],
        "ports": [
            vm("vm3", "net-b", VM3, IP_VM3, "tap-vm3"),
            vm("vm6", "net-b", VM6, IP_VM6, "tap-vm6"),
            port("r6-b", "net-b", RB6, [10, 1, 0, 1], "network:router_interface", "r6", None),
            gw,
        ],
        "routers": [{"id": "r6", "external_gateway_info": {"network_id": "ext6", "enable_snat": true}}],
        "floatingips": [
            {"id": "fip64-vm3", "floating_ip_address": "2001:db8:e::100", "floating_network_id": "ext6",
             "port_id": "vm3", "fixed_ip_address": ip_str(IP_VM3), "router_id": "r6"},
            {"id": "fip64-vm6", "floating_ip_address": "2001:db8:e::106", "floating_network_id": "ext6",
             "port_id": "vm6", "router_id": "r6"},
        ],
    })
}

/// The IPv4 packet RFC 7915 §5.1 makes of `p`, from `src` to `dst`, after one router toward
/// `vm` (TTL = hop limit − 1, TOS = traffic class, DF, identification 0).
fn to_v4(p: &P6, src: Ip, dst: Ip, vm: Mac) -> P {
    let l4 = match &p.l4 {
        L6::Udp(s, d) => L4::Udp(*s, *d),
        L6::EchoRequest { id, seq } => L4::EchoRequest { id: *id, seq: *seq },
        L6::Icmp(129, 0, w) => L4::EchoReply { id: u16::from_be_bytes([w[0], w[1]]), seq: u16::from_be_bytes([w[2], w[3]]) },
        L6::Tcp(t) => t.clone(),
        other => panic!("{other:?} is not translated as a query"),
    };
    P { smac: RB6, dmac: vm, src, dst, ttl: p.hop_limit - 1, df: true, tos: p.tclass, l4, payload: p.payload.clone() }
}

/// The IPv6 packet RFC 7915 §4.1 makes of `p`, after one router toward `client` at `mac`.
fn to_v6(p: &P, src: Ip6, dst: Ip6, mac: Mac) -> P6 {
    let l4 = match &p.l4 {
        L4::Udp(s, d) => L6::Udp(*s, *d),
        L4::EchoReply { id, seq } => {
            let ([a, b], [c, d]) = (id.to_be_bytes(), seq.to_be_bytes());
            L6::Icmp(129, 0, [a, b, c, d])
        }
        L4::EchoRequest { id, seq } => L6::EchoRequest { id: *id, seq: *seq },
        t @ (L4::Tcp { .. } | L4::TcpRst { .. }) => L6::Tcp(t.clone()),
        other => panic!("{other:?} is not translated as a query"),
    };
    P6 { smac: GW6, dmac: mac, src, dst, hop_limit: p.ttl - 1, tclass: p.tos, router_alert: false, l4, payload: p.payload.clone() }
}

/// A Neighbor Advertisement from the gateway port for `target` to a soliciting client.
fn na_from_gw(client: Ip6, mac: Mac, target: Ip6) -> P6 {
    super::ipv6::na(GW6, mac, target, client, target, 0xe0)
}

/// A client that asks for the fip64 by NS first (so the router knows its MAC), at `t`.
fn hello(c: &mut Case, t: f64, client: Ip6, mac: Mac, target: Ip6) {
    c.input(t, "uplink0", ns(mac, client, target).bytes()).expect(t, "uplink0", na_from_gw(client, mac, target).bytes());
}

fn udp6(mac: Mac, src: Ip6, dst: Ip6, sport: u16, dport: u16, payload: &[u8]) -> P6 {
    P6::udp(mac, GW6, src, dst, sport, dport, payload)
}

pub(super) fn cases(all: &mut Vec<Case>) {
    let size = 4_194_302;
    let (c1, c2) = (a6(0xe, 0x99), a6(0xe, 0x98));
    let p1 = pool(c1, size, &[]);
    let p2 = pool(c2, size, &[p1]);

    // Story: IPv6 clients reach IPv4-only vm3 through its fip64 (§11). Each client asks for
    // the fip64 by NS and the gateway port answers. c1's echo, UDP and TCP reach vm3 from c1's
    // pool address, every field as RFC 7915 maps it (traffic class → TOS, hop limit → TTL, DF,
    // ports and identifier kept, checksums over the new pseudo-header); vm3's answers go back
    // as IPv6 from the fip64. c2 gets an address of its own, c1 keeps its own, and vm6's fip64
    // takes c1 on the same binding.
    let mut c = Case::new("fip64", "IPv6 clients reach an IPv4 VM through its fip64: echo, UDP, TCP both ways", topology());
    hello(&mut c, 1.0, c1, C1, fip_vm3());
    let mut echo = P6::icmp(C1, GW6, c1, fip_vm3(), L6::EchoRequest { id: 9, seq: 1 }, b"ping through fip64");
    echo.hop_limit = 64;
    echo.tclass = 0x28;
    let echo4 = to_v4(&echo, p1, IP_VM3, VM3);
    c.input(2.0, "uplink0", echo.bytes()).expect(2.0, "tap-vm3", echo4.bytes());
    let reply4 = P { l4: L4::EchoReply { id: 9, seq: 1 }, ..P::udp(VM3, RB6, IP_VM3, p1, 0, 0, b"ping through fip64") };
    c.input(3.0, "tap-vm3", reply4.bytes()).expect(3.0, "uplink0", to_v6(&reply4, fip_vm3(), c1, C1).bytes());
    let u = udp6(C1, c1, fip_vm3(), 40000, 53, b"a question over UDP");
    c.input(4.0, "uplink0", u.bytes()).expect(4.0, "tap-vm3", to_v4(&u, p1, IP_VM3, VM3).bytes());
    let back = P::udp(VM3, RB6, IP_VM3, p1, 53, 40000, b"and its answer");
    c.input(5.0, "tap-vm3", back.bytes()).expect(5.0, "uplink0", to_v6(&back, fip_vm3(), c1, C1).bytes());
    let syn = P6 { l4: L6::Tcp(L4::Tcp { sport: 41000, dport: 22, syn: true, ack: false, seq: 7 }), ..udp6(C1, c1, fip_vm3(), 0, 0, b"") };
    c.input(6.0, "uplink0", syn.bytes()).expect(6.0, "tap-vm3", to_v4(&syn, p1, IP_VM3, VM3).bytes());
    let synack = P { l4: L4::Tcp { sport: 22, dport: 41000, syn: true, ack: true, seq: 99 }, ..P::udp(VM3, RB6, IP_VM3, p1, 0, 0, b"") };
    c.input(7.0, "tap-vm3", synack.bytes()).expect(7.0, "uplink0", to_v6(&synack, fip_vm3(), c1, C1).bytes());
    hello(&mut c, 8.0, c2, C2, fip_vm3());
    let u2 = udp6(C2, c2, fip_vm3(), 40001, 53, b"another client");
    c.input(9.0, "uplink0", u2.bytes()).expect(9.0, "tap-vm3", to_v4(&u2, p2, IP_VM3, VM3).bytes());
    c.input(10.0, "uplink0", u.bytes()).expect(10.0, "tap-vm3", to_v4(&u, p1, IP_VM3, VM3).bytes());
    let to6 = udp6(C1, c1, fip_vm6(), 40002, 123, b"to the other fip64");
    c.input(11.0, "uplink0", to6.bytes()).expect(11.0, "tap-vm6", to_v4(&to6, p1, IP_VM6, VM6).bytes());
    let from6 = P::udp(VM6, RB6, IP_VM6, p1, 123, 40002, b"from the other fip64");
    c.input(12.0, "tap-vm6", from6.bytes()).expect(12.0, "uplink0", to_v6(&from6, fip_vm6(), c1, C1).bytes());
    all.push(c);

    // Story: ICMP errors cross fip64 with the packet they quote translated too (RFC 7915
    // §4.2, §5.2). vm3 answers c1's UDP to a closed port with port unreachable: c1 gets ICMPv6
    // port unreachable from the fip64, quoting its own datagram (as it left c1, less one hop).
    // c1 answers a 1428-byte datagram from vm3 with packet too big, MTU 1400: vm3 gets
    // fragmentation needed, MTU 1380, quoting its datagram. An error about a client with no
    // binding, and an ICMP message RFC 7915 does not translate, are dropped.
    let mut c = Case::new("fip64-icmp-errors", "ICMP errors translated both ways with their quoted headers", topology());
    hello(&mut c, 1.0, c1, C1, fip_vm3());
    let u = udp6(C1, c1, fip_vm3(), 40000, 9, b"to a closed port");
    let u4 = to_v4(&u, p1, IP_VM3, VM3);
    c.input(2.0, "uplink0", u.bytes()).expect(2.0, "tap-vm3", u4.bytes());
    let unreach =
        P { l4: L4::Unreachable(DestUnreachableHeader::Port), payload: u4.quote(), ..P::udp(VM3, RB6, IP_VM3, p1, 0, 0, b"") }.originated();
    let quote6 = P6 { hop_limit: u.hop_limit - 1, ..u.clone() }.bytes()[14..14 + 48].to_vec();
    let mut unreach6 = P6::icmp(GW6, C1, fip_vm3(), c1, L6::Icmp(1, 4, [0; 4]), &quote6);
    unreach6.hop_limit = 63;
    c.input(3.0, "tap-vm3", unreach.bytes()).expect(3.0, "uplink0", unreach6.bytes());
    let big = P::udp(VM3, RB6, IP_VM3, p1, 9000, 40000, &[0x5a; 1400]);
    assert_eq!(big.bytes().len(), 1442);
    let big6 = to_v6(&big, fip_vm3(), c1, C1);
    c.input(4.0, "tap-vm3", big.bytes()).expect(4.0, "uplink0", big6.bytes());
    let mut ptb = P6::icmp(C1, GW6, c1, fip_vm3(), L6::Icmp(2, 0, 1400u32.to_be_bytes()), &big6.bytes()[14..14 + 1232]);
    ptb.hop_limit = 64;
    let quote4 = P { ttl: big.ttl - 1, ..big.clone() }.bytes()[14..14 + 1232 - 20].to_vec();
    let frag_needed = P {
        l4: L4::Unreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1380 }),
        payload: quote4,
        ..P::udp(RB6, VM3, p1, IP_VM3, 0, 0, b"")
    }
    .routed(1, RB6, VM3);
    c.input(5.0, "uplink0", ptb.bytes()).expect(5.0, "tap-vm3", frag_needed.bytes());
    let stranger = a6(0xe, 0x55);
    let mut lost = P6::icmp(C1, GW6, c1, fip_vm3(), L6::Icmp(1, 0, [0; 4]), &udp6(GW6, fip_vm3(), stranger, 1, 2, b"?").bytes()[14..]);
    lost.hop_limit = 64;
    c.input(6.0, "uplink0", lost.bytes());
    let precedence = P {
        l4: L4::Unreachable(DestUnreachableHeader::HostPrecedenceViolation),
        payload: u4.quote(),
        ..P::udp(VM3, RB6, IP_VM3, p1, 0, 0, b"")
    };
    c.input(7.0, "tap-vm3", precedence.originated().bytes());
    c.drop("fip64_unbound", 1).drop("fip64_icmp_untranslatable", 1);
    all.push(c);

    // Story: IPv6 fragments to a fip64 become IPv4 fragments (RFC 7915 §5.1.1): identification
    // from the fragment header's low 16 bits, offset and MF kept, DF clear; the first carries
    // the UDP header with its checksum over the IPv4 pseudo-header. A hop-by-hop header, and
    // an upper layer other than TCP, UDP and ICMPv6, are counted drops; so is IPv4 from vm3 to
    // a pool address no client holds.
    let mut c = Case::new("fip64-fragments", "fragments translated; extension headers and other protocols dropped", topology());
    hello(&mut c, 1.0, c1, C1, fip_vm3());
    let whole6 = udp6(C1, c1, fip_vm3(), 40000, 7000, &[0x33; 40]).bytes();
    let udp_bytes = whole6[14 + 40..].to_vec();
    let whole4 = P::udp(RB6, VM3, p1, IP_VM3, 40000, 7000, &[0x33; 40]).bytes();
    let udp4 = whole4[14 + 20..].to_vec();
    for (t, (lo, hi, more)) in [(2.0, (0usize, 24usize, true)), (3.0, (24, 48, false))] {
        let mut f6 = [GW6, C1].concat();
        f6.extend_from_slice(&0x86ddu16.to_be_bytes());
        f6.extend_from_slice(&[0x60, 0, 0, 0]);
        f6.extend_from_slice(&((8 + hi - lo) as u16).to_be_bytes());
        f6.extend_from_slice(&[44, 64]);
        f6.extend_from_slice(&c1);
        f6.extend_from_slice(&fip_vm3());
        f6.extend_from_slice(&[17, 0]);
        f6.extend_from_slice(&(((lo / 8) as u16) << 3 | more as u16).to_be_bytes());
        f6.extend_from_slice(&0x0001_beefu32.to_be_bytes());
        f6.extend_from_slice(&udp_bytes[lo..hi]);
        let mut ip = etherparse::Ipv4Header::new((hi - lo) as u16, 63, etherparse::IpNumber::UDP, p1, IP_VM3).expect("header");
        ip.identification = 0xbeef;
        ip.dont_fragment = false;
        ip.more_fragments = more;
        ip.fragment_offset = etherparse::IpFragOffset::try_new((lo / 8) as u16).expect("offset");
        ip.header_checksum = ip.calc_header_checksum();
        let mut f4 = [VM3, RB6].concat();
        f4.extend_from_slice(&0x0800u16.to_be_bytes());
        f4.extend_from_slice(&ip.to_bytes());
        f4.extend_from_slice(&udp4[lo..hi]);
        c.input(t, "uplink0", f6).expect(t, "tap-vm3", f4);
    }
    let hbh = P6 { router_alert: true, ..udp6(C1, c1, fip_vm3(), 40000, 7000, b"with hop-by-hop") };
    c.input(4.0, "uplink0", hbh.bytes());
    let mut gre = [GW6, C1].concat();
    gre.extend_from_slice(&0x86ddu16.to_be_bytes());
    gre.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 47, 64]);
    gre.extend_from_slice(&c1);
    gre.extend_from_slice(&fip_vm3());
    gre.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0, 0]);
    c.input(5.0, "uplink0", gre);
    let nobody: Ip = [100, 64, 77, 77];
    assert_ne!(nobody, p1);
    c.input(6.0, "tap-vm3", P::udp(VM3, RB6, IP_VM3, nobody, 53, 40000, b"to nobody").bytes());
    c.drop("fip64_extension_header", 1).drop("fip64_protocol", 1).drop("fip64_unbound", 1);
    all.push(c);

    // Story: bindings (§11) with a pool of two addresses. c1 and c2 are bound; c1 is used
    // again, so when c3 comes c2's binding is the least recently used and c3 takes its
    // address: vm3's answer to it reaches c3. c1's binding, idle for 2 h 4 min, is gone: vm3's
    // datagram to c1's address is dropped.
    let mut c =
        Case::new("fip64-bindings", "a full pool lets the least recently used binding go; bindings expire after 2 h 4 min", topology());
    c.fip64_pool = Some(2);
    let c3 = a6(0xe, 0x97);
    let (q1, q2) = (pool(c1, 2, &[]), pool(c2, 2, &[pool(c1, 2, &[])]));
    for (t, client, mac) in [(1.0, c1, C1), (1.1, c2, C2), (1.2, c3, C3)] {
        hello(&mut c, t, client, mac, fip_vm3());
    }
    let from = |client: Ip6, mac: Mac, sport: u16| udp6(mac, client, fip_vm3(), sport, 53, b"query");
    c.input(2.0, "uplink0", from(c1, C1, 1).bytes()).expect(2.0, "tap-vm3", to_v4(&from(c1, C1, 1), q1, IP_VM3, VM3).bytes());
    c.input(3.0, "uplink0", from(c2, C2, 2).bytes()).expect(3.0, "tap-vm3", to_v4(&from(c2, C2, 2), q2, IP_VM3, VM3).bytes());
    c.input(4.0, "uplink0", from(c1, C1, 1).bytes()).expect(4.0, "tap-vm3", to_v4(&from(c1, C1, 1), q1, IP_VM3, VM3).bytes());
    c.input(5.0, "uplink0", from(c3, C3, 3).bytes()).expect(5.0, "tap-vm3", to_v4(&from(c3, C3, 3), q2, IP_VM3, VM3).bytes());
    let answer = P::udp(VM3, RB6, IP_VM3, q2, 53, 3, b"to whoever holds it now");
    c.input(6.0, "tap-vm3", answer.bytes()).expect(6.0, "uplink0", to_v6(&answer, fip_vm3(), c3, C3).bytes());
    let late = 4.0 + 7440.0 + 1.0;
    c.input(late, "tap-vm3", P::udp(VM3, RB6, IP_VM3, q1, 53, 1, b"too late").bytes());
    c.drop("fip64_unbound", 1);
    all.push(c);

    // Story: fip64 flows (§11, §9): UDP and echo in both directions are translated by the
    // simulation once and then by their cached flows, with the same bytes — the 4 → 6 flow
    // computing the IPv6 UDP checksum of datagrams vm3 sends without one.
    let mut c = Case::new("fip64-flows", "fip64 translation cached both ways after each flow's first packet", topology());
    hello(&mut c, 1.0, c1, C1, fip_vm3());
    let q = udp6(C1, c1, fip_vm3(), 40000, 53, b"cached query");
    let a = P::udp(VM3, RB6, IP_VM3, p1, 53, 40000, b"cached answer");
    let mut ping = P6::icmp(C1, GW6, c1, fip_vm3(), L6::EchoRequest { id: 4, seq: 1 }, b"cached ping");
    ping.hop_limit = 64;
    let pong = P { l4: L4::EchoReply { id: 4, seq: 1 }, ..P::udp(VM3, RB6, IP_VM3, p1, 0, 0, b"cached ping") };
    let bare = P::udp(VM3, RB6, IP_VM3, p1, 5353, 40000, b"no UDP checksum");
    let mut bare_bytes = bare.bytes();
    bare_bytes[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    for i in 0..3 {
        let t = 2.0 + i as f64;
        c.input(t, "uplink0", q.bytes()).expect(t, "tap-vm3", to_v4(&q, p1, IP_VM3, VM3).bytes());
        c.input(t + 0.1, "tap-vm3", a.bytes()).expect(t + 0.1, "uplink0", to_v6(&a, fip_vm3(), c1, C1).bytes());
        c.input(t + 0.2, "uplink0", ping.bytes()).expect(t + 0.2, "tap-vm3", to_v4(&ping, p1, IP_VM3, VM3).bytes());
        c.input(t + 0.3, "tap-vm3", pong.bytes()).expect(t + 0.3, "uplink0", to_v6(&pong, fip_vm3(), c1, C1).bytes());
        c.input(t + 0.4, "tap-vm3", bare_bytes.clone()).expect(t + 0.4, "uplink0", to_v6(&bare, fip_vm3(), c1, C1).bytes());
    }
    all.push(c);

    // Story: r6's firewall (§6.2) sees fip64 traffic as the IPv4 it becomes (pool address →
    // fixed IP), and a reject answers the client in its own family (§11): SMTP gets a TCP RST
    // over IPv6 from the fip64, UDP to a rejected range gets ICMPv6 port unreachable from the
    // gateway port's IPv6 address quoting the datagram as it arrived. Allowed UDP passes and
    // its answer returns by the connection's state.
    let mut s = topology();
    s["firewall_rules"] = json!([
        {"id": "reject-smtp", "protocol": "tcp", "destination_port": "25", "action": "reject"},
        {"id": "reject-udp-range", "protocol": "udp", "source_ip_address": "100.64.0.0/10", "destination_port": "5000:5010", "action": "reject"},
        {"id": "allow-dns", "protocol": "udp", "destination_ip_address": "10.1.0.3/32", "destination_port": "53", "action": "allow"},
    ]);
    s["firewall_policies"] = json!([{"id": "pol6", "firewall_rules": ["reject-smtp", "reject-udp-range", "allow-dns"]}]);
    s["firewalls"] = json!([{"id": "fw6", "firewall_policy_id": "pol6", "router_ids": ["r6"]}]);
    let mut c = Case::new("fip64-firewall", "the firewall filters fip64 traffic as IPv4; a reject answers the client in IPv6", s);
    hello(&mut c, 1.0, c1, C1, fip_vm3());
    let q = udp6(C1, c1, fip_vm3(), 40000, 53, b"allowed");
    c.input(2.0, "uplink0", q.bytes()).expect(2.0, "tap-vm3", to_v4(&q, p1, IP_VM3, VM3).bytes());
    let a = P::udp(VM3, RB6, IP_VM3, p1, 53, 40000, b"by state");
    c.input(3.0, "tap-vm3", a.bytes()).expect(3.0, "uplink0", to_v6(&a, fip_vm3(), c1, C1).bytes());
    let smtp = P6 { l4: L6::Tcp(L4::Tcp { sport: 41000, dport: 25, syn: true, ack: false, seq: 7 }), ..udp6(C1, c1, fip_vm3(), 0, 0, b"") };
    let rst = P6 {
        l4: L6::Tcp(L4::TcpRst { sport: 25, dport: 41000, seq: 0, ack: Some(8) }),
        hop_limit: 64,
        ..udp6(GW6, fip_vm3(), c1, 0, 0, b"")
    };
    c.input(4.0, "uplink0", smtp.bytes()).expect(4.0, "uplink0", P6 { dmac: C1, ..rst }.bytes());
    let rejected = udp6(C1, c1, fip_vm3(), 40001, 5005, b"to a rejected port");
    c.input(5.0, "uplink0", rejected.bytes()).expect(5.0, "uplink0", error6(GW6, a6(0xe, 2), 1, 4, &rejected).bytes());
    c.drop("fw_rejected", 2);
    all.push(c);
}
