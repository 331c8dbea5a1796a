//! Packet I/O backends: pcap replay (SPEC §4) and live AF_PACKET (SPEC §2), and where a live
//! datapath's snapshot comes from (SPEC §9.1).

pub mod afpacket;
mod bind;
pub mod control;
pub mod links;
mod live_worker;
pub mod metrics;
pub mod pcap;
pub mod rawsock;
pub mod ring;
pub mod source;
pub mod summary;
pub mod xsk;
