//! Helpers shared by the workspace integration tests: reading pcaps and printing frames.

use std::path::{Path, PathBuf};

use pcap_file::pcap::PcapReader;

/// The upstream router of the scenario snapshots (198.51.100.1 on the uplink).
pub const UPSTREAM_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];

/// The upstream router asking for the edge router's uplink address (198.51.100.2): a broadcast
/// ARP request the edge router learns the upstream router's MAC from.
pub fn upstream_arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&UPSTREAM_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&UPSTREAM_MAC);
    f.extend_from_slice(&[198, 51, 100, 1]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[198, 51, 100, 2]);
    f
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repository").to_path_buf()
}

/// `(timestamp in µs, frame)` for every packet of a pcap file.
pub fn read_pcap(path: &Path) -> Vec<(u128, Vec<u8>)> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = PcapReader::new(f).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push((p.timestamp.as_micros(), p.data.into_owned()));
    }
    out
}

/// Replay `input` as `host` of `snapshot` into `out`, with the flow cache, one worker, default
/// MACs and no logs.
pub fn replay_dir(
    snapshot: &Path,
    host: &str,
    input: &Path,
    out: &Path,
) -> Result<datapath::io::pcap::ReplaySummary, datapath::io::pcap::ReplayError> {
    datapath::io::pcap::replay(&datapath::io::pcap::ReplayConfig {
        snapshot: snapshot.to_path_buf(),
        host: host.to_string(),
        in_dir: input.to_path_buf(),
        out_dir: out.to_path_buf(),
        log_dir: None,
        threads: 1,
        macs: std::collections::HashMap::new(),
        flow_cache: true,
        limits: Default::default(),
    })
}

/// The `*.pcap` files of a directory, by name.
pub fn pcaps_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => {
            rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".pcap")).collect()
        }
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// A readable diff of two frame lists: one line per frame, `-` expected, `+` got.
pub fn frame_diff(expected: &[(u128, Vec<u8>)], got: &[(u128, Vec<u8>)]) -> String {
    let mut out = String::new();
    let n = expected.len().max(got.len());
    for i in 0..n {
        let e = expected.get(i);
        let g = got.get(i);
        if e == g {
            if let Some((t, f)) = e {
                out.push_str(&format!("  #{i} t={t} {}\n", datapath::wire::describe::describe(f)));
            }
            continue;
        }
        if let Some((t, f)) = e {
            out.push_str(&format!("- #{i} t={t} {}\n", datapath::wire::describe::describe(f)));
        }
        if let Some((t, f)) = g {
            out.push_str(&format!("+ #{i} t={t} {}\n", datapath::wire::describe::describe(f)));
        }
        if let (Some((_, a)), Some((_, b))) = (e, g) {
            let first = a.iter().zip(b.iter()).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
            out.push_str(&format!("  first differing byte at offset {first} (lengths {} and {})\n", a.len(), b.len()));
        }
    }
    out
}
