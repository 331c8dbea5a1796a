//! State kept across a restart (issue 10 item 8, `persist.rs`): what one datapath saves, the next
//! puts back where its rules still exist, as a reload would carry it.

use std::collections::HashMap;
use std::sync::Arc;

use datapath::{Datapath, DropReason, Instant};
use edgepath_tests::{repo_root, upstream_arp_request, UPSTREAM_MAC};
use etherparse::PacketBuilder;

const VM3: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 0x03];
const VM6: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 0x04];
const R1_B: [u8; 6] = [0xfa, 0x16, 0x3e, 0xaa, 0, 2];
const EDGE_UP: [u8; 6] = [0xfa, 0x16, 0x3e, 0xbb, 0, 2];

fn snapshot(edit: impl Fn(&mut serde_json::Value)) -> Arc<rules::Topology> {
    let text = std::fs::read_to_string(repo_root().join("pcaps/default-snat/snapshot.json")).expect("read");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    edit(&mut v);
    let snap = rules::load_str(&v.to_string()).expect("valid");
    Arc::new(rules::Topology::compile(snap).expect("compiles"))
}

fn out_udp(mac: [u8; 6], ip: [u8; 4], sport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac, R1_B).ipv4(ip, [192, 0, 2, 50], 64).udp(sport, 53).write(&mut v, b"q").expect("build");
    v
}

fn reply_udp(port: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(UPSTREAM_MAC, EDGE_UP)
        .ipv4([192, 0, 2, 50], [203, 0, 113, 2], 60)
        .udp(53, port)
        .write(&mut v, b"a")
        .expect("build");
    v
}

fn sent_on(dp: &Datapath) -> Vec<String> {
    dp.tx().iter().map(|(i, _)| dp.interfaces().get(i).name.clone()).collect()
}

/// vm3 and vm6 both send from port 5000: vm6's mapping is gw-ip:5001. Saved and put back, the
/// answer to 5001 still reaches vm6 — a fresh table would map vm6's next packet to 5000 and
/// drop the answer — and the upstream router's ARP entry is known without asking again.
#[test]
fn a_restart_keeps_mappings_and_learned_entries() {
    let topo = snapshot(|_| {});
    let mut before = Datapath::new(topo.clone(), "host-a", &HashMap::new()).expect("datapath");
    let iface = |dp: &Datapath, n: &str| dp.interfaces().by_name(n).expect(n);
    let (tap3, tap6, up) = (iface(&before, "tap-vm3"), iface(&before, "tap-vm6"), iface(&before, "uplink0"));
    before.process(up, &upstream_arp_request(), Instant(1));
    before.process(tap3, &out_udp(VM3, [10, 1, 0, 3], 5000), Instant(2));
    before.process(tap6, &out_udp(VM6, [10, 1, 0, 4], 5000), Instant(3));
    let saved = before.shared().save_state();

    let mut after = Datapath::new(topo.clone(), "host-a", &HashMap::new()).expect("datapath");
    let r = after.shared().restore_state(&saved).expect("restore");
    assert_eq!(r.connections, (2, 2));
    assert_eq!(r.arp, (1, 1));
    after.process(up, &reply_udp(5001), Instant(4));
    assert_eq!(sent_on(&after), ["tap-vm6"], "vm6's mapping came back");
    after.process(tap3, &out_udp(VM3, [10, 1, 0, 3], 6000), Instant(5));
    assert_eq!(sent_on(&after), ["uplink0"], "the upstream's MAC is known: nothing waits for ARP");

    // Without the saved state, the same answer finds no mapping.
    let mut fresh = Datapath::new(topo, "host-a", &HashMap::new()).expect("datapath");
    fresh.process(up, &upstream_arp_request(), Instant(1));
    fresh.process(up, &reply_udp(5001), Instant(4));
    assert!(fresh.tx().is_empty());
    assert_eq!(fresh.stats().drops.get(DropReason::ToRouterUnhandled), 1);
}

/// A mapping whose rule is gone is not put back: here the router's SNAT is turned off.
#[test]
fn a_restart_lets_go_of_what_the_new_rules_do_not_keep() {
    let topo = snapshot(|_| {});
    let mut before = Datapath::new(topo, "host-a", &HashMap::new()).expect("datapath");
    let (tap3, up) = (before.interfaces().by_name("tap-vm3").expect("tap"), before.interfaces().by_name("uplink0").expect("up"));
    before.process(up, &upstream_arp_request(), Instant(1));
    before.process(tap3, &out_udp(VM3, [10, 1, 0, 3], 5000), Instant(2));
    let saved = before.shared().save_state();
    let no_snat = snapshot(|v| v["routers"][0]["external_gateway_info"]["enable_snat"] = false.into());
    let after = Datapath::new(no_snat, "host-a", &HashMap::new()).expect("datapath");
    let r = after.shared().restore_state(&saved).expect("restore");
    assert_eq!(r.connections, (0, 1));
    assert_eq!(r.arp, (1, 1), "the uplink's port remains, and so does its ARP entry");
    assert!(after.shared().restore_state("{\"format\": 9}").is_err());
}
