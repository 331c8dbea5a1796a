//! Subcommands. Each returns `Err(line)` with the one line to print on failure.

use std::io::Write;

use rules::model::Mac;

/// Print a line on stdout; a closed pipe (`| head`) ends the output quietly instead of panicking.
pub fn out(line: impl std::fmt::Display) {
    let mut o = std::io::stdout().lock();
    if writeln!(o, "{line}").is_err() {
        std::process::exit(0);
    }
}

/// The number of cores: the default number of workers.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--mac IFNAME=MAC` (replay, trace): an interface's own MAC.
pub fn parse_mac_arg(s: &str) -> Result<(String, Mac), String> {
    let (name, mac) = s.split_once('=').ok_or_else(|| format!("{s:?} is not IFNAME=MAC"))?;
    if name.is_empty() {
        return Err(format!("{s:?} names no interface"));
    }
    Ok((name.to_string(), mac.parse()?))
}

pub mod control;
pub mod etcd;
pub mod limits;
pub mod pcap;
pub mod replay;
pub mod run;
pub mod snapshot;
pub mod tap;
pub mod trace;
