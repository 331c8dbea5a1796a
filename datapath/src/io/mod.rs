//! Packet I/O backends: pcap replay (SPEC §4) and live AF_PACKET (SPEC §2).

pub mod afpacket;
pub mod control;
pub mod links;
pub mod pcap;
pub mod rawsock;
