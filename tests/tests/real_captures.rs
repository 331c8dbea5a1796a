//! Every frame of the public captures in `../shared/pcaps/external/` (and the Ethernet captures
//! of `kernel-oracle/`) replays through edgepath on each kind of bound interface — a VM port, the
//! underlay, an uplink router port — without a panic, and the summary adds up: every input frame
//! is forwarded, handled, or counted under a drop reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use datapath::io::pcap::{replay, ReplayConfig, ReplayError, OUTPUT_HEADER};
use edgepath_tests::{read_pcap, repo_root};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{Endianness, TsResolution};

fn shared_pcaps() -> Option<PathBuf> {
    let p = repo_root().parent()?.join("shared/pcaps");
    p.join("MANIFEST.tsv").exists().then_some(p)
}

fn captures(sub: &str) -> Vec<PathBuf> {
    let Some(root) = shared_pcaps() else { return Vec::new() };
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join(sub))
        .expect("captures")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    v.sort();
    v
}

/// The base topology of the scenario suite: it binds tap-vm1 (a VM port with port security),
/// ul0 (the underlay) and uplink0 (an edge router's uplink port) on host-a.
fn snapshot() -> PathBuf {
    repo_root().join("pcaps/l2-local/snapshot.json")
}

fn replay_as(capture: &Path, iface: &str) -> Result<datapath::io::pcap::ReplaySummary, ReplayError> {
    let input = tempfile::tempdir().expect("tmp");
    let out = tempfile::tempdir().expect("tmp");
    std::fs::copy(capture, input.path().join(format!("{iface}.pcap"))).expect("copy");
    replay(&ReplayConfig {
        snapshot: snapshot(),
        host: "host-a".into(),
        in_dir: input.path().to_path_buf(),
        out_dir: out.path().to_path_buf(),
        log_dir: None,
        threads: 1,
        macs: HashMap::new(),
        flow_cache: true,
    })
}

fn check_all(sub: &str) -> usize {
    let files = captures(sub);
    let mut frames = 0;
    for cap in &files {
        let n = read_pcap(cap).len() as u64;
        for iface in ["tap-vm1", "ul0", "uplink0"] {
            let s = replay_as(cap, iface).unwrap_or_else(|e| panic!("{} on {iface}: {e}", cap.display()));
            let st = &s.stats;
            assert_eq!(st.rx, n, "{} on {iface}: every frame read", cap.display());
            assert_eq!(
                st.rx,
                st.forwarded + st.handled + st.drops.total(),
                "{} on {iface}: the summary adds up\n{}",
                cap.display(),
                s.render()
            );
        }
        frames += n as usize;
    }
    frames
}

#[test]
fn public_captures_replay_and_add_up() {
    if shared_pcaps().is_none() {
        eprintln!("skipped: ../shared/pcaps is not beside the repository");
        return;
    }
    let frames = check_all("external");
    assert!(frames > 250, "read {frames} frames");
}

#[test]
fn kernel_oracle_captures_replay_and_add_up() {
    if shared_pcaps().is_none() {
        eprintln!("skipped: ../shared/pcaps is not beside the repository");
        return;
    }
    for cap in captures("kernel-oracle") {
        let n = read_pcap(&cap).len() as u64;
        match replay_as(&cap, "uplink0") {
            Ok(s) => {
                assert_eq!(s.stats.rx, n);
                assert_eq!(s.stats.rx, s.stats.forwarded + s.stats.handled + s.stats.drops.total(), "{}", cap.display());
            }
            // The NFLOG capture is not Ethernet: refused with one clear line.
            Err(e @ ReplayError::LinkType(..)) => assert!(e.to_string().contains("is not Ethernet"), "{e}"),
            Err(e) => panic!("{}: {e}", cap.display()),
        }
    }
}

/// The same frames in a big-endian pcap give the same result.
#[test]
fn big_endian_pcaps_read_the_same() {
    let Some(root) = shared_pcaps() else {
        eprintln!("skipped: ../shared/pcaps is not beside the repository");
        return;
    };
    let cap = root.join("external/zeek-icmp-dot1q.pcap");
    let tmp = tempfile::tempdir().expect("tmp");
    let be = tmp.path().join("be.pcap");
    let header = PcapHeader { ts_resolution: TsResolution::NanoSecond, endianness: Endianness::Big, ..OUTPUT_HEADER };
    let mut w = PcapWriter::with_header(std::fs::File::create(&be).expect("create"), header).expect("header");
    for (t, f) in read_pcap(&cap) {
        w.write_packet(&PcapPacket::new(std::time::Duration::from_micros(t as u64), f.len() as u32, &f)).expect("write");
    }
    drop(w);
    assert_eq!(&std::fs::read(&be).expect("read")[..4], &[0xa1, 0xb2, 0x3c, 0x4d], "a big-endian nanosecond pcap");
    let a = replay_as(&cap, "uplink0").expect("le");
    let b = replay_as(&be, "uplink0").expect("be");
    assert_eq!(a.stats.rx, b.stats.rx);
    assert_eq!(a.stats.drops, b.stats.drops);
    assert_eq!(a.stats.tx, b.stats.tx);
}
