//! Fixtures for the criterion benches: datapaths built from the scenario snapshots, and frames.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use datapath::{Datapath, IfIdx, Instant};
use etherparse::PacketBuilder;
use rules::model::Mac;

pub const SEC: u64 = 1_000_000_000;

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

/// An Ethernet/IPv4/UDP frame with a 64-byte payload.
pub fn udp(smac: [u8; 6], dmac: [u8; 6], src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac, dmac).ipv4(src, dst, 64).udp(sport, dport).write(&mut v, &[0x5a; 64]).expect("build");
    v
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
