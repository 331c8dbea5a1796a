//! `edgepath snapshot check FILE`: validate and compile a snapshot, print a one-line summary.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Validate a snapshot; print its version and the count of each collection, every VXLAN
    /// tunnel endpoint it makes edgepath talk to, then every fip64 (IPv6 floating IP of an IPv4
    /// fixed IP).
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
            for (t, net, origin) in &topo.vxlan.listing {
                let local = match t.local {
                    rules::compile::LocalVtep::Host => "host underlay".to_string(),
                    rules::compile::LocalVtep::Router { router, addr } => format!("router {} at {addr}", topo.router(router).id),
                };
                super::out(format!("vtep {} vni {} network {} from {local}: {origin}", t.remote, t.vni, topo.network(*net).id));
            }
            for f in &topo.fip64s {
                let (router, port) = (&topo.router(f.router).id, &topo.port(f.gw_port).id);
                super::out(format!("fip64 {} {} → {} router {router} gateway port {port}", f.id, f.addr, f.fixed));
            }
            Ok(())
        }
    }
}
