//! SPEC §8 over time (issue 4): vm3's port limited to 10 Mbit/s (default burst: 80 % of one
//! second at the rate) is fed 30 Mbit/s of 1500-byte frames for 5 s of packet clock. Over every
//! window of a second or more, what vm6 receives stays within rate × window + depth; over the
//! 5 s it is not less than 90 % of that bound. The input (19 MB) is made here rather than kept in
//! `pcaps/`; it goes through the same replay as the suites, flow cache on.

use std::time::Duration;

use datapath::io::pcap::OUTPUT_HEADER;
use edgepath_tests::{read_pcap, replay_dir, repo_root};
use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapWriter};

const VM3: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 0x03];
const VM6: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 0x04];
const RATE: u64 = 10_000_000;
const DEPTH: u64 = RATE * 8 / 10;

#[test]
fn ten_megabits_fed_thirty_for_five_seconds() {
    let tmp = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(repo_root().join("pcaps/l2-local/snapshot.json")).expect("snapshot");
    let mut snap: serde_json::Value = serde_json::from_str(&text).expect("json");
    snap["qos_policies"] = serde_json::json!([{"id": "ten", "rules": [{"type": "bandwidth_limit", "max_kbps": 10_000}]}]);
    snap["ports"][2]["qos_policy_id"] = "ten".into();
    std::fs::write(tmp.path().join("snap.json"), snap.to_string()).expect("write");

    let mut frame = Vec::new();
    PacketBuilder::ethernet2(VM3, VM6)
        .ipv4([10, 1, 0, 3], [10, 1, 0, 4], 64)
        .udp(5000, 5001)
        .write(&mut frame, &[7u8; 1458])
        .expect("build");
    assert_eq!(frame.len(), 1500);
    let gap = Duration::from_nanos(1500 * 8 * 1_000_000_000 / (3 * RATE));
    let start = Duration::from_secs(1_767_225_600);
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let mut w = PcapWriter::with_header(std::fs::File::create(input.join("tap-vm3.pcap")).expect("create"), OUTPUT_HEADER).expect("pcap");
    let n = (5 * 3 * RATE / (1500 * 8)) as u32;
    for i in 0..n {
        w.write_packet(&PcapPacket::new(start + gap * i, 1500, &frame)).expect("write");
    }
    drop(w);

    let out = tmp.path().join("out");
    let s = replay_dir(&tmp.path().join("snap.json"), "host-a", &input, &out).expect("replay");
    let got = read_pcap(&out.join("tap-vm6.pcap"));
    assert!(got.iter().all(|(_, f)| *f == frame), "delivered unchanged");
    assert_eq!(s.stats.rx, n as u64);
    assert_eq!(s.stats.forwarded + s.stats.drops.get(datapath::DropReason::QosPoliced), n as u64);

    // Every window of at least a second that starts at a delivered frame.
    let times: Vec<u128> = got.iter().map(|(t, _)| *t).collect();
    for (i, &t0) in times.iter().enumerate() {
        for secs in 1..=5u128 {
            let end = t0 + secs * 1_000_000;
            let count = times[i..].partition_point(|&t| t < end) as u64;
            let bits = count * 1500 * 8;
            let bound = RATE * secs as u64 + DEPTH;
            assert!(bits <= bound, "{bits} bits in the {secs} s from {t0} µs, over {bound}");
        }
    }
    let total = got.len() as u64 * 1500 * 8;
    let bound = RATE * 5 + DEPTH;
    assert!(total * 10 >= bound * 9, "{total} bits delivered, less than 90 % of {bound}");
    eprintln!(
        "{n} frames fed (30 Mbit/s), {} delivered: {total} bits of a {bound}-bit bound ({:.1} %)",
        got.len(),
        total as f64 * 100.0 / bound as f64
    );
}
