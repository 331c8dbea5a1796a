//! The `edgepath` command as an operator meets it: one line and exit 2 for what is wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn edgepath(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgepath")).args(args).output().expect("run edgepath")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("root").to_path_buf()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn snapshot_check_summarises_a_good_snapshot() {
    let snap = repo().join("pcaps/fip-worked-cases/snapshot.json");
    let o = edgepath(&["snapshot", "check", snap.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let first = out.lines().next().unwrap_or_default();
    assert!(first.contains("version 1: 2 hosts, 5 networks, 5 subnets, 11 ports, 2 routers, 2 floatingips"), "{out}");
    // host-a is the VTEP of the three networks it has ports on.
    assert_eq!(out.lines().filter(|l| l.starts_with("vtep 192.168.50.1 ")).count(), 3, "{out}");
}

/// The operator view of issue 3: every VTEP, its VNI, network and the resource behind it.
#[test]
fn snapshot_check_lists_the_vteps() {
    let snap = repo().join("pcaps/remote-gateway/snapshot.json");
    let o = edgepath(&["snapshot", "check", snap.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for want in [
        "vtep 192.168.60.30 vni 6000 network net-b from host underlay: hw_vtep gateway_devices/hw1 via l2_gateway_connections/l2c-hw",
        "vtep 192.168.60.31 vni 6000 network net-b from host underlay: hw_vtep gateway_devices/hw2 via l2_gateway_connections/l2c-hw",
        "vtep 192.0.2.77 vni 5000 network net-a from router edge at 198.51.100.20: router_vtep gateway_devices/rv1 remote_mac_entries/rme1",
        "vtep 192.168.70.1 vni 7000 network net-a from host underlay: remote_gateways/rg1 via remote_gateway_connections/rc1",
        "vtep 192.168.70.2 vni 200 network net-b from host underlay: remote_gateways/rg2 via remote_gateway_connections/rc2",
        "vtep 192.168.50.1 vni 100 network net-a from host underlay: hosts/host-a",
    ] {
        assert!(out.lines().any(|l| l == want), "missing {want:?} in\n{out}");
    }
}

/// Each broken snapshot gives exactly one line naming the file, the collection/id and the
/// attribute, and exit status 2.
#[test]
fn snapshot_check_names_file_resource_and_attribute() {
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("pcaps/l2-local/snapshot.json")).expect("read")).expect("json");
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "fixed IP outside its subnet",
            Box::new(|s| s["ports"][0]["fixed_ips"][0]["ip_address"] = "10.9.9.9".into()),
            "ports/vm1: fixed_ips[0].ip_address: 10.9.9.9 is not in any subnet of network net-a",
        ),
        (
            "bad MAC",
            Box::new(|s| s["ports"][1]["mac_address"] = "fa:16:3e:zz:00:04".into()),
            "ports/vm2: mac_address: \"fa:16:3e:zz:00:04\" is not a MAC address",
        ),
        (
            "VNI out of range",
            Box::new(|s| s["networks"][0]["provider:segmentation_id"] = 16777216.into()),
            "networks/net-a: provider:segmentation_id: 16777216 is not a VNI (1..=16777215)",
        ),
        (
            "floating IP outside its network",
            Box::new(|s| s["floatingips"][0]["floating_ip_address"] = "198.18.0.1".into()),
            "floatingips/fip-a: floating_ip_address: 198.18.0.1 is not in any subnet of network ext-net",
        ),
        (
            "dangling reference",
            Box::new(|s| s["subnets"][0]["network_id"] = "nope".into()),
            "subnets/sub-a: network_id: no network \"nope\"",
        ),
        (
            "missing required attribute",
            Box::new(|s| s["subnets"][1].as_object_mut().map(|o| o.remove("cidr")).map(drop).unwrap_or(())),
            "subnets/sub-b: cidr: missing field `cidr`",
        ),
        ("duplicate id", Box::new(|s| s["routers"][1]["id"] = "r1".into()), "routers/r1: id: duplicate id"),
        (
            "uplink with a VNI",
            Box::new(|s| s["networks"][4]["provider:segmentation_id"] = 77.into()),
            "networks/uplink-net: provider:segmentation_id: a local (uplink) network has no segmentation id",
        ),
        (
            "interface bound twice",
            Box::new(|s| s["ports"][1]["binding:profile"]["interface_name"] = "tap-vm1".into()),
            "ports/vm2: binding:profile: interface \"tap-vm1\" on host host-a is already bound to port vm1",
        ),
        (
            "route via no subnet",
            Box::new(|s| s["routers"][1]["routes"][0]["nexthop"] = "192.0.2.1".into()),
            "routers/edge: routes[0].nexthop: 192.0.2.1 is not on a subnet of one of the router's ports",
        ),
        // Issue 10: what `snapshot check` used to accept.
        (
            "tunnel IP 0.0.0.0",
            Box::new(|s| s["hosts"][0]["tunnel_ip"] = "0.0.0.0".into()),
            "hosts/host-a: tunnel_ip: 0.0.0.0 is not a unicast address",
        ),
        (
            "tunnel IP broadcast",
            Box::new(|s| s["hosts"][1]["tunnel_ip"] = "255.255.255.255".into()),
            "hosts/host-b: tunnel_ip: 255.255.255.255 is not a unicast address",
        ),
        (
            "tunnel IP shared",
            Box::new(|s| s["hosts"][1]["tunnel_ip"] = "192.168.50.1".into()),
            "hosts/host-b: tunnel_ip: 192.168.50.1 is already the tunnel IP of host host-a",
        ),
        (
            "fixed IP = network address",
            Box::new(|s| s["ports"][0]["fixed_ips"][0]["ip_address"] = "10.0.0.0".into()),
            "ports/vm1: fixed_ips[0].ip_address: 10.0.0.0 is the network address of subnet sub-a (10.0.0.0/24)",
        ),
        (
            "fixed IP = broadcast address",
            Box::new(|s| s["ports"][0]["fixed_ips"][0]["ip_address"] = "10.0.0.255".into()),
            "ports/vm1: fixed_ips[0].ip_address: 10.0.0.255 is the broadcast address of subnet sub-a (10.0.0.0/24)",
        ),
        (
            "broadcast MAC",
            Box::new(|s| s["ports"][0]["mac_address"] = "ff:ff:ff:ff:ff:ff".into()),
            "ports/vm1: mac_address: ff:ff:ff:ff:ff:ff is not a unicast MAC address",
        ),
        (
            "multicast MAC",
            Box::new(|s| s["ports"][0]["mac_address"] = "01:00:5e:00:00:01".into()),
            "ports/vm1: mac_address: 01:00:5e:00:00:01 is not a unicast MAC address",
        ),
        (
            "zero MAC",
            Box::new(|s| s["ports"][0]["mac_address"] = "00:00:00:00:00:00".into()),
            "ports/vm1: mac_address: 00:00:00:00:00:00 is not a unicast MAC address",
        ),
        (
            "one fixed IP on two ports",
            Box::new(|s| s["ports"][1]["fixed_ips"][0]["ip_address"] = "10.0.0.3".into()),
            "ports/vm2: fixed_ips[0].ip_address: 10.0.0.3 is already a fixed IP of port vm1 on network net-a",
        ),
        (
            "one floating IP address twice",
            Box::new(|s| {
                let mut f = s["floatingips"][0].clone();
                f["id"] = "fip-c".into();
                s["floatingips"].as_array_mut().expect("fips").push(f);
            }),
            "floatingips/fip-c: floating_ip_address: 203.0.113.10 is already floating IP fip-a",
        ),
        (
            "overlapping subnets",
            Box::new(|s| {
                let mut sn = s["subnets"][0].clone();
                sn["id"] = "sub-a2".into();
                sn["cidr"] = "10.0.0.128/25".into();
                sn["gateway_ip"] = serde_json::Value::Null;
                s["subnets"].as_array_mut().expect("subnets").push(sn);
            }),
            "subnets/sub-a2: cidr: 10.0.0.128/25 overlaps subnet sub-a (10.0.0.0/24) on network net-a",
        ),
        (
            "missing version",
            Box::new(|s| drop(s.as_object_mut().expect("object").remove("version"))),
            "version: missing; a snapshot carries an integer version that grows with every change",
        ),
        (
            "max_kbps 0",
            Box::new(|s| s["qos_policies"] = serde_json::json!([{"id": "q", "rules": [{"type": "bandwidth_limit", "max_kbps": 0}]}])),
            "qos_policies/q: rules[0].max_kbps: 0 is not a rate: a bandwidth limit is at least 1 kbit/s",
        ),
        // Issue 10: errors that did not say what was wrong.
        (
            "VNI of the wrong type",
            Box::new(|s| s["networks"][0]["provider:segmentation_id"] = 1.5.into()),
            "networks/net-a: provider:segmentation_id: 1.5 is not a VNI (an integer 1..=16777215, or one as a string)",
        ),
        (
            "QoS rate of the wrong type",
            Box::new(|s| s["qos_policies"] = serde_json::json!([{"id": "q", "rules": [{"type": "bandwidth_limit", "max_kbps": "fast"}]}])),
            "qos_policies/q: rules[0].max_kbps: invalid type: string \"fast\", expected u64",
        ),
        (
            "QoS direction unknown",
            Box::new(|s| {
                s["qos_policies"] =
                    serde_json::json!([{"id": "q", "rules": [{"type": "bandwidth_limit", "max_kbps": 8, "direction": "up"}]}])
            }),
            "qos_policies/q: rules[0].direction: unknown variant `up`, expected `egress` or `ingress`",
        ),
        (
            "QoS rule without its rate",
            Box::new(|s| s["qos_policies"] = serde_json::json!([{"id": "q", "rules": [{"type": "bandwidth_limit"}]}])),
            "qos_policies/q: rules[0]: max_kbps: missing; a bandwidth_limit rule needs it",
        ),
        (
            "QoS attribute of another rule type",
            Box::new(|s| {
                s["qos_policies"] = serde_json::json!([{"id": "q", "rules": [{"type": "dscp_marking", "dscp_mark": 10, "max_kbps": 8}]}])
            }),
            "qos_policies/q: rules[0]: max_kbps: not an attribute of a dscp_marking rule",
        ),
        (
            "address that does not parse",
            Box::new(|s| s["ports"][0]["fixed_ips"][0]["ip_address"] = "10.0.0".into()),
            "ports/vm1: fixed_ips[0].ip_address: invalid IP address syntax (found \"10.0.0\")",
        ),
        // Issue 12: the IPv6 attributes (SPEC §3, §10.2).
        (
            "ip_version that does not match the CIDR",
            Box::new(|s| s["subnets"][0]["ip_version"] = 6.into()),
            "subnets/sub-a: ip_version: 6, but cidr 10.0.0.0/24 is IPv4",
        ),
        (
            "IPv6 CIDR without ip_version 6",
            Box::new(|s| {
                s["subnets"]
                    .as_array_mut()
                    .expect("subnets")
                    .push(serde_json::json!({"id": "s6", "network_id": "net-a", "cidr": "2001:db8::/64"}))
            }),
            "subnets/s6: cidr: 2001:db8::/64 is IPv6, but ip_version is not 6",
        ),
        (
            "RA mode and address mode that differ",
            Box::new(|s| {
                s["subnets"].as_array_mut().expect("subnets").push(serde_json::json!({
                    "id": "s6", "network_id": "net-a", "cidr": "2001:db8::/64", "ip_version": 6,
                    "ipv6_ra_mode": "slaac", "ipv6_address_mode": "dhcpv6-stateful",
                }))
            }),
            "subnets/s6: ipv6_ra_mode: slaac differs from ipv6_address_mode dhcpv6-stateful",
        ),
        (
            "an RA mode on an IPv4 subnet",
            Box::new(|s| s["subnets"][0]["ipv6_ra_mode"] = "slaac".into()),
            "subnets/sub-a: ipv6_ra_mode: slaac on the IPv4 subnet 10.0.0.0/24",
        ),
        (
            "an IPv6 address in an IPv4 firewall rule",
            Box::new(|s| {
                s["firewall_rules"] = serde_json::json!([{"id": "fr", "action": "allow", "destination_ip_address": "2001:db8::/64"}])
            }),
            "firewall_rules/fr: destination_ip_address: 2001:db8::/64 in a rule of ip_version 4",
        ),
        (
            "a route that mixes families",
            Box::new(|s| s["routers"][0]["routes"] = serde_json::json!([{"destination": "2001:db8:9::/48", "nexthop": "10.0.0.9"}])),
            "routers/r1: routes[0].nexthop: 10.0.0.9 for destination 2001:db8:9::/48: a route's next hop is of its destination's family",
        ),
        (
            "CIDR that does not parse",
            Box::new(|s| s["subnets"][0]["cidr"] = "10.0.0.0/33".into()),
            "subnets/sub-a: cidr: invalid IP address syntax (found \"10.0.0.0/33\")",
        ),
        (
            "an id with a newline",
            Box::new(|s| {
                s["subnets"][0]["id"] = "sub\na".into();
                s["subnets"][0]["cidr"] = "10.0.0.0/33".into();
            }),
            "subnets/sub\\na: cidr: invalid IP address syntax (found \"10.0.0.0/33\")",
        ),
        // Issue 10: names that would escape `replay --out` or that Linux refuses.
        (
            "path-escaping interface name",
            Box::new(|s| s["ports"][0]["binding:profile"]["interface_name"] = "../../x".into()),
            "ports/vm1: binding:profile: interface name \"../../x\" contains '/'",
        ),
        (
            "interface name longer than IFNAMSIZ",
            Box::new(|s| s["ports"][0]["binding:profile"]["interface_name"] = "tap-0123456789ab".into()),
            "ports/vm1: binding:profile: interface name \"tap-0123456789ab\" is longer than 15 bytes (Linux's IFNAMSIZ)",
        ),
        (
            "interface name with NUL",
            Box::new(|s| s["ports"][0]["binding:profile"]["interface_name"] = "tap\u{0}x".into()),
            "ports/vm1: binding:profile: interface name \"tap\\0x\" contains NUL, white space or ':'",
        ),
        (
            "underlay named ..",
            Box::new(|s| s["hosts"][0]["underlay_interface"] = "..".into()),
            "hosts/host-a: underlay_interface: interface name \"..\" is not a name",
        ),
        (
            "firewall log id with /",
            Box::new(|s| {
                s["firewall_rules"] = serde_json::json!([{"id": "a", "action": "allow"}]);
                s["firewall_policies"] = serde_json::json!([{"id": "p", "firewall_rules": ["a"]}]);
                s["firewalls"] = serde_json::json!([{"id": "fw", "firewall_policy_id": "p"}]);
                s["logging_resources"] = serde_json::json!([{"id": "l", "firewall_logs": [{"id": "../x", "firewall_id": "fw"}]}]);
            }),
            "logging_resources/l: firewall_logs[0].id: \"../x\" contains '/': it names the log file fw-<id>.log",
        ),
    ];
    assert_one_line_errors(&base, cases);
}

/// fip64s (SPEC §11) are listed, and the two rules on them are one-line errors.
#[test]
fn snapshot_check_lists_fip64s_and_refuses_bad_ones() {
    let path = repo().join("pcaps/fip64/snapshot.json");
    let o = edgepath(&["snapshot", "check", path.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for want in [
        "fip64 fip64-vm3 2001:db8:e::100 → 10.1.0.3 router r6 gateway port r6-gw",
        "fip64 fip64-vm6 2001:db8:e::106 → 10.1.0.4 router r6 gateway port r6-gw",
    ] {
        assert!(out.lines().any(|l| l == want), "missing {want:?} in\n{out}");
    }
    let base: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "a second fip64 for one fixed IP",
            Box::new(|s| {
                s["floatingips"][1]["port_id"] = "vm3".into();
                s["floatingips"][1]["fixed_ip_address"] = "10.1.0.3".into();
            }),
            "floatingips/fip64-vm6: fixed_ip_address: 10.1.0.3 already has fip64 fip64-vm3",
        ),
        (
            "a fip64 on a router interface's network",
            Box::new(|s| s["routers"][0]["external_gateway_info"] = serde_json::Value::Null),
            "floatingips/fip64-vm3: router_id: router r6 has no gateway port on ext6, which a fip64 needs",
        ),
    ];
    assert_one_line_errors(&base, cases);
}

type Edit = Box<dyn Fn(&mut serde_json::Value)>;

/// Each of `cases` — what it breaks, how, the error it must give — applied to `base` makes
/// `snapshot check` exit 2 with exactly that one line, naming the file.
fn assert_one_line_errors(base: &serde_json::Value, cases: Vec<(&str, Edit, &str)>) {
    let tmp = tempfile::tempdir().expect("tmp");
    for (what, edit, want) in cases {
        let mut s = base.clone();
        edit(&mut s);
        let path = tmp.path().join("snap.json");
        std::fs::write(&path, serde_json::to_string(&s).expect("json")).expect("write");
        let o = edgepath(&["snapshot", "check", path.to_str().expect("utf8")]);
        assert_eq!(o.status.code(), Some(2), "{what}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        assert_eq!(err.trim_end(), format!("edgepath: {}: {want}", path.display()), "{what}");
    }
}

/// `edgepath replay` as host-a of `snapshot` on the frames of `input`, into `out`.
fn replay_with(snapshot: &Path, input: &Path, out: &Path, extra: &[&str]) -> Output {
    let s = |p: &Path| p.to_str().expect("utf8").to_string();
    let (snap, input, out) = (s(snapshot), s(input), s(out));
    let mut args = vec!["replay", "--snapshot", &snap, "--host", "host-a", "--in", &input, "--out", &out];
    args.extend_from_slice(extra);
    edgepath(&args)
}

/// `edgepath replay` of a scenario's own inputs.
fn replay_case(case: &str, out: &Path, extra: &[&str]) -> Output {
    let dir = repo().join("pcaps").join(case);
    replay_with(&dir.join("snapshot.json"), &dir.join("in"), out, extra)
}

#[test]
fn replay_refuses_bad_input_with_one_line() {
    let case = repo().join("pcaps/l2-local");
    let snap = case.join("snapshot.json");
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    let s = |p: &Path| p.to_str().expect("utf8").to_string();
    let run = |extra: &[&str], input: &Path| replay_with(&snap, input, &out, extra);
    // An interface no port binds.
    let bad_in = tmp.path().join("in");
    std::fs::create_dir_all(&bad_in).expect("mkdir");
    std::fs::copy(case.join("in/tap-vm1.pcap"), bad_in.join("eth9.pcap")).expect("copy");
    let o = run(&[], &bad_in);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("eth9.pcap: interface \"eth9\" is not bound by any port of host host-a"), "{}", stderr(&o));
    // An unreadable pcap.
    std::fs::remove_file(bad_in.join("eth9.pcap")).expect("rm");
    std::fs::write(bad_in.join("tap-vm1.pcap"), b"not a pcap").expect("write");
    let o = run(&[], &bad_in);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("tap-vm1.pcap: not a readable classic pcap file"), "{}", stderr(&o));
    // A missing input directory.
    let o = run(&[], &tmp.path().join("nowhere"));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 1);
    // No workers at all.
    let o = run(&["--threads", "0"], &case.join("in"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--threads 0: at least one worker is needed"), "{}", stderr(&o));
    // An unknown host.
    let o = edgepath(&["replay", "--snapshot", &s(&snap), "--host", "nope", "--in", &s(&case.join("in")), "--out", &s(&out)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("host \"nope\" is not in the snapshot's hosts"), "{}", stderr(&o));
    // A good run prints the summary and writes the outputs.
    let o = run(&[], &case.join("in"));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("frames in: 3") && text.contains("frames out: 3"), "{text}");
    assert!(out.join("tap-vm2.pcap").exists() && out.join("tap-vm1.pcap").exists());
    assert!(!out.join("tap-vm3.pcap").exists(), "interfaces that send nothing get no file");
}

/// `replay --trace` shows each packet's walk, the §6.1 rules that applied, and cached flows.
#[test]
fn replay_trace_shows_the_walk_and_the_nat_rules() {
    let tmp = tempfile::tempdir().expect("tmp");
    let o = replay_case("fip-worked-cases", tmp.path(), &["--trace"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for want in [
        "router r1 in port r1-b",
        "PREROUTING 1 float DNAT 203.0.113.10 → 10.0.0.3",
        "POSTROUTING 6 dst-rewritten: default SNAT to 203.0.113.2",
        "PREROUTING 2 reverse SNAT from 203.0.113.2",
        "POSTROUTING 4 from external-like port: untranslated",
        "output tap-z",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let o = replay_case("l2-local", tmp.path(), &["--trace"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("    cached flow"));
}

/// `edgepath trace` and `replay --trace` with IPv6 (issue 12): the walk across r1 by the IPv6
/// route table, and the frame that leaves with its hop limit one lower.
#[test]
fn trace_shows_an_ipv6_packet_routed() {
    let snap = repo().join("pcaps/ipv6-flows/snapshot.json");
    let args = ["--host", "host-a", "--in", "tap-vm1", "--src", "2001:db8:a::3", "--dst", "2001:db8:b::3", "--proto", "icmp"];
    let o = edgepath(&[&["trace", "--snapshot", snap.to_str().expect("utf8")][..], &args].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for want in [
        "router r1 in port r1-a",
        "route 2001:db8:b::/64 via 2001:db8:b::3 out port r1-b",
        "output tap-vm3",
        "IPv6 2001:db8:a::3 → 2001:db8:b::3 hlim 63 ICMPv6 type 128",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let mixed = edgepath(&[
        "trace",
        "--snapshot",
        snap.to_str().expect("utf8"),
        "--host",
        "host-a",
        "--in",
        "tap-vm1",
        "--src",
        "10.0.0.3",
        "--dst",
        "2001:db8:b::3",
    ]);
    assert_eq!(mixed.status.code(), Some(2));
    assert!(stderr(&mixed).contains("one family"), "{}", stderr(&mixed));
    let tmp = tempfile::tempdir().expect("tmp");
    let o = replay_case("ipv6-routing", tmp.path(), &["--trace"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("ICMPv6 type 3 code 0 from 2001:db8:a::1 to 2001:db8:a::3"), "{text}");
    assert!(text.contains("wait for ND of 2001:db8:b::77"), "{text}");
}

/// `edgepath trace` offline: a floating-IP packet's walk and the frame that leaves; a denied one's
/// drop reason.
#[test]
fn trace_shows_a_floating_ip_packet() {
    let snap = repo().join("pcaps/fip-dnat-inbound/snapshot.json");
    let s = snap.to_str().expect("utf8");
    let o = edgepath(&[
        "trace",
        "--snapshot",
        s,
        "--host",
        "host-a",
        "--in",
        "uplink0",
        "--src",
        "192.0.2.50",
        "--dst",
        "203.0.113.10",
        "--proto",
        "tcp",
        "--dport",
        "22",
        "--src-mac",
        "02:aa:00:00:00:01",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for want in [
        "router edge in port edge-up",
        "PREROUTING 1 float DNAT 203.0.113.10 → 10.0.0.3",
        "→ tap-vm1: fa:16:3e:aa:00:01 → fa:16:3e:00:00:03 IPv4 192.0.2.50 → 10.0.0.3 ttl 62",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let fw = repo().join("pcaps/firewall/snapshot.json");
    let o = edgepath(&[
        "trace",
        "--snapshot",
        fw.to_str().expect("utf8"),
        "--host",
        "host-a",
        "--in",
        "tap-vm2",
        "--src",
        "10.0.0.4",
        "--dst",
        "10.1.0.3",
        "--proto",
        "tcp",
        "--dport",
        "23",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("firewall fw1 rule deny-telnet: Deny") && text.contains("dropped: fw_denied"), "{text}");
    let o = edgepath(&["trace", "--snapshot", s, "--host", "host-a", "--in", "eth7", "--src", "1.1.1.1", "--dst", "2.2.2.2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--in eth7: interface not bound"), "{}", stderr(&o));
}
