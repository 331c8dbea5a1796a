//! The operator's view (issue 16) on a live edgepath in the lab of `tools/netns-lab.sh`:
//! `/metrics` scraped during traffic, its counters moving as the traffic says, and clean by
//! `promtool check metrics` (Debian's prometheus package); `status`, `stats`, `conntrack` and
//! `flows` as JSON through a parser, with their filters; `trace --live` catching a miss and a
//! cached hit; `capture --drops` writing a pcapng tshark reads back with the reason.
//!
//! Needs root (namespaces, veth, raw sockets) and promtool; CI has both. Elsewhere it skips,
//! saying why.

use std::collections::HashMap;
use std::process::{Command, Stdio};

mod common;
use common::*;

/// A scrape of `url`: the text, and each sample's value by its name and labels as written.
fn scrape(url: &str) -> (String, HashMap<String, f64>) {
    let text = sh(&["curl", "-sf", url]).expect("scrape");
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect();
    (text, samples)
}

fn promtool(text: &str) -> Result<(), String> {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::io::Write::write_all(&mut p.stdin.take().expect("stdin"), text.as_bytes()).map_err(|e| e.to_string())?;
    let o = p.wait_with_output().map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    }
}

/// A frame from vm2 (its own MAC) with another VM's source address: port security drops it.
const SPOOF: &str = r#"
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
mac = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
udp = struct.pack("!HHHH", 4000, 5000, 8 + 4, 0) + b"spof"
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton("10.0.0.99"), socket.inet_aton("10.0.0.1"))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("eth0", 0))
s.send(b"\xff" * 6 + mac + b"\x08\x00" + ip + udp)
"#;

#[test]
fn metrics_move_as_the_traffic_says_and_promtool_passes() {
    if Command::new("promtool").arg("--version").output().is_err() || Command::new("curl").arg("--version").output().is_err() {
        return eprintln!("skipped: needs promtool (Debian's prometheus) and curl; .ci/run installs them");
    }
    let Some((lab, tmp)) = Lab::up("m") else { return };
    let tag = lab.tag.clone();
    let (ext, vm2) = (format!("{tag}-ext"), format!("{tag}-vm2"));
    let ctl = tmp.path().join("a.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
    let addr = format!("127.0.0.1:{port}");
    let run = Running::start(&tmp.path().join("snapshot.json"), "host-a", &ctl, 2, &["--metrics", &addr]);
    let url = format!("http://{addr}/metrics");
    assert!(until(10.0, || sh(&["curl", "-sf", &url]).is_ok()), "the endpoint answers");
    let ping = |n: &str| in_ns(&ext, &["ping", "-n", "-I", "192.0.2.50", "-c", n, "-i", "0.05", "-W", "1", "203.0.113.10"]);
    // Warm: the neighbours on both sides learned, the flows made.
    assert!(ping("3").is_ok(), "vm1 answers by its floating IP");
    std::thread::sleep(std::time::Duration::from_millis(300));

    let uplink = format!("{tag}up");
    let (before_text, before) = scrape(&url);
    let key = |name: &str| {
        before.keys().find(|k| k.starts_with(&format!("{name}{{interface=\"{uplink}\""))).cloned().expect("the uplink's series")
    };
    let (rx_key, tx_key, rxb_key) =
        (key("edgepath_interface_rx_packets_total"), key("edgepath_interface_tx_packets_total"), key("edgepath_interface_rx_bytes_total"));
    let spoof_key = "edgepath_drops_total{reason=\"spoofed_ip\"}".to_string();
    let ping20 = ping("20");
    let spoof = tmp.path().join("spoof.py");
    std::fs::write(&spoof, SPOOF).expect("write");
    in_ns(&vm2, &["python3", spoof.to_str().expect("utf8")]).expect("spoofed frame sent");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (after_text, after) = scrape(&url);
    let delta = |k: &String| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);

    // The operator's commands as JSON, through a JSON parser, with their filters.
    let snat = in_ns(&vm2, &["ping", "-n", "-c", "2", "-i", "0.1", "-W", "1", "192.0.2.50"]);
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json", "--control", ctl.to_str().expect("utf8")]);
        let o = Command::new(env!("CARGO_BIN_EXE_edgepath")).args(&all).output().expect("edgepath");
        assert!(o.status.success(), "{all:?}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{all:?}: not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
    };
    let status = json(&["status"]);
    let conns = json(&["conntrack", "--proto", "icmp", "--src", "10.0.0.4"]);
    let none = json(&["conntrack", "--src", "10.0.0.99"]);
    let stats = json(&["stats"]);
    let vm1_flows = json(&["flows", "--port", "vm1"]);
    let edge_flows = json(&["flows", "--router", "edge"]);
    let r1_from_vm2 = json(&["flows", "--port", "vm2", "--router", "r1"]);

    // trace --live: the next two echo requests to vm1's floating IP, cached hits (the flow and
    // its actions); capture --drops: the next spoofed_ip drop, into a pcapng tshark reads.
    let edgepath = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--control", ctl.to_str().expect("utf8")]);
        Command::new(env!("CARGO_BIN_EXE_edgepath")).args(all).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("edgepath")
    };
    // (One ping process: its echo requests are one flow, the first a miss, the rest hits.)
    let tracer =
        edgepath(&["trace", "--live", "--in", &uplink, "--proto", "icmp", "--dst", "203.0.113.10", "--count", "2", "--timeout", "20"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let busy = edgepath(&["capture", "--drops", "--count", "1", "-w", "/dev/null", "--timeout", "2"]).wait_with_output().expect("capture");
    let _ = ping("4");
    let traced = tracer.wait_with_output().expect("trace");
    let pcap = tmp.path().join("drops.pcapng");
    let capture =
        edgepath(&["capture", "--drops", "--reason", "spoofed_ip", "--count", "1", "-w", pcap.to_str().expect("utf8"), "--timeout", "20"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    in_ns(&vm2, &["python3", spoof.to_str().expect("utf8")]).expect("spoofed frame sent");
    let captured = capture.wait_with_output().expect("capture");
    let (stopped, _, stderr) = run.stop();
    let trace_text = String::from_utf8_lossy(&traced.stdout).into_owned();
    assert!(traced.status.success(), "{trace_text}{}", String::from_utf8_lossy(&traced.stderr));
    assert_eq!(trace_text.lines().filter(|l| l.starts_with(&format!("packet on {uplink}: "))).count(), 2, "two packets: {trace_text}");
    assert_eq!(
        trace_text.lines().filter(|l| l.contains("not cached: the simulation")).count(),
        1,
        "the first, a miss, walked: {trace_text}"
    );
    assert!(trace_text.contains("PREROUTING 1 float DNAT 203.0.113.10 → 10.0.0.3"), "the walk names the rule: {trace_text}");
    assert_eq!(
        trace_text.lines().filter(|l| l.contains("cached flow: in ") && l.contains(" actions=")).count(),
        1,
        "the second, a hit, with its flow: {trace_text}"
    );
    let busy_err = String::from_utf8_lossy(&busy.stderr);
    assert!(!busy.status.success() && busy_err.contains("one at a time"), "a second tap user is refused: {busy_err}");
    assert!(captured.status.success(), "{}", String::from_utf8_lossy(&captured.stderr));
    let read =
        Command::new("tshark").args(["-r", pcap.to_str().expect("utf8"), "-T", "fields", "-e", "frame.comment", "-e", "ip.src"]).output();
    match read {
        Ok(o) => {
            let fields = String::from_utf8_lossy(&o.stdout).into_owned();
            assert_eq!(fields.lines().count(), 1, "one frame: {fields}");
            assert!(
                fields.starts_with("edgepath drop: spoofed_ip (") && fields.trim_end().ends_with("\t10.0.0.99"),
                "its reason and the spoofed source: {fields}"
            );
        }
        Err(_) => panic!("tshark missing (Debian's tshark; .ci/run installs it)"),
    }

    assert!(snat.is_ok(), "vm2 reaches the external host by default SNAT: {snat:?}");
    assert_eq!((status["host"].as_str(), status["version"].as_u64()), (Some("host-a"), Some(1)), "{status}");
    assert!(
        status["ports"].as_array().is_some_and(|p| p.iter().any(|p| p["port"] == "vm1" && p["state"] == "up" && p["ifindex"].is_u64())),
        "{status}"
    );
    let c = conns.as_array().and_then(|c| c.first()).unwrap_or_else(|| panic!("vm2's echo mapping: {conns}"));
    assert_eq!((c["table"].as_str(), c["proto"].as_str(), c["dst"].as_str()), (Some("nat"), Some("icmp"), Some("192.0.2.50")), "{c}");
    assert_eq!((c["router"].as_str(), c["reply"]["dst"].as_str()), (Some("r1"), Some("203.0.113.2")), "translated to r1's address: {c}");
    assert!(c["idle_s"].is_f64() && c["kind"].is_string(), "{c}");
    assert_eq!(none, serde_json::json!([]), "the filter leaves out what does not match");
    assert!(stats["rx"].as_u64() > Some(40) && stats["drops"]["spoofed_ip"] == 1, "{stats}");
    assert!(
        stats["interfaces"].as_array().is_some_and(|i| i.iter().any(|i| i["interface"] == uplink && i["rx_bytes"].as_u64() > Some(0))),
        "{stats}"
    );
    let vm1_tap = format!("{tag}v1");
    assert!(
        vm1_flows.as_array().is_some_and(|f| !f.is_empty()
            && f.iter().all(|f| f["in"] == vm1_tap || f["outputs"].as_array().is_some_and(|o| o.iter().any(|o| o == &vm1_tap)))),
        "vm1's flows, and only those: {vm1_flows}"
    );
    assert!(vm1_flows.as_array().is_some_and(|f| f.iter().any(|f| f["hits"].as_u64() > Some(0) && f["worker"].is_u64())), "{vm1_flows}");
    assert!(
        edge_flows.as_array().is_some_and(|f| f.iter().any(|f| f["in"] == uplink)),
        "the pings enter the edge router from the uplink: {edge_flows}"
    );
    assert!(
        r1_from_vm2.as_array().is_some_and(|f| !f.is_empty() && f.iter().all(|f| f["in"] == format!("{tag}v2"))),
        "vm2's SNAT flows enter r1: {r1_from_vm2}"
    );

    assert!(ping20.as_ref().is_ok_and(|o| o.contains("20 received")), "{ping20:?}");
    assert_eq!(delta(&rx_key), 20.0, "20 echo requests in by the uplink: {rx_key}");
    assert_eq!(delta(&tx_key), 20.0, "20 echo replies out by it: {tx_key}");
    assert_eq!(delta(&rxb_key), 20.0 * 98.0, "each 98 bytes on the wire (14 + 20 + 8 + 56)");
    assert_eq!(delta(&spoof_key), 1.0, "the spoofed frame is one spoofed_ip drop");
    assert!(delta(&"edgepath_flow_cache_hits_total".to_string()) >= 38.0, "the pings took cached flows");
    assert!(after.keys().any(|k| k.starts_with("edgepath_port_up{") && k.contains(&format!("interface=\"{uplink}\""))));
    assert_eq!(after.get("edgepath_snapshot_version"), Some(&1.0));
    for text in [&before_text, &after_text] {
        assert!(promtool(text).is_ok(), "promtool check metrics: {:?}", promtool(text));
        for name in [
            "edgepath_flows{worker=\"1\"}",
            "edgepath_worker_packets_total{worker=\"0\"}",
            "edgepath_worker_batch_size{worker=\"0\"}",
            "edgepath_table_entries{table=\"connections\"}",
            "edgepath_table_limit{table=\"flows_per_worker\"}",
            "edgepath_fw_log_lines_dropped_total",
        ] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{name} in:\n{text}");
        }
    }
    assert!(stopped, "{stderr}");
    drop(lab);
}
