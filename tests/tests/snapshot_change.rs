//! A new snapshot invalidates every cached flow before the next packet uses it (SPEC §9).

use std::collections::HashMap;
use std::sync::Arc;

use datapath::{Datapath, Instant};
use edgepath_tests::{repo_root, upstream_arp_request};
use etherparse::PacketBuilder;

use edgepath_tests::UPSTREAM_MAC as UPSTREAM;
const EDGE_UP: [u8; 6] = [0xfa, 0x16, 0x3e, 0xbb, 0, 2];

fn topology(edit: impl Fn(&mut serde_json::Value)) -> Arc<rules::Topology> {
    topology_of("fip-dnat-inbound", edit)
}

/// A scenario's snapshot changed by `edit`, compiled.
fn topology_of(case: &str, edit: impl Fn(&mut serde_json::Value)) -> Arc<rules::Topology> {
    let text = std::fs::read_to_string(repo_root().join("pcaps").join(case).join("snapshot.json")).expect("snapshot");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    edit(&mut v);
    let snap = rules::load_str(&v.to_string()).expect("valid");
    Arc::new(rules::Topology::compile(snap).expect("compiles"))
}

/// Where a frame to FIP-A goes, and its destination address.
fn deliver(dp: &mut Datapath, t: u64) -> (String, [u8; 4]) {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(UPSTREAM, EDGE_UP)
        .ipv4([192, 0, 2, 50], [203, 0, 113, 10], 64)
        .udp(33000, 7000)
        .write(&mut f, b"x")
        .expect("build");
    let up = dp.interfaces().by_name("uplink0").expect("uplink");
    dp.process(up, &f, Instant(t));
    let (i, out) = dp.tx().iter().next().expect("delivered");
    (dp.interfaces().get(i).name.clone(), [out[30], out[31], out[32], out[33]])
}

#[test]
fn a_new_snapshot_redirects_cached_flows() {
    let mut dp = Datapath::new(topology(|_| {}), "host-a", &HashMap::new()).expect("datapath");
    assert_eq!(deliver(&mut dp, 1), ("tap-vm1".to_string(), [10, 0, 0, 3]));
    assert_eq!(deliver(&mut dp, 2), ("tap-vm1".to_string(), [10, 0, 0, 3]));
    assert_eq!(dp.stats().flow_hits, 1);

    // Version 2 moves FIP-A to vm2.
    let v2 = topology(|s| {
        s["version"] = 2.into();
        s["floatingips"][0]["port_id"] = "vm2".into();
        s["floatingips"][0]["fixed_ip_address"] = "10.0.0.4".into();
    });
    dp.set_topology(v2).expect("same interfaces");
    assert_eq!(deliver(&mut dp, 3), ("tap-vm2".to_string(), [10, 0, 0, 4]));
    assert_eq!(dp.stats().flow_hits, 1, "the old flow was not used");

    // Version 3 binds vm2's port to another interface (Nova re-plugged it): FIP-A follows.
    let v3 = topology(|s| {
        s["version"] = 3.into();
        s["floatingips"][0]["port_id"] = "vm2".into();
        s["floatingips"][0]["fixed_ip_address"] = "10.0.0.4".into();
        s["ports"][1]["binding:profile"]["interface_name"] = "tap-other".into();
    });
    dp.set_topology(v3).expect("a rebound port");
    assert_eq!(deliver(&mut dp, 4), ("tap-other".to_string(), [10, 0, 0, 4]));
    assert!(dp.interfaces().by_name("tap-vm2").is_none(), "the old interface was released");
}

/// SPEC §6.2 and issue 4: a rule change in a new snapshot applies to new connections, and the
/// existing connections the new rules would deny are cut; those still allowed stay.
#[test]
fn a_new_firewall_policy_cuts_what_it_denies() {
    const VM2: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x04];
    const VM3: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 0x03];
    const R1_A: [u8; 6] = [0xfa, 0x16, 0x3e, 0xaa, 0, 1];
    const R1_B: [u8; 6] = [0xfa, 0x16, 0x3e, 0xaa, 0, 2];
    let load = |edit: &dyn Fn(&mut serde_json::Value)| {
        let text = std::fs::read_to_string(repo_root().join("pcaps/firewall/snapshot.json")).expect("snapshot");
        let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
        edit(&mut v);
        Arc::new(rules::Topology::compile(rules::load_str(&v.to_string()).expect("valid")).expect("compiles"))
    };
    let tcp = |from_vm2: bool, syn: bool| {
        let mut f = Vec::new();
        let b = if from_vm2 {
            PacketBuilder::ethernet2(VM2, R1_A).ipv4([10, 0, 0, 4], [10, 1, 0, 3], 64).tcp(40000, 80, 1, 1000)
        } else {
            PacketBuilder::ethernet2(VM3, R1_B).ipv4([10, 1, 0, 3], [10, 0, 0, 4], 64).tcp(80, 40000, 1, 1000)
        };
        let b = if syn { b.syn() } else { b.ack(2) };
        b.write(&mut f, b"").expect("build");
        f
    };
    let ping = |from_vm2: bool| {
        let mut f = Vec::new();
        if from_vm2 {
            PacketBuilder::ethernet2(VM2, R1_A)
                .ipv4([10, 0, 0, 4], [10, 1, 0, 3], 64)
                .icmpv4_echo_request(9, 1)
                .write(&mut f, b"p")
                .expect("build");
        } else {
            PacketBuilder::ethernet2(VM3, R1_B)
                .ipv4([10, 1, 0, 3], [10, 0, 0, 4], 64)
                .icmpv4_echo_reply(9, 1)
                .write(&mut f, b"p")
                .expect("build");
        }
        f
    };
    let mut dp = Datapath::new(load(&|_| {}), "host-a", &HashMap::new()).expect("datapath");
    let (vm2, vm3) = (dp.interfaces().by_name("tap-vm2").expect("vm2"), dp.interfaces().by_name("tap-vm3").expect("vm3"));
    let mut t = 0;
    let mut passes = |dp: &mut Datapath, i, f: &[u8]| {
        t += 1_000_000;
        dp.process(i, f, Instant(t));
        !dp.tx().is_empty()
    };
    assert!(passes(&mut dp, vm2, &tcp(true, true)), "allowed by allow-web");
    assert!(passes(&mut dp, vm3, &tcp(false, false)), "the reply passes by state");
    assert!(passes(&mut dp, vm2, &ping(true)), "allowed by allow-icmp");
    // Version 2 denies the web connection's port; ICMP stays allowed.
    dp.set_topology(load(&|s| s["firewall_rules"][0]["action"] = "deny".into())).expect("same interfaces");
    assert!(!passes(&mut dp, vm3, &tcp(false, false)), "the web connection was cut: its reply no longer passes");
    assert!(!passes(&mut dp, vm2, &tcp(true, false)), "nor its next packet");
    assert!(passes(&mut dp, vm3, &ping(false)), "the ICMP connection stays");
    assert_eq!(dp.stats().drops.get(datapath::DropReason::FwDenied), 1);
}

/// SPEC §9: a new snapshot may number networks, ports and routers differently (here every
/// collection in reverse order); learned ARP entries and NAT mappings follow their resources by
/// id. A mapping whose rule is gone (default SNAT turned off) is cut.
#[test]
fn state_follows_resources_by_id_and_goes_with_its_rule() {
    const VM3: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 0x03];
    const R1_B: [u8; 6] = [0xfa, 0x16, 0x3e, 0xaa, 0, 2];
    let load = |edit: &dyn Fn(&mut serde_json::Value)| topology_of("default-snat", edit);
    let mut dp = Datapath::new(load(&|_| {}), "host-a", &HashMap::new()).expect("datapath");
    let (tap, up) = (dp.interfaces().by_name("tap-vm3").expect("tap"), dp.interfaces().by_name("uplink0").expect("uplink"));
    // The upstream router asks for edge: an ARP entry of edge's uplink port.
    dp.process(up, &upstream_arp_request(), Instant(0));
    let out = |dp: &mut Datapath, t: u64| {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(VM3, R1_B).ipv4([10, 1, 0, 3], [192, 0, 2, 50], 64).udp(5000, 53).write(&mut f, b"q").expect("build");
        dp.process(tap, &f, Instant(t));
        dp.tx().iter().next().map(|(i, f)| (i, f.to_vec()))
    };
    let (i, sent) = out(&mut dp, 1).expect("SNATed out");
    assert_eq!(i, up);
    let nat_of = |f: &[u8]| -> [u8; 6] { [f[26], f[27], f[28], f[29], f[34], f[35]] };
    let (router_mac, nat): ([u8; 6], [u8; 6]) = (sent[6..12].try_into().expect("mac"), nat_of(&sent));
    let answer = |dp: &mut Datapath, t: u64| {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(UPSTREAM, router_mac)
            .ipv4([192, 0, 2, 50], [nat[0], nat[1], nat[2], nat[3]], 60)
            .udp(53, u16::from_be_bytes([nat[4], nat[5]]))
            .write(&mut f, b"a")
            .expect("build");
        dp.process(up, &f, Instant(t));
        dp.tx().iter().next().map(|(i, f)| (i, [f[30], f[31], f[32], f[33]], u16::from_be_bytes([f[36], f[37]])))
    };
    assert_eq!(answer(&mut dp, 2), Some((tap, [10, 1, 0, 3], 5000)));

    // Version 2: the same resources, every collection reversed.
    let v2 = load(&|s| {
        s["version"] = 2.into();
        for c in ["networks", "subnets", "ports", "routers"] {
            if let Some(a) = s[c].as_array_mut() {
                a.reverse();
            }
        }
    });
    dp.set_topology(v2).expect("same interfaces");
    let again = out(&mut dp, 3).expect("still leaves at once: the ARP entry followed edge's uplink port");
    assert_eq!((again.0, nat_of(&again.1)), (up, nat), "the same mapping");
    assert_eq!(answer(&mut dp, 4).map(|a| (a.0, a.1, a.2)), Some((tap, [10, 1, 0, 3], 5000)), "the answer still finds vm3");
    assert_eq!(dp.connection_count(), 1);
    let ct = dp.conntrack_report(Instant(4));
    assert!(ct.contains(" router=r1 table=nat kind=Default "), "the connection still names its router: {ct}");

    // Version 3 turns r1's default SNAT off: the mapping's rule is gone, so is the mapping.
    let v3 = load(&|s| {
        s["version"] = 3.into();
        s["routers"][0]["external_gateway_info"]["enable_snat"] = false.into();
    });
    dp.set_topology(v3).expect("same interfaces");
    assert_eq!(dp.connection_count(), 0, "the connection went with its rule");
    assert_eq!(answer(&mut dp, 5), None, "nothing answers to the old mapping");
}

/// SPEC §2 and §9 (issue 9): a new snapshot adds a VM, removes one (migrated to host-b) and
/// rebinds a third, without a restart. The interfaces that stay keep their slots; the NAT
/// mapping, the learned ARP entry and the traffic of the VM that stays go on; the new VM is
/// reachable; a port whose interface is absent drops what goes to it, counted as `port_absent`,
/// until its link appears.
#[test]
fn ports_come_and_go_and_the_others_keep_their_state() {
    const VM3: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 0x03];
    const VM9: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 0x09];
    const R1_B: [u8; 6] = [0xfa, 0x16, 0x3e, 0xaa, 0, 2];
    let load = |edit: &dyn Fn(&mut serde_json::Value)| topology_of("default-snat", edit);
    let mut dp = Datapath::new(load(&|_| {}), "host-a", &HashMap::new()).expect("datapath");
    let (tap, up) = (dp.interfaces().by_name("tap-vm3").expect("tap"), dp.interfaces().by_name("uplink0").expect("uplink"));
    let slots = dp.interfaces().len();
    dp.process(up, &upstream_arp_request(), Instant(0));
    let udp = |dst_mac: [u8; 6], dst: [u8; 4]| {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(VM3, dst_mac).ipv4([10, 1, 0, 3], dst, 64).udp(5000, 53).write(&mut f, b"q").expect("build");
        f
    };
    let send = |dp: &mut Datapath, f: &[u8], t: u64| {
        dp.process(tap, f, Instant(t));
        dp.tx().iter().next().map(|(i, f)| (dp.interfaces().get(i).name.clone(), f[26..36].to_vec()))
    };
    let out = udp(R1_B, [192, 0, 2, 50]);
    let (name, nat) = send(&mut dp, &out, 1).expect("SNATed out");
    assert_eq!(name, "uplink0");

    // Version 2: vm9 on net-b joins on tap-vm9; vm2 moves to host-b; vm1 is re-plugged as tap-vm1b.
    let v2 = load(&|s| {
        s["version"] = 2.into();
        let mut vm9 = s["ports"][2].clone();
        vm9["id"] = "vm9".into();
        vm9["mac_address"] = "fa:16:3e:00:01:09".into();
        vm9["fixed_ips"][0]["ip_address"] = "10.1.0.9".into();
        vm9["binding:profile"]["interface_name"] = "tap-vm9".into();
        s["ports"].as_array_mut().expect("ports").push(vm9);
        s["ports"][1]["binding:host_id"] = "host-b".into();
        s["ports"][0]["binding:profile"]["interface_name"] = "tap-vm1b".into();
    });
    dp.shared().follow_links();
    dp.set_topology(v2).expect("ports added, moved and rebound");
    let ifs = dp.interfaces();
    assert_eq!((ifs.by_name("tap-vm3"), ifs.by_name("uplink0")), (Some(tap), Some(up)), "the interfaces that stay keep their slots");
    assert!(ifs.by_name("tap-vm2").is_none(), "vm2's interface was released");
    assert!(ifs.by_name("tap-vm1b").is_some() && ifs.by_name("tap-vm9").is_some());
    assert_eq!(ifs.len(), slots, "the new interfaces took the released slots");
    let again = send(&mut dp, &out, 2).expect("leaves at once: the ARP entry of the uplink port stayed");
    assert_eq!(again, ("uplink0".to_string(), nat), "the same mapping");
    assert_eq!(dp.connection_count(), 1);

    // vm9's tap is not plugged yet: what goes to it is dropped as port_absent, then delivered
    // once its link appears.
    let to_vm9 = udp(VM9, [10, 1, 0, 9]);
    assert_eq!(send(&mut dp, &to_vm9, 3), None);
    assert_eq!(dp.stats().drops.get(datapath::DropReason::PortAbsent), 1);
    assert!(dp.shared().set_link("tap-vm9", true, None));
    assert_eq!(send(&mut dp, &to_vm9, 4).map(|(n, _)| n), Some("tap-vm9".to_string()));
    // And it goes again: the flow made while it was there is not used once it is gone.
    assert_eq!(send(&mut dp, &to_vm9, 5).map(|(n, _)| n), Some("tap-vm9".to_string()));
    assert!(dp.shared().set_link("tap-vm9", false, None));
    assert_eq!(send(&mut dp, &to_vm9, 6), None);
    assert_eq!(dp.stats().drops.get(datapath::DropReason::PortAbsent), 2);
    assert!(!dp.shared().set_link("tap-vm2", true, None), "a released interface is no one's");
}

/// fip64 bindings (SPEC §11) cross a reload while their router keeps a fip64, and go with the
/// last one: vm3's answer to the client's pool address reaches the client after a reload, is
/// routed as plain IPv4 once the fip64s are gone, and finds no binding when a fip64 comes back.
#[test]
fn fip64_bindings_cross_a_reload_while_the_fip64_stays() {
    const C1: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 1];
    const GW6: [u8; 6] = [0xfa, 0x16, 0x3e, 0xcc, 0, 2];
    const RB6: [u8; 6] = [0xfa, 0x16, 0x3e, 0xcc, 0, 1];
    const VM3: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 3];
    let c1: std::net::Ipv6Addr = "2001:db8:e::99".parse().expect("addr");
    let fip: std::net::Ipv6Addr = "2001:db8:e::100".parse().expect("addr");
    let mut dp = Datapath::new(topology_of("fip64", |_| {}), "host-a", &HashMap::new()).expect("datapath");
    let (up, vm3) = (dp.interfaces().by_name("uplink0").expect("uplink"), dp.interfaces().by_name("tap-vm3").expect("vm3"));
    // The client asks for the fip64 (so the router knows its MAC), then sends it a datagram.
    let mut body = fip.octets().to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&C1);
    let solicited = [0xff02, 0, 0, 0, 0, 1, 0xff00, 0x0100];
    let mut ns = Vec::new();
    PacketBuilder::ethernet2(C1, [0x33, 0x33, 0xff, 0, 1, 0])
        .ipv6(c1.octets(), std::net::Ipv6Addr::from(solicited).octets(), 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut ns, &body)
        .expect("ns");
    dp.process(up, &ns, Instant(1_000_000_000));
    let mut q = Vec::new();
    PacketBuilder::ethernet2(C1, GW6).ipv6(c1.octets(), fip.octets(), 64).udp(40000, 53).write(&mut q, b"q").expect("q");
    dp.process(up, &q, Instant(2_000_000_000));
    let (i, out) = dp.tx().iter().next().expect("translated to vm3");
    assert_eq!(i, vm3);
    let pool = [out[26], out[27], out[28], out[29]];
    let answer = |dp: &mut Datapath, t: u64| {
        let mut a = Vec::new();
        PacketBuilder::ethernet2(VM3, RB6).ipv4([10, 1, 0, 3], pool, 64).udp(53, 40000).write(&mut a, b"a").expect("a");
        dp.process(vm3, &a, Instant(t * 1_000_000_000));
        // Where it left, and as what (the ethertype).
        dp.tx().iter().next().map(|(i, f)| (i, u16::from_be_bytes([f[12], f[13]])))
    };
    assert_eq!(answer(&mut dp, 3), Some((up, 0x86dd)), "the answer goes back as IPv6");
    // Version 2 drops vm6's fip64: r6 keeps vm3's, and the binding.
    dp.set_topology(topology_of("fip64", |s| {
        s["version"] = 2.into();
        s["floatingips"].as_array_mut().expect("fips").truncate(1);
    }))
    .expect("reload");
    assert_eq!(answer(&mut dp, 4), Some((up, 0x86dd)), "the binding crossed the reload");
    // Version 3 has no fip64: the binding goes with them.
    dp.set_topology(topology_of("fip64", |s| {
        s["version"] = 3.into();
        s["floatingips"] = serde_json::json!([]);
    }))
    .expect("reload");
    // Routed as any IPv4 (toward the gateway subnet's router, asked by ARP), not translated.
    assert_eq!(answer(&mut dp, 5), Some((up, 0x0806)), "no fip64, no translation");
    // Version 4 brings the fip64 back: the old pool address is bound to no one.
    dp.set_topology(topology_of("fip64", |s| s["version"] = 4.into())).expect("reload");
    // (What leaves then is version 3's ARP for the upstream router, asked again.)
    assert_ne!(answer(&mut dp, 6).map(|(_, ethertype)| ethertype), Some(0x86dd));
    assert_eq!(dp.stats().drops.get(datapath::drop::DropReason::Fip64Unbound), 1, "{:?}", dp.stats().drops);
}
