//! `flood KIND N DIR`: a replay input of N new flows of one hostile kind, for `bench/flood.sh`
//! (peak memory against the table bounds). Writes `DIR/snapshot.json` and `DIR/in/*.pcap` on
//! the scenario topology of `pcaps/default-snat` (host-a):
//!
//! - `fw-syn`: TCP SYNs from vm1 (floating IP, so no NAT state) to N distinct remote ends, through
//!   r1 with a firewall that allows them: one firewall connection each;
//! - `snat`: UDP from vm3 to N distinct remote ends through r1's default SNAT: one mapping each;
//! - `mac`: VXLAN from host-b on VNI 100 (net-a) with N distinct inner source MACs: one learned
//!   MAC each.

use std::path::PathBuf;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapWriter};

fn usage() -> ! {
    eprintln!("usage: flood fw-syn|snat|mac N DIR");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, kind, n, dir] = &args[..] else { usage() };
    let n: u32 = n.parse().unwrap_or_else(|_| usage());
    let dir = PathBuf::from(dir);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut snap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo.join("pcaps/default-snat/snapshot.json")).expect("snapshot")).expect("json");
    let iface = match kind.as_str() {
        "fw-syn" => {
            snap["firewall_rules"] = serde_json::json!([{"id": "out", "action": "allow", "protocol": "tcp"}]);
            snap["firewall_policies"] = serde_json::json!([{"id": "p", "firewall_rules": ["out"]}]);
            snap["firewalls"] = serde_json::json!([{"id": "fw", "firewall_policy_id": "p", "router_ids": ["r1"]}]);
            "tap-vm1"
        }
        "snat" => "tap-vm3",
        "mac" => "ul0",
        _ => usage(),
    };
    std::fs::create_dir_all(dir.join("in")).expect("mkdir");
    std::fs::write(dir.join("snapshot.json"), snap.to_string()).expect("write snapshot");
    let header = datapath::io::pcap::OUTPUT_HEADER;
    if iface != "ul0" {
        // The upstream router asks for the edge router's uplink address first: its MAC is known.
        let up = std::fs::File::create(dir.join("in/uplink0.pcap")).expect("create");
        let mut w = PcapWriter::with_header(up, header).expect("pcap");
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0xaa, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1, 2, 0xaa, 0, 0, 0, 1, 198, 51, 100, 1]);
        arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 198, 51, 100, 2]);
        w.write_packet(&PcapPacket::new(Duration::from_secs(1_767_225_599), arp.len() as u32, &arp)).expect("write");
    }
    let file = std::fs::File::create(dir.join("in").join(format!("{iface}.pcap"))).expect("create");
    let mut w = PcapWriter::with_header(std::io::BufWriter::new(file), header).expect("pcap");
    let mut frame = Vec::with_capacity(128);
    for i in 0..n {
        frame.clear();
        // Remote ends: 192.0.2.0/24 × ports, so every flow is a new tuple.
        let (dst, dport) = ([192, 0, 2, (i % 250) as u8 + 1], 1024 + (i / 250) as u16);
        match kind.as_str() {
            "fw-syn" => PacketBuilder::ethernet2([0xfa, 0x16, 0x3e, 0, 0, 3], [0xfa, 0x16, 0x3e, 0xaa, 0, 1])
                .ipv4([10, 0, 0, 3], dst, 64)
                .tcp(40000, dport, 1, 64240)
                .syn()
                .write(&mut frame, &[]),
            "snat" => PacketBuilder::ethernet2([0xfa, 0x16, 0x3e, 0, 1, 3], [0xfa, 0x16, 0x3e, 0xaa, 0, 2])
                .ipv4([10, 1, 0, 3], dst, 64)
                .udp(40000, dport)
                .write(&mut frame, b"q"),
            _ => {
                let mut inner = Vec::new();
                let m = i.to_be_bytes();
                PacketBuilder::ethernet2([0x02, 0x0b, m[0], m[1], m[2], m[3]], [0xff; 6])
                    .ipv4([10, 0, 0, 50], [10, 0, 0, 255], 64)
                    .udp(9, 9)
                    .write(&mut inner, b"x")
                    .expect("inner");
                let mut payload = vec![0x08, 0, 0, 0, 0, 0, 100, 0];
                payload.extend_from_slice(&inner);
                PacketBuilder::ethernet2([2, 0, 0, 0, 0x0b, 1], [2, 0, 0, 0, 0, 1])
                    .ipv4([192, 168, 50, 2], [192, 168, 50, 1], 64)
                    .udp(40000 + (i % 1000) as u16, 4789)
                    .write(&mut frame, &payload)
            }
        }
        .expect("build");
        let ts = Duration::from_secs(1_767_225_600) + Duration::from_micros(i as u64 * 10);
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame)).expect("write");
    }
}
