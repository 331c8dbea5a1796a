//! Subcommands. Each returns `Err(line)` with the one line to print on failure.

pub mod pcap;
pub mod replay;
pub mod snapshot;
