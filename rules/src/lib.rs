//! edgepath's control plane: the snapshot of SPEC §3 ([`model`]), its validation
//! ([`validate`]) and its compilation into the tables the fast path reads ([`compile`]).
//! No packet I/O happens here.

pub mod compile;
pub mod model;
pub mod validate;

pub use compile::{load_topology, topology_of, Topology};
pub use validate::{load_file, load_str, load_value, read_document, FileError, SnapshotError};
