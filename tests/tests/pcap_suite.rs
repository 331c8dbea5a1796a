//! Every scenario of `pcaps/` replays to exactly its expected frames and drop counters, with the
//! flow cache on and off; and the committed suite is what the generator writes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use datapath::io::pcap::{replay, ReplayConfig, ReplaySummary};
use edgepath_tests::{frame_diff, pcaps_in, read_pcap, repo_root};
use rules::model::Mac;

fn cases() -> Vec<PathBuf> {
    let root = repo_root().join("pcaps");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("pcaps/")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("snapshot.json").exists())
        .collect();
    v.sort();
    assert!(v.len() >= 20, "the suite has {} cases", v.len());
    v
}

fn run_case(dir: &Path, out: &Path, flow_cache: bool) -> ReplaySummary {
    run_case_threads(dir, out, flow_cache, 1)
}

fn run_case_threads(dir: &Path, out: &Path, flow_cache: bool, threads: usize) -> ReplaySummary {
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).expect("case.json")).expect("json");
    let macs: HashMap<String, Mac> = meta["macs"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().expect("mac").parse().expect("mac"))).collect())
        .unwrap_or_default();
    let cfg = ReplayConfig {
        snapshot: dir.join("snapshot.json"),
        host: meta["host"].as_str().expect("host").to_string(),
        in_dir: dir.join("in"),
        out_dir: out.to_path_buf(),
        log_dir: Some(out.join("logs")),
        threads,
        macs,
        flow_cache,
        limits: datapath::limits::Limits {
            fip64_pool: meta["fip64_pool"].as_u64().map_or(datapath::limits::Limits::default().fip64_pool, |n| n as u32),
            ..Default::default()
        },
    };
    replay(&cfg).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn expected_drops(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(dir.join("expected/drops.txt"))
        .expect("drops.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (r, n) = l.split_once(' ').expect("reason count");
            (r.to_string(), n.parse().expect("count"))
        })
        .collect()
}

/// Compare one run with the case's expectations; an empty string when they agree.
fn check(dir: &Path, out: &Path, s: &ReplaySummary) -> String {
    let mut problems = String::new();
    let expected_dir = dir.join("expected");
    let mut names = pcaps_in(&expected_dir);
    for n in pcaps_in(out) {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    for n in names {
        let e = if expected_dir.join(&n).exists() { read_pcap(&expected_dir.join(&n)) } else { Vec::new() };
        let g = if out.join(&n).exists() { read_pcap(&out.join(&n)) } else { Vec::new() };
        if e != g {
            problems.push_str(&format!("{n}:\n{}", frame_diff(&e, &g)));
        }
    }
    // Firewall logs: exactly the expected files, line for line.
    let logs = |dir: &Path| -> BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .map(|p| {
                        (p.file_name().unwrap_or_default().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (want_logs, got_logs) = (logs(&expected_dir), logs(&out.join("logs")));
    if want_logs != got_logs {
        problems.push_str(&format!("firewall logs differ:\n expected {want_logs:#?}\n got {got_logs:#?}\n"));
    }
    let got: BTreeMap<String, u64> = s.stats.drops.nonzero().map(|(r, n)| (r.name().to_string(), n)).collect();
    let want = expected_drops(dir);
    if got != want {
        problems.push_str(&format!("drops: expected {want:?}, got {got:?}\n"));
    }
    let st = &s.stats;
    if st.rx != st.forwarded + st.handled + st.drops.total() {
        problems.push_str(&format!("summary does not add up:\n{}", s.render()));
    }
    problems
}

#[test]
fn every_case_matches_its_expected_output() {
    let mut failures = String::new();
    for dir in cases() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = run_case(&dir, tmp.path(), true);
        let p = check(&dir, tmp.path(), &s);
        if !p.is_empty() {
            failures.push_str(&format!("\n=== {} ===\n{p}", dir.file_name().unwrap_or_default().to_string_lossy()));
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

/// SPEC §4: with four workers the output is the same — here, byte for byte, since frames are
/// written in input order — and the workers do apply the cached flows they are given.
#[test]
fn every_case_matches_with_four_threads() {
    let mut failures = String::new();
    let mut applied = 0;
    for dir in cases() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = run_case_threads(&dir, tmp.path(), true, 4);
        assert_eq!(s.workers.len(), 4);
        applied += s.workers.iter().sum::<u64>();
        let p = check(&dir, tmp.path(), &s);
        if !p.is_empty() {
            failures.push_str(&format!("\n=== {} (4 threads) ===\n{p}", dir.file_name().unwrap_or_default().to_string_lossy()));
        }
    }
    assert!(failures.is_empty(), "{failures}");
    assert!(applied > 0, "workers applied {applied} cached frames");
}

/// Many flows over four workers: spread by flow hash over several of them, and the output is the
/// same bytes as with one worker.
#[test]
fn four_threads_spread_flows_and_keep_the_output() {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let mut w =
        PcapWriter::with_header(std::fs::File::create(input.join("tap-vm1.pcap")).expect("create"), datapath::io::pcap::OUTPUT_HEADER)
            .expect("pcap");
    for i in 0..2000u32 {
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([0xfa, 0x16, 0x3e, 0, 0, 3], [0xfa, 0x16, 0x3e, 0, 0, 4])
            .ipv4([10, 0, 0, 3], [10, 0, 0, 4], 64)
            .udp(4000 + (i % 16) as u16, 5000)
            .write(&mut f, &i.to_be_bytes())
            .expect("build");
        w.write_packet(&PcapPacket::new(std::time::Duration::from_micros(1_767_225_600_000_000 + i as u64 * 100), f.len() as u32, &f))
            .expect("write");
    }
    drop(w);
    let snap = repo_root().join("pcaps/l2-local/snapshot.json");
    let run = |threads: usize, out: &Path| {
        replay(&ReplayConfig {
            snapshot: snap.clone(),
            host: "host-a".into(),
            in_dir: input.clone(),
            out_dir: out.to_path_buf(),
            log_dir: None,
            threads,
            macs: HashMap::new(),
            flow_cache: true,
            limits: Default::default(),
        })
        .expect("replay")
    };
    let (one, four) = (tmp.path().join("one"), tmp.path().join("four"));
    let (s1, s4) = (run(1, &one), run(4, &four));
    assert_eq!(std::fs::read(one.join("tap-vm2.pcap")).expect("one"), std::fs::read(four.join("tap-vm2.pcap")).expect("four"));
    assert_eq!(s1.stats.forwarded, 2000);
    assert_eq!(s4.stats.forwarded, 2000);
    assert_eq!(s4.workers.iter().sum::<u64>(), 2000 - 16, "every hit of the 16 flows went to a worker");
    assert!(s4.workers.iter().filter(|&&n| n > 0).count() >= 2, "flows spread over workers: {:?}", s4.workers);
}

#[test]
fn flow_cache_on_and_off_give_identical_output() {
    for dir in cases() {
        let (a, b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let on = run_case(&dir, a.path(), true);
        let off = run_case(&dir, b.path(), false);
        assert_eq!(off.stats.flow_hits, 0);
        let (na, nb) = (pcaps_in(a.path()), pcaps_in(b.path()));
        assert_eq!(na, nb, "{}", dir.display());
        for n in na {
            assert_eq!(std::fs::read(a.path().join(&n)).expect("a"), std::fs::read(b.path().join(&n)).expect("b"), "{} {n}", dir.display());
        }
        assert_eq!(on.stats.drops, off.stats.drops, "{}", dir.display());
    }
}

#[test]
fn the_cache_is_used() {
    let dir = repo_root().join("pcaps/l2-local");
    let tmp = tempfile::tempdir().expect("tmp");
    let s = run_case(&dir, tmp.path(), true);
    assert_eq!(s.stats.flow_hits, 1, "the second identical packet hits the flow");
}

/// IPv6 flows are cached like IPv4 ones (SPEC §10.2): of seven packets in three flows, four hit.
#[test]
fn ipv6_flows_are_cached() {
    let dir = repo_root().join("pcaps/ipv6-flows");
    let tmp = tempfile::tempdir().expect("tmp");
    let s = run_case(&dir, tmp.path(), true);
    assert_eq!((s.stats.flow_hits, s.stats.flow_misses), (4, 3), "every packet after a flow's first hits it");
}

/// fip64 translation is cached both ways (SPEC §11): of three packets in each of five flows,
/// the last two hit (the NS before them is no flow).
#[test]
fn fip64_flows_are_cached() {
    let dir = repo_root().join("pcaps/fip64-flows");
    let tmp = tempfile::tempdir().expect("tmp");
    let s = run_case(&dir, tmp.path(), true);
    assert_eq!((s.stats.flow_hits, s.stats.flow_misses), (10, 6), "every packet after a flow's first hits it");
    // Replay takes frames in batches, as live mode does (issue 14): IPv6 becoming 20 bytes
    // shorter and IPv4 becoming 20 bytes longer both fit where the frame was received.
    assert_eq!(s.stats.hits_in_place, 10, "every hit applied in place");
}

#[test]
fn suite_is_up_to_date_with_its_generator() {
    let tmp = tempfile::tempdir().expect("tmp");
    pcapgen::write_all(tmp.path());
    for dir in cases() {
        let name = dir.file_name().expect("name");
        let logs: Vec<String> = std::fs::read_dir(dir.join("expected"))
            .expect("expected/")
            .filter_map(|e| e.ok())
            .map(|e| format!("expected/{}", e.file_name().to_string_lossy()))
            .filter(|n| n.ends_with(".log"))
            .collect();
        for sub in ["snapshot.json", "case.json", "expected/drops.txt"].iter().map(|s| s.to_string()).chain(logs) {
            assert_eq!(
                std::fs::read(dir.join(&sub)).expect("committed"),
                std::fs::read(tmp.path().join(name).join(&sub)).expect("generated"),
                "{}/{sub} differs from the generator's: run `cargo run -p pcapgen -- pcaps`",
                dir.display()
            );
        }
        for sub in ["in", "expected"] {
            for n in pcaps_in(&dir.join(sub)) {
                assert_eq!(
                    std::fs::read(dir.join(sub).join(&n)).expect("committed"),
                    std::fs::read(tmp.path().join(name).join(sub).join(&n)).expect("generated"),
                    "{}/{sub}/{n} differs from the generator's",
                    dir.display()
                );
            }
        }
    }
}

/// SPEC §4 (issue 10): every input is exactly one of forwarded, handled or dropped — also for an
/// input replayed alone, where a flooded frame's copies that wait for ARP are all that is left of
/// it (the hw-vtep case's `tap-vm3.pcap` alone once counted 2 in, 0 forwarded, 3 dropped).
#[test]
fn each_input_alone_adds_up() {
    let mut failures = String::new();
    let mut inputs = 0;
    for dir in cases() {
        for name in pcaps_in(&dir.join("in")) {
            let alone = tempfile::tempdir().expect("tmp");
            let case = alone.path().join("case");
            std::fs::create_dir_all(case.join("in")).expect("mkdir");
            for f in ["snapshot.json", "case.json"] {
                std::fs::copy(dir.join(f), case.join(f)).expect("copy");
            }
            std::fs::copy(dir.join("in").join(&name), case.join("in").join(&name)).expect("copy");
            for cache in [true, false] {
                let out = alone.path().join(format!("out-{cache}"));
                let s = run_case(&case, &out, cache);
                let st = &s.stats;
                if st.rx != st.forwarded + st.handled + st.drops.total() {
                    failures.push_str(&format!("\n=== {} {name} (cache {cache}) ===\n{}", dir.display(), s.render()));
                }
            }
            inputs += 1;
        }
    }
    assert!(inputs > 30, "{inputs} inputs");
    assert!(failures.is_empty(), "{failures}");
}
