//! Invalidation by dependency (SPEC §9, issue 14): a learned MAC or ARP entry that changes
//! invalidates the flows that read it, and no others — a busy uplink learning MACs all day
//! leaves the hit rate of unrelated flows alone.

use std::collections::HashMap;
use std::sync::Arc;

use datapath::{Datapath, IfIdx, Instant};
use edgepath_tests::repo_root;
use etherparse::PacketBuilder;

const VM2: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x04];
const R1_A: [u8; 6] = [0xfa, 0x16, 0x3e, 0xaa, 0, 1];
const R1_GW: [u8; 6] = [0xfa, 0x16, 0x3e, 0xaa, 0, 3];
/// The upstream router on ext-net (203.0.113.1), behind uplink1.
const UPSTREAM: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 1];
const UPSTREAM_IP: [u8; 4] = [203, 0, 113, 1];

fn udp(smac: [u8; 6], dmac: [u8; 6], src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(smac, dmac).ipv4(src, dst, 64).udp(sport, dport).write(&mut f, b"payload").expect("build");
    f
}

/// A broadcast ARP request from `ip` at `mac` for `target` (a gratuitous one when they are equal).
fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

/// Process `f` and tell whether it took a cached flow, with the first frame it sent.
fn hit(dp: &mut Datapath, i: IfIdx, f: &[u8], t: u64) -> (bool, Option<Vec<u8>>) {
    let hits = dp.stats().flow_hits;
    dp.process(i, f, Instant(t));
    (dp.stats().flow_hits == hits + 1, dp.tx().iter().next().map(|(_, f)| f.to_vec()))
}

/// The `arp-request-for-gw-ip` topology: ext-net is bridged to uplink1 (a `network:uplink`
/// port without port security), so every source MAC from the outside is learned there.
#[test]
fn a_learned_entry_invalidates_the_flows_that_read_it_and_no_others() {
    let text = std::fs::read_to_string(repo_root().join("pcaps/arp-request-for-gw-ip/snapshot.json")).expect("snapshot");
    let topo = Arc::new(rules::Topology::compile(rules::load_str(&text).expect("valid")).expect("compiles"));
    let mut dp = Datapath::new(topo, "host-a", &HashMap::new()).expect("datapath");
    let (tap, up) = (dp.interfaces().by_name("tap-vm2").expect("tap"), dp.interfaces().by_name("uplink1").expect("uplink"));
    // The upstream router asks for r1's gateway IP: r1 learns its ARP entry, ext-net its MAC.
    dp.process(up, &arp_request(UPSTREAM, UPSTREAM_IP, [203, 0, 113, 2]), Instant(0));
    // vm2's datagram to the Internet reads both; the answer reads the MAC it comes from.
    let out = udp(VM2, R1_A, [10, 0, 0, 4], [192, 0, 2, 50], 5000, 53);
    let (_, first) = hit(&mut dp, tap, &out, 1);
    let first = first.expect("SNATed out");
    assert_eq!(first[0..6], UPSTREAM, "to the upstream router");
    let nat = ([first[26], first[27], first[28], first[29]], u16::from_be_bytes([first[34], first[35]]));
    let answer = udp(UPSTREAM, R1_GW, [192, 0, 2, 50], nat.0, 53, nat.1);
    let (_, back) = hit(&mut dp, up, &answer, 2);
    assert_eq!(back.expect("back to vm2")[0..6], VM2);
    assert!(hit(&mut dp, tap, &out, 3).0 && hit(&mut dp, up, &answer, 3).0, "both directions cached");

    // The uplink learns 500 new MACs, one every millisecond, between the flows' packets: no
    // flow read them, so every packet of both flows still takes its flow.
    let mut t = 10_000_000;
    for k in 0..500u32 {
        let [_, a, b, c] = k.to_be_bytes();
        let stranger = [0x02, 0x5e, 0, a, b, c];
        dp.process(up, &udp(stranger, [0xff; 6], [203, 0, 113, 99], [203, 0, 113, 255], 1, 1), Instant(t));
        assert!(hit(&mut dp, tap, &out, t + 1).0, "vm2's flow after MAC {k} was learned");
        assert!(hit(&mut dp, up, &answer, t + 2).0, "the answer's flow after MAC {k} was learned");
        t += 1_000_000;
    }
    assert_eq!(dp.tables().macs, 501, "ext-net learned every one");

    // The upstream router's address moves to a new MAC: the flow that read its ARP entry is
    // simulated again and follows it; the answer's flow, which never read it, stays.
    let moved = [0x02, 0xbb, 0, 0, 0, 2];
    dp.process(up, &arp_request(moved, UPSTREAM_IP, UPSTREAM_IP), Instant(t));
    let (cached, sent) = hit(&mut dp, tap, &out, t + 1);
    assert!(!cached, "the flow that read the changed entry is stale");
    assert_eq!(sent.expect("still out")[0..6], moved, "to the router's new MAC");
    assert!(hit(&mut dp, up, &answer, t + 2).0, "the answer's flow did not read that entry");
    assert!(hit(&mut dp, tap, &out, t + 3).0, "and vm2's new flow is cached in its turn");
}
