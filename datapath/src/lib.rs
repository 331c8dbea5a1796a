//! edgepath's fast path.
//!
//! A frame arrives on an interface ([`iface`]); [`datapath::Datapath::process`] parses it
//! ([`wire`]), looks its flow up ([`flow`]) and either applies the cached actions or simulates
//! the virtual topology ([`sim`]: bridging, routing, NAT with connection tracking ([`ct`]),
//! VXLAN) and caches the result. Every drop is counted under a [`drop::DropReason`]; every timer
//! reads the packet clock ([`time`]). [`io::pcap`] replays pcap files through it (with workers
//! for cached flows); [`io::afpacket`] runs workers on the host's interfaces — each a `Datapath`
//! with its own flow cache, all on one [`datapath::Shared`] state — with hot reload ([`carry`]
//! says what a new snapshot keeps) and the control socket of [`io::control`].

pub mod batch;
pub mod carry;
pub mod csum;
pub mod ct;
pub mod drop;
pub mod fastpath;
pub mod flow;
pub mod fwlog;
pub mod gate;
pub mod iface;
pub mod install;
#[warn(clippy::undocumented_unsafe_blocks)]
pub mod io;
pub mod learn;
pub mod limits;
pub mod persist;
pub mod qos;
pub mod report;
pub mod rewrite;
pub mod shared;
pub mod sim;
pub mod state;
pub mod stats;
pub mod tap;
pub mod time;
pub mod wire;
pub mod worker;

pub use drop::DropReason;
pub use iface::IfIdx;
pub use stats::Stats;
pub use time::Instant;
pub use worker::Datapath;
