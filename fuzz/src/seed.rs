//! `seed CORPUS`: writes the seed corpora of the fuzz targets under `CORPUS/<target>/` from the
//! scenario suites of `pcaps/` and the public captures of `../shared/pcaps`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use edgepath_fuzz::{encode, pcaps_root, read_pcap, scenario_input, scenarios};

fn pcaps_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        if p.is_dir() {
            out.extend(pcaps_under(&p));
        } else if p.extension().is_some_and(|x| x == "pcap") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
}

fn main() {
    let corpus = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let shared = pcaps_root().join("../../shared/pcaps");
    let dirs: Vec<PathBuf> = ["parse", "datapath", "snapshot"].iter().map(|t| corpus.join(t)).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    }
    // parse: every distinct frame.
    let mut seen = HashSet::new();
    let mut files = pcaps_under(&pcaps_root());
    files.extend(pcaps_under(&shared));
    for f in &files {
        for (_, frame) in read_pcap(f) {
            if seen.insert(frame.clone()) {
                write(&dirs[0], &format!("frame-{}", seen.len()), &frame);
            }
        }
    }
    // datapath: each scenario's inputs, in time order, on their interfaces; and each public
    // capture fed to every interface of the first scenarios in turn.
    for (k, sc) in scenarios().iter().enumerate() {
        write(&dirs[1], &format!("scenario-{}", sc.name), &scenario_input(k));
    }
    for (c, f) in pcaps_under(&shared).iter().enumerate() {
        let k = c % scenarios().len();
        let mut data = vec![k as u8];
        for (n, (_, frame)) in read_pcap(f).into_iter().take(200).enumerate() {
            encode(&mut data, (n % scenarios()[k].ifaces.len()) as u8, 1, &frame);
        }
        write(&dirs[1], &format!("capture-{}", f.file_stem().unwrap_or_default().to_string_lossy()), &data);
    }
    // snapshot: every scenario's snapshot.
    for sc in scenarios() {
        let text = std::fs::read(pcaps_root().join(&sc.name).join("snapshot.json")).expect("snapshot");
        write(&dirs[2], &format!("snapshot-{}", sc.name), &text);
    }
    println!(
        "seeds in {}: {} frames, {} datapath inputs, {} snapshots",
        corpus.display(),
        seen.len(),
        scenarios().len() + pcaps_under(&shared).len(),
        scenarios().len()
    );
}
