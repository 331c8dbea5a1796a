//! Every table filled from traffic has a bound (SPEC §9, issue 10): at the bound the new entry is
//! refused and counted — or, for the flow cache, the least recently used flow goes — and
//! established traffic is not harmed. Each test sets a small bound and fills the table through
//! the whole datapath.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datapath::limits::Limits;
use datapath::{Datapath, DropReason, IfIdx, Instant};
use edgepath_tests::{repo_root, upstream_arp_request, UPSTREAM_MAC};
use etherparse::PacketBuilder;

const VM1: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x03];
const VM3: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 0x03];
const R1_B: [u8; 6] = [0xfa, 0x16, 0x3e, 0xaa, 0, 2];
const EDGE_UP: [u8; 6] = [0xfa, 0x16, 0x3e, 0xbb, 0, 2];
const GW_IP: [u8; 4] = [203, 0, 113, 2];
const SERVER: [u8; 4] = [192, 0, 2, 50];

fn secs(s: u64) -> Instant {
    Instant(s * 1_000_000_000)
}

fn datapath(case: &str, limits: Limits, macs: &[(&str, &str)]) -> Datapath {
    let topo = rules::load_topology(&repo_root().join(format!("pcaps/{case}/snapshot.json"))).expect("snapshot");
    let macs: HashMap<String, rules::model::Mac> = macs.iter().map(|(i, m)| (i.to_string(), m.parse().expect("mac"))).collect();
    Datapath::new(Arc::new(topo), "host-a", &macs).expect("datapath").with_limits(limits)
}

fn iface(dp: &Datapath, name: &str) -> IfIdx {
    dp.interfaces().by_name(name).expect(name)
}

/// Interfaces the last input left by.
fn sent_on(dp: &Datapath) -> Vec<String> {
    dp.tx().iter().map(|(i, _)| dp.interfaces().get(i).name.clone()).collect()
}

/// vm3 (10.1.0.3) → 192.0.2.50:53 from `sport`, through r1's default SNAT.
fn out_udp(sport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(VM3, R1_B).ipv4([10, 1, 0, 3], SERVER, 64).udp(sport, 53).write(&mut v, b"q").expect("build");
    v
}

/// The server's answer to gw-ip:`port`, arriving on the uplink.
fn reply_udp(port: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(UPSTREAM_MAC, EDGE_UP).ipv4(SERVER, GW_IP, 60).udp(53, port).write(&mut v, b"a").expect("build");
    v
}

/// The translated source port of what the last input sent.
fn nat_port(dp: &Datapath) -> Option<u16> {
    let (_, f) = dp.tx().iter().next()?;
    Some(u16::from_be_bytes([f[34], f[35]]))
}

/// A connection table at its bound — in all, or for the router — first lets go of the oldest
/// connection never answered (early drop), then refuses new ones (`conntrack_full`); answered
/// connections are never let go, and keep working both ways.
#[test]
fn connections_at_their_bound() {
    let small = [
        ("in all", Limits { connections: 3, ..Limits::default() }),
        ("per router", Limits { connections_per_router: 3, ..Limits::default() }),
    ];
    for (which, limits) in small {
        let mut dp = datapath("default-snat", limits, &[]);
        let (tap, up) = (iface(&dp, "tap-vm3"), iface(&dp, "uplink0"));
        dp.process(up, &upstream_arp_request(), secs(0));
        let mut t = 1;
        let mut send = |dp: &mut Datapath, i: IfIdx, f: &[u8]| {
            t += 1;
            dp.process(i, f, secs(t));
        };
        // A is answered; B and C are not.
        send(&mut dp, tap, &out_udp(5000));
        assert_eq!(nat_port(&dp), Some(5000), "{which}");
        send(&mut dp, up, &reply_udp(5000));
        assert_eq!(sent_on(&dp), ["tap-vm3"], "{which}: A's answer reaches vm3");
        send(&mut dp, tap, &out_udp(5001));
        send(&mut dp, tap, &out_udp(5002));
        assert_eq!(dp.tables().connections, 3, "{which}");
        // D takes B's place: the oldest never answered.
        send(&mut dp, tap, &out_udp(5003));
        assert_eq!(nat_port(&dp), Some(5003), "{which}: D leaves");
        assert_eq!(dp.tables().refused.early_drops, 1, "{which}");
        assert_eq!(dp.stats().drops.get(DropReason::ConntrackFull), 0, "{which}");
        send(&mut dp, up, &reply_udp(5001));
        assert!(dp.tx().is_empty(), "{which}: B is gone, so its answer finds no mapping");
        // Once C and D are answered too, a new connection is refused and counted.
        send(&mut dp, up, &reply_udp(5002));
        send(&mut dp, up, &reply_udp(5003));
        send(&mut dp, tap, &out_udp(5004));
        assert!(dp.tx().is_empty(), "{which}: E is refused");
        assert_eq!(dp.stats().drops.get(DropReason::ConntrackFull), 1, "{which}");
        assert_eq!(dp.tables().connections, 3, "{which}");
        // The established connections are unharmed, both ways.
        for port in [5000, 5002, 5003] {
            send(&mut dp, tap, &out_udp(port));
            assert_eq!(nat_port(&dp), Some(port), "{which}: {port} still leaves");
            send(&mut dp, up, &reply_udp(port));
            assert_eq!(sent_on(&dp), ["tap-vm3"], "{which}: {port} still answered");
        }
        assert_eq!(dp.stats().drops.get(DropReason::ConntrackFull), 1, "{which}");
        assert_eq!(dp.tables().refused.early_drops, 1, "{which}");
    }
}

/// host-b's frame from `src` to vm1, over VXLAN (VNI 100, net-a) on the underlay.
fn from_host_b(src: [u8; 6], sport: u16) -> Vec<u8> {
    let mut inner = Vec::new();
    PacketBuilder::ethernet2(src, VM1).ipv4([10, 0, 0, 50], [10, 0, 0, 3], 64).udp(sport, 9).write(&mut inner, b"x").expect("inner");
    let mut payload = vec![0x08, 0, 0, 0, 0, 0, 100, 0];
    payload.extend_from_slice(&inner);
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0x0b, 1], [2, 0, 0, 0, 0x0a, 1])
        .ipv4([192, 168, 50, 2], [192, 168, 50, 1], 64)
        .udp(40000, 4789)
        .write(&mut v, &payload)
        .expect("outer");
    v
}

/// vm1's frame to `dst` on net-a.
fn to_mac(dst: [u8; 6]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(VM1, dst).ipv4([10, 0, 0, 3], [10, 0, 0, 50], 64).udp(9, 7000).write(&mut v, b"y").expect("build");
    v
}

/// host-b asks the underlay for this host's tunnel IP: this host learns where host-b is.
fn host_b_arp() -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0x0b, 1], [0xff; 6])
        .arp(
            etherparse::ArpPacket::new(
                etherparse::ArpHardwareId::ETHERNET,
                etherparse::EtherType::IPV4,
                etherparse::ArpOperation::REQUEST,
                &[2, 0, 0, 0, 0x0b, 1],
                &[192, 168, 50, 2],
                &[0; 6],
                &[192, 168, 50, 1],
            )
            .expect("arp"),
        )
        .write(&mut v)
        .expect("build");
    v
}

const MAC_A: [u8; 6] = [0x02, 0x0b, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [0x02, 0x0b, 0, 0, 0, 0xb];
const MAC_C: [u8; 6] = [0x02, 0x0b, 0, 0, 0, 0xc];

/// A network's MAC table at its bound does not learn more (counted); what it knows still goes
/// straight to its place, and the unknown is flooded.
#[test]
fn learned_macs_at_their_bound() {
    let limits = Limits { macs_per_network: 2, ..Limits::default() };
    let mut dp = datapath("mac-learning", limits, &[("ul0", "02:00:00:00:0a:01")]);
    let (tap, ul) = (iface(&dp, "tap-vm1"), iface(&dp, "ul0"));
    dp.process(ul, &host_b_arp(), secs(0));
    for (k, m) in [MAC_A, MAC_B, MAC_C].into_iter().enumerate() {
        dp.process(ul, &from_host_b(m, 1000 + k as u16), secs(1 + k as u64));
        assert_eq!(sent_on(&dp), ["tap-vm1"]);
    }
    let t = dp.tables();
    assert_eq!((t.macs, t.fullest_network_macs, t.refused.macs), (2, 2, 1));
    dp.process(tap, &to_mac(MAC_A), secs(5));
    assert_eq!(sent_on(&dp), ["ul0"], "a learned MAC is reached through its tunnel alone");
    dp.process(tap, &to_mac(MAC_C), secs(6));
    let mut flooded = sent_on(&dp);
    flooded.sort();
    assert_eq!(flooded, ["tap-vm2", "ul0"], "the MAC not learned is flooded");
}

/// A learned MAC that sends nothing for the aging time (300 s, on the packet clock) is forgotten
/// and frames to it flood again; one that keeps sending — through its cached flow — stays.
#[test]
fn learned_macs_age_on_the_packet_clock() {
    let mut dp = datapath("mac-learning", Limits::default(), &[("ul0", "02:00:00:00:0a:01")]);
    let (tap, ul) = (iface(&dp, "tap-vm1"), iface(&dp, "ul0"));
    dp.process(ul, &host_b_arp(), secs(0));
    dp.process(ul, &from_host_b(MAC_A, 1), secs(1));
    dp.process(ul, &from_host_b(MAC_B, 2), secs(1));
    // B keeps talking, on one flow: every frame after the first is a cache hit.
    let hits = dp.stats().flow_hits;
    let b_talks = |dp: &mut Datapath, from: u64, to: u64| {
        for s in (from..=to).step_by(60) {
            dp.process(ul, &from_host_b(MAC_B, 2), secs(s));
        }
    };
    b_talks(&mut dp, 61, 241);
    assert_eq!(dp.stats().flow_hits - hits, 4, "B's frames took its cached flow");
    dp.process(tap, &to_mac(MAC_A), secs(300));
    assert_eq!(sent_on(&dp), ["ul0"], "A is known until 300 s have passed");
    let flood = ["tap-vm2", "ul0"];
    let sorted = |dp: &Datapath| {
        let mut v = sent_on(dp);
        v.sort();
        v
    };
    dp.process(tap, &to_mac(MAC_A), secs(302));
    assert_eq!(sorted(&dp), flood, "A aged out: flooded");
    dp.process(tap, &to_mac(MAC_B), secs(303));
    assert_eq!(sent_on(&dp), ["ul0"], "B, whose hits kept its entry, is still known");
    assert_eq!(dp.tables().macs, 1);
    dp.process(tap, &to_mac(MAC_B), secs(540));
    assert_eq!(sent_on(&dp), ["ul0"], "B last sent at 241 s");
    dp.process(tap, &to_mac(MAC_B), secs(542));
    assert_eq!(sorted(&dp), flood, "B aged out 300 s after it last sent");
    assert_eq!(dp.tables().macs, 0);
}

/// vm3's packet to `dst` on net-a, through r1.
fn vm3_to(dst: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(VM3, R1_B).ipv4([10, 1, 0, 3], dst, 64).udp(4000, 53).write(&mut v, b"q").expect("build");
    v
}

/// At most `arp_waiting` next hops wait for ARP: the next one is dropped (`arp_waiting_full`) and
/// the waiting one still resolves; a router's ARP table at its bound learns no more (counted).
#[test]
fn arp_entries_and_waiting_at_their_bound() {
    let limits = Limits { arp_waiting: 1, arp_per_router: 1, ..Limits::default() };
    let mut dp = datapath("arp-resolution", limits, &[]);
    let (tap, up) = (iface(&dp, "tap-vm3"), iface(&dp, "uplink0"));
    dp.process(tap, &vm3_to([10, 0, 0, 99]), secs(1));
    assert_eq!(dp.tables().waiting, 1);
    dp.process(tap, &vm3_to([10, 0, 0, 98]), secs(1));
    assert_eq!(dp.stats().drops.get(DropReason::ArpWaitingFull), 1);
    assert_eq!(dp.tables().waiting, 1);
    // The upstream router answers for the edge router: its one entry.
    dp.process(up, &upstream_arp_request(), secs(2));
    assert_eq!(dp.tables().arps, 1);
    // Another neighbour on the uplink: the edge router's table is full.
    let mut other = upstream_arp_request();
    other[6..12].copy_from_slice(&[2, 0xaa, 0, 0, 0, 7]);
    other[22..28].copy_from_slice(&[2, 0xaa, 0, 0, 0, 7]);
    other[28..32].copy_from_slice(&[198, 51, 100, 7]);
    dp.process(up, &other, secs(3));
    assert_eq!(dp.tables().arps, 1);
    assert_eq!(dp.tables().refused.arps, 1);
    // Traffic through the known neighbour is unharmed.
    dp.process(tap, &vm3_to(SERVER), secs(4));
    assert_eq!(sent_on(&dp), ["uplink0"]);
}

/// l2-local: vm1 → vm2 from `sport`, one flow per port.
fn vm1_to_vm2(sport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(VM1, [0xfa, 0x16, 0x3e, 0, 0, 4])
        .ipv4([10, 0, 0, 3], [10, 0, 0, 4], 64)
        .udp(sport, 5000)
        .write(&mut v, b"z")
        .expect("build");
    v
}

/// A full flow cache lets go of its least recently used flow, not of all of them.
#[test]
fn the_flow_cache_evicts_the_least_recently_used() {
    let mut dp = datapath("l2-local", Limits { flows_per_worker: 2, ..Limits::default() }, &[]);
    let tap = iface(&dp, "tap-vm1");
    let mut t = 0;
    let mut send = |dp: &mut Datapath, sport: u16| -> bool {
        t += 1;
        let hits = dp.stats().flow_hits;
        dp.process(tap, &vm1_to_vm2(sport), Instant::from_duration(Duration::from_millis(t)));
        assert_eq!(sent_on(dp), ["tap-vm2"]);
        dp.stats().flow_hits > hits
    };
    assert!(!send(&mut dp, 1));
    assert!(!send(&mut dp, 2));
    assert!(send(&mut dp, 1), "flow 1 cached, and now the most recently used");
    assert!(!send(&mut dp, 3), "flow 3 takes flow 2's place");
    assert!(send(&mut dp, 1), "flow 1 stays");
    assert!(send(&mut dp, 3), "flow 3 stays");
    assert!(!send(&mut dp, 2), "flow 2 was evicted");
    assert_eq!(dp.flow_count(), 2);
    assert_eq!(dp.stats().flows_evicted, 2);
}
