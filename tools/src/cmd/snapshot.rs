//! `edgepath snapshot check FILE`: validate and compile a snapshot, print a one-line summary.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Validate a snapshot; print its version and the count of each collection.
    Check {
        /// The snapshot JSON file.
        file: PathBuf,
    },
}

pub fn run(cmd: SnapshotCommand) -> Result<(), String> {
    match cmd {
        SnapshotCommand::Check { file } => {
            let topo = rules::load_topology(&file).map_err(|e| e.to_string())?;
            super::out(format!("{}: ok, {}", file.display(), topo.summary()));
            Ok(())
        }
    }
}
