//! SNAT port exhaustion through the whole datapath (SPEC §6.1), as the kernel oracle
//! `snat-exhaustion-ext-side.pcap` shows Linux doing: three UDP flows to one destination through
//! a two-port pool — two leave, the third is dropped and counted, live mappings are not reused;
//! another destination still gets ports.

use std::collections::HashMap;
use std::sync::Arc;

use datapath::ct::ConnTable;
use datapath::{Datapath, DropReason, Instant};
use edgepath_tests::{repo_root, upstream_arp_request};
use etherparse::PacketBuilder;

const VM3: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 0x03];
const R1_B: [u8; 6] = [0xfa, 0x16, 0x3e, 0xaa, 0, 2];

fn udp(sport: u16, dst: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(VM3, R1_B).ipv4([10, 1, 0, 3], dst, 64).udp(sport, 53).write(&mut v, b"q").expect("build");
    v
}

/// The translated source port of what left on the uplink.
fn sent_sport(dp: &Datapath) -> Option<u16> {
    let (_, f) = dp.tx().iter().next()?;
    Some(u16::from_be_bytes([f[34], f[35]]))
}

#[test]
fn a_full_pool_drops_new_connections_and_keeps_live_ones() {
    let topo = rules::load_topology(&repo_root().join("pcaps/default-snat/snapshot.json")).expect("snapshot");
    let mut dp =
        Datapath::new(Arc::new(topo), "host-a", &HashMap::new()).expect("datapath").with_conn_table(ConnTable::with_pool((2000, 2001)));
    let (tap, up) = (dp.interfaces().by_name("tap-vm3").expect("tap"), dp.interfaces().by_name("uplink0").expect("uplink"));
    dp.process(up, &upstream_arp_request(), Instant(0));
    let t = |s: u64| Instant(s * 1_000_000_000);

    dp.process(tap, &udp(5000, [192, 0, 2, 50]), t(1));
    assert_eq!(sent_sport(&dp), Some(2000));
    dp.process(tap, &udp(5001, [192, 0, 2, 50]), t(2));
    assert_eq!(sent_sport(&dp), Some(2001));
    dp.process(tap, &udp(5002, [192, 0, 2, 50]), t(3));
    assert!(dp.tx().is_empty(), "the third connection finds no port");
    assert_eq!(dp.stats().drops.get(DropReason::SnatPortsExhausted), 1);
    // The live mappings still work, from their cached flows.
    dp.process(tap, &udp(5000, [192, 0, 2, 50]), t(4));
    assert_eq!(sent_sport(&dp), Some(2000));
    // Another destination has its own ports.
    dp.process(tap, &udp(5002, [192, 0, 2, 51]), t(5));
    assert_eq!(sent_sport(&dp), Some(2000));
    // Once the first two expire (UDP: 300 s), the third connection gets a port.
    dp.process(tap, &udp(5002, [192, 0, 2, 50]), t(400));
    assert_eq!(sent_sport(&dp), Some(2000));
    assert_eq!(dp.stats().drops.get(DropReason::SnatPortsExhausted), 1);
}

/// Issue 10: a used-up pool costs a new connection no more than a free one. 70 000 new flows to
/// one destination (64 512 get a port, the rest are refused) take about as long as 64 000:
/// before port sets, every refused flow probed all 64 512 ports (2–3 ms each, minutes in all).
#[test]
fn exhaustion_costs_no_more_than_allocation() {
    const VM6: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 0x04];
    let topo = Arc::new(rules::load_topology(&repo_root().join("pcaps/default-snat/snapshot.json")).expect("snapshot"));
    let run = |flows: u32| {
        let mut dp = Datapath::new(topo.clone(), "host-a", &HashMap::new()).expect("datapath");
        let (tap3, tap6, up) = (
            dp.interfaces().by_name("tap-vm3").expect("tap"),
            dp.interfaces().by_name("tap-vm6").expect("tap"),
            dp.interfaces().by_name("uplink0").expect("uplink"),
        );
        dp.process(up, &upstream_arp_request(), Instant(0));
        // Two VMs, so that there are more source ports than the pool has.
        let frames: Vec<_> = (0..flows)
            .map(|i| {
                let (mac, ip, tap) = if i % 2 == 0 { (VM3, [10, 1, 0, 3], tap3) } else { (VM6, [10, 1, 0, 4], tap6) };
                let mut v = Vec::new();
                PacketBuilder::ethernet2(mac, R1_B)
                    .ipv4(ip, [192, 0, 2, 50], 64)
                    .udp(1 + (i / 2) as u16, 53)
                    .write(&mut v, b"q")
                    .expect("build");
                (tap, v)
            })
            .collect();
        let start = std::time::Instant::now();
        for (k, (tap, f)) in frames.iter().enumerate() {
            dp.process(*tap, f, Instant(1_000 + k as u64));
        }
        (start.elapsed(), dp.stats().forwarded, dp.stats().drops.get(DropReason::SnatPortsExhausted))
    };
    let (t64, fwd64, ex64) = run(64_000);
    let (t70, fwd70, ex70) = run(70_000);
    assert_eq!((fwd64, ex64), (64_000, 0));
    assert_eq!((fwd70, ex70), (64_512, 70_000 - 64_512), "the pool is 1024–65535");
    assert!(t70 < t64 * 3, "70 000 flows took {t70:?}, 64 000 took {t64:?}");
}
