//! The bounds of every table the datapath fills from traffic (SPEC §9): nothing grows without
//! one. Defaults are no lower than Linux's and Open vSwitch's for the same table; `edgepath run`
//! and `edgepath replay` set each on the command line.
//!
//! | table | default | Linux | Open vSwitch |
//! |---|---|---|---|
//! | connections, in all | 3 000 000 | `nf_conntrack_max` 262 144 | userspace conntrack 3 000 000 |
//! | connections, per router | 3 000 000 | no per-zone limit | zone limit: unlimited |
//! | learned MACs, per network | 65 536 | unlimited (`max_learned` 0) | `mac-table-size` 2048 |
//! | MAC aging | 300 s | `ageing_time` 300 s | `mac-aging-time` 300 s |
//! | ARP entries, per router (and the underlay's) | 16 384 | `gc_thresh3` 1024 per host | — |
//! | next hops with packets waiting for ARP | 4096 | one queue per neighbour (≤ `gc_thresh3`) | — |
//! | cached flows, per worker | 262 144 | — | `flow-limit` 200 000 |
//! | fip64 bindings, per router (SPEC §11) | 65 536 | — | — |
//! | fip64 pool addresses (of 100.64.0.0/10) | 4 194 302 | — | — |
//!
//! A full table refuses the new entry and counts it (a connection is a dropped packet:
//! `conntrack_full`; a next hop that cannot wait is `arp_waiting_full`; a MAC or ARP entry is
//! not learned, and `stats` counts it), except the flow cache, which evicts its least recently
//! used flow, and the fip64 bindings, which let the least recently used binding go (§11). A new
//! connection that finds the table full first takes the place of the oldest one
//! that was never answered (Linux's early drop); one that was answered is never let go for it.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub connections: usize,
    pub connections_per_router: usize,
    pub macs_per_network: usize,
    pub mac_aging: Duration,
    pub arp_per_router: usize,
    pub arp_waiting: usize,
    pub flows_per_worker: usize,
    pub fip64_bindings_per_router: usize,
    /// Addresses of the NAT64 pool a router binds clients to (tests use a few).
    pub fip64_pool: u32,
}

impl Limits {
    /// The fip64 bindings' bounds.
    pub fn fip64(&self) -> crate::ct::bindings::Capacity {
        crate::ct::bindings::Capacity { pool: self.fip64_pool, per_router: self.fip64_bindings_per_router }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 3_000_000,
            connections_per_router: 3_000_000,
            macs_per_network: 65_536,
            mac_aging: Duration::from_secs(300),
            arp_per_router: 16_384,
            arp_waiting: 4096,
            flows_per_worker: 1 << 18,
            fip64_bindings_per_router: 65_536,
            fip64_pool: crate::ct::bindings::POOL_MAX,
        }
    }
}

/// Each table's fill against its bound, for `edgepath stats` and the replay summary.
#[derive(Debug, Clone, Default)]
pub struct TableFill {
    pub limits: Limits,
    pub connections: usize,
    pub fullest_router_connections: usize,
    pub macs: usize,
    pub fullest_network_macs: usize,
    pub arps: usize,
    pub fullest_router_arps: usize,
    /// Next hops with packets waiting for ARP.
    pub waiting: usize,
    /// Cached flows of each worker.
    pub flows: Vec<usize>,
    pub fip64_bindings: usize,
    pub fullest_router_fip64_bindings: usize,
    pub refused: Refusals,
}

impl TableFill {
    /// Each bound with what fills it: `(name, entries, bound)` — for a bound per router, per
    /// network or per worker, the fullest one's entries.
    pub fn bounded(&self) -> [(&'static str, usize, usize); 7] {
        let l = &self.limits;
        [
            ("connections", self.connections, l.connections),
            ("connections_per_router", self.fullest_router_connections, l.connections_per_router),
            ("macs_per_network", self.fullest_network_macs, l.macs_per_network),
            ("arp_per_router", self.fullest_router_arps, l.arp_per_router),
            ("arp_waiting", self.waiting, l.arp_waiting),
            ("flows_per_worker", self.flows.iter().copied().max().unwrap_or(0), l.flows_per_worker),
            ("fip64_bindings_per_router", self.fullest_router_fip64_bindings, l.fip64_bindings_per_router),
        ]
    }

    /// One line per table: `table <name>: <fill> of <bound>`, with what the bound refused.
    pub fn render(&self) -> String {
        let l = &self.limits;
        let flows = self.flows.iter().copied().max().unwrap_or(0);
        format!(
            "table connections: {} of {}, fullest router {} of {}, {} unanswered let go for new ones\n\
             table macs: {}, fullest network {} of {} (aging {} s), {} refused\n\
             table arp: {}, fullest router {} of {}, {} refused\n\
             table arp_waiting: {} of {}\n\
             table flows: fullest worker {} of {}\n\
             table fip64_bindings: {}, fullest router {} of {} (pool {})\n",
            self.connections,
            l.connections,
            self.fullest_router_connections,
            l.connections_per_router,
            self.refused.early_drops,
            self.macs,
            self.fullest_network_macs,
            l.macs_per_network,
            l.mac_aging.as_secs(),
            self.refused.macs,
            self.arps,
            self.fullest_router_arps,
            l.arp_per_router,
            self.refused.arps,
            self.waiting,
            l.arp_waiting,
            flows,
            l.flows_per_worker,
            self.fip64_bindings,
            self.fullest_router_fip64_bindings,
            l.fip64_bindings_per_router,
            l.fip64_pool,
        )
    }
}

/// Entries a full table refused, and connections let go to make room (`edgepath stats`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    pub macs: u64,
    pub arps: u64,
    /// Unanswered connections let go for new ones.
    pub early_drops: u64,
}
