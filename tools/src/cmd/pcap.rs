//! `edgepath pcap FILE...`: print each frame of pcap files on one line (what replay wrote, or
//! what it is given), for a look without tshark.

use std::path::PathBuf;

use clap::Args;
use pcap_file::pcap::PcapReader;

#[derive(Args)]
pub struct PcapArgs {
    /// Classic pcap files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn run(a: PcapArgs) -> Result<(), String> {
    for path in a.files {
        let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut r = PcapReader::new(std::io::BufReader::new(f))
            .map_err(|e| format!("{}: not a readable classic pcap file: {e}", path.display()))?;
        super::out(format!("{}:", path.display()));
        let mut n = 0;
        while let Some(p) = r.next_packet() {
            let p = p.map_err(|e| format!("{}: {e}", path.display()))?;
            let t = p.timestamp;
            super::out(format!("  {n:>4} {}.{:06} {}", t.as_secs(), t.subsec_micros(), datapath::wire::describe::describe(&p.data)));
            n += 1;
        }
    }
    Ok(())
}
