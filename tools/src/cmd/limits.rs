//! The bounds of the tables filled from traffic (SPEC §9), for `run` and `replay`. The defaults
//! are [`datapath::limits::Limits::default`]'s, no lower than Linux's and Open vSwitch's.

use clap::Args;
use datapath::limits::Limits;

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Table bounds (SPEC §9)")]
pub struct LimitArgs {
    /// Connections tracked in all, NAT and firewall (OVS userspace conntrack: 3 000 000).
    #[arg(long, value_name = "N", default_value_t = Limits::default().connections, value_parser = at_least_one)]
    max_connections: usize,
    /// Connections tracked per router.
    #[arg(long, value_name = "N", default_value_t = Limits::default().connections_per_router, value_parser = at_least_one)]
    max_connections_per_router: usize,
    /// Learned MACs per network (OVS `mac-table-size`: 2048).
    #[arg(long, value_name = "N", default_value_t = Limits::default().macs_per_network, value_parser = at_least_one)]
    max_macs_per_network: usize,
    /// Seconds a learned MAC is kept without a frame from it (Linux and OVS: 300).
    #[arg(long, value_name = "SECONDS", default_value_t = Limits::default().mac_aging.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    mac_aging: u64,
    /// Learned ARP entries per router, and the underlay's (Linux `gc_thresh3`: 1024).
    #[arg(long, value_name = "N", default_value_t = Limits::default().arp_per_router, value_parser = at_least_one)]
    max_arp_per_router: usize,
    /// Next hops with packets waiting for an ARP answer, in all (each holds at most 3).
    #[arg(long, value_name = "N", default_value_t = Limits::default().arp_waiting, value_parser = at_least_one)]
    max_arp_waiting: usize,
    /// Cached flows per worker; a full cache evicts one not used recently (OVS `flow-limit`:
    /// 200 000).
    #[arg(long, value_name = "N", default_value_t = Limits::default().flows_per_worker, value_parser = at_least_one)]
    max_flows_per_worker: usize,
    /// fip64 bindings per router (SPEC §11); a full router lets its least recently used go.
    #[arg(long, value_name = "N", default_value_t = Limits::default().fip64_bindings_per_router, value_parser = at_least_one)]
    max_fip64_bindings_per_router: usize,
    /// Addresses of 100.64.0.0/10 a router's fip64 clients are bound to, from 100.64.0.1 up.
    #[arg(long, value_name = "N", default_value_t = Limits::default().fip64_pool, value_parser = clap::value_parser!(u32).range(1..=datapath::ct::bindings::POOL_MAX as i64))]
    fip64_pool: u32,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            connections: self.max_connections,
            connections_per_router: self.max_connections_per_router,
            macs_per_network: self.max_macs_per_network,
            mac_aging: std::time::Duration::from_secs(self.mac_aging),
            arp_per_router: self.max_arp_per_router,
            arp_waiting: self.max_arp_waiting,
            flows_per_worker: self.max_flows_per_worker,
            fip64_bindings_per_router: self.max_fip64_bindings_per_router,
            fip64_pool: self.fip64_pool,
        }
    }
}
