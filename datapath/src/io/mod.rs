//! Packet I/O backends: pcap replay (SPEC §4).

pub mod pcap;
