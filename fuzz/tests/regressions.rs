//! Inputs the fuzzers once failed on (`fuzz/regressions/<target>/`), run on stable with the
//! tests: each must now pass the target's checks.

use std::path::Path;

fn inputs(target: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions").join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[test]
fn datapath_regressions_pass() {
    for p in inputs("datapath") {
        eprintln!("{}", p.display());
        edgepath_fuzz::run_datapath(&std::fs::read(&p).expect("read"));
    }
}

#[test]
fn snapshot_regressions_pass() {
    for p in inputs("snapshot") {
        eprintln!("{}", p.display());
        edgepath_fuzz::run_snapshot(&std::fs::read(&p).expect("read"));
    }
}

/// Every scenario of `pcaps/`, as the seed corpus holds it, passes the datapath target's checks:
/// cache on and off send the same bytes, what leaves has valid IPv4 and IPv6 checksums, every
/// input is counted once.
#[test]
fn every_scenario_passes_the_datapath_checks() {
    for (k, sc) in edgepath_fuzz::scenarios().iter().enumerate() {
        eprintln!("{}", sc.name);
        edgepath_fuzz::run_datapath(&edgepath_fuzz::scenario_input(k));
    }
}
