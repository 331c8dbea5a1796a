//! Inputs the fuzzers once failed on (`fuzz/regressions/<target>/`), run on stable with the
//! tests: each must now pass the target's checks.

use std::path::Path;

fn inputs(target: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions").join(target);
    let mut v: Vec<_> = walk(&dir);
    v.sort();
    v
}

/// The files under `dir`, at any depth.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let entries = std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect::<Vec<_>>());
    entries.unwrap_or_default().into_iter().flat_map(|p| if p.is_dir() { walk(&p) } else { vec![p] }).collect()
}

/// Each `datapath` regression lies under the name of its scenario
/// (`regressions/datapath/<scenario>/<name>`): its first byte, which picks the scenario, is set
/// to that scenario's place now, so a suite added later does not point it at another one.
#[test]
fn datapath_regressions_pass() {
    let scenarios = edgepath_fuzz::scenarios();
    for p in inputs("datapath") {
        eprintln!("{}", p.display());
        let name = p.parent().and_then(|d| d.file_name()).and_then(|n| n.to_str()).unwrap_or_default();
        let k = scenarios.iter().position(|s| s.name == name).unwrap_or_else(|| panic!("{}: no scenario {name}", p.display()));
        let mut data = std::fs::read(&p).expect("read");
        if let Some(b) = data.first_mut() {
            *b = k as u8;
        }
        edgepath_fuzz::run_datapath(&data);
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
