//! A new snapshot invalidates every cached flow before the next packet uses it (SPEC §9).

use std::collections::HashMap;
use std::sync::Arc;

use datapath::{Datapath, Instant};
use edgepath_tests::repo_root;
use etherparse::PacketBuilder;

const UPSTREAM: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const EDGE_UP: [u8; 6] = [0xfa, 0x16, 0x3e, 0xbb, 0, 2];

fn topology(edit: impl Fn(&mut serde_json::Value)) -> Arc<rules::Topology> {
    let text = std::fs::read_to_string(repo_root().join("pcaps/fip-dnat-inbound/snapshot.json")).expect("snapshot");
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

    // A snapshot that binds other interfaces is refused, and the running one stays.
    let other = topology(|s| s["ports"][0]["binding:profile"]["interface_name"] = "tap-other".into());
    assert!(dp.set_topology(other).is_err());
    assert_eq!(deliver(&mut dp, 4), ("tap-vm2".to_string(), [10, 0, 0, 4]));
}
