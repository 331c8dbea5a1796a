//! What the datapath keeps between packets, which the simulation reads and changes: learned MAC
//! and ARP entries ([`crate::learn`]), NAT and firewall connections ([`crate::ct`]), and the
//! bounds of each ([`crate::limits`]). One `State` lives in [`crate::shared::Shared`], under its
//! lock; a reload carries it over ([`crate::carry`]), a restart saves it ([`crate::persist`]).

use crate::ct::bindings::Bindings;
use crate::ct::{ConnTable, FwConns};
use crate::learn::Learned;
use crate::limits::Limits;

#[derive(Debug, Default, Clone)]
pub struct State {
    pub learned: Learned,
    pub ct: ConnTable,
    pub fw: FwConns,
    /// fip64 bindings (SPEC §11).
    pub fip64: Bindings,
    pub limits: Limits,
}
