//! `edgepath snapshot check|push|pull`: validate a snapshot (a file, or what is published in
//! etcd) and print a summary; publish a file in etcd; print what is published (SPEC §9.1).

use std::path::PathBuf;

use clap::Subcommand;
use rules::Topology;

use super::etcd::EtcdArgs;

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Validate a snapshot — a file, or with --etcd what is published there; print its version
    /// and the count of each collection, every VXLAN tunnel endpoint it makes edgepath talk to,
    /// then every fip64 (IPv6 floating IP of an IPv4 fixed IP).
    Check {
        /// The snapshot JSON file.
        #[arg(required_unless_present = "etcd", conflicts_with = "etcd")]
        file: Option<PathBuf>,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Publish a snapshot file in etcd, validated first: each resource a key
    /// (`P/<collection>/<id>`), the keys of resources no longer in it deleted, unchanged ones
    /// left alone, then `P/version`, last. Its version must be past the published one.
    Push {
        /// The snapshot JSON file.
        file: PathBuf,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Print the snapshot published in etcd as a snapshot file (`> FILE`), read as the datapath
    /// reads it: whole, at the revision of its version.
    Pull {
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

pub fn run(cmd: SnapshotCommand) -> Result<(), String> {
    match cmd {
        SnapshotCommand::Check { file: Some(file), .. } => {
            let topo = rules::load_topology(&file).map_err(|e| e.to_string())?;
            print_check(&file.display().to_string(), &topo);
            Ok(())
        }
        SnapshotCommand::Check { file: None, etcd } => {
            let cfg = etcd.required("snapshot check")?;
            let (doc, revision) = edgepath_etcd::pull(&cfg).map_err(|e| e.0)?;
            let origin = format!("{} at revision {revision}", cfg.describe());
            let topo = rules::topology_of(&doc, &origin).map_err(|e| e.to_string())?;
            print_check(&origin, &topo);
            Ok(())
        }
        SnapshotCommand::Push { file, etcd } => {
            let cfg = etcd.required("snapshot push")?;
            let name = file.display().to_string();
            // Read, parsed and validated while the published keys are read (validation beside
            // making the keys); nothing is written unless it passes. The document is let go after
            // the push, not on its way.
            let mut keep = None;
            let mut prepare = || {
                let t = std::time::Instant::now();
                let doc = rules::read_document(&file).map_err(|e| e.to_string())?;
                let parsed = t.elapsed();
                let (valid, keys) = std::thread::scope(|s| {
                    let valid = s.spawn(|| rules::topology_of(&doc, &name).map(drop).map_err(|e| e.to_string()));
                    let keys = edgepath_etcd::keys_of(&doc).map_err(|e| format!("{name}: {}", e.0));
                    (valid.join().unwrap_or_else(|_| Err(format!("{name}: validation failed"))), keys)
                });
                tracing::debug!(parsed_ms = parsed.as_secs_f64() * 1e3, ms = t.elapsed().as_secs_f64() * 1e3, "prepared");
                keep = Some(doc);
                valid.and(keys)
            };
            let p = edgepath_etcd::push_with(&cfg, move || prepare().map_err(edgepath_etcd::Error)).map_err(|e| e.0)?;
            let what = format!("{} written, {} deleted, {} unchanged", p.written, p.deleted, p.unchanged);
            match p.revision {
                Some(r) => super::out(format!("pushed version {} to {}: {what} (revision {r})", p.version, cfg.describe())),
                None => super::out(format!("version {} is already published in {}: {what}", p.version, cfg.describe())),
            }
            Ok(())
        }
        SnapshotCommand::Pull { etcd } => {
            let cfg = etcd.required("snapshot pull")?;
            let (doc, _) = edgepath_etcd::pull(&cfg).map_err(|e| e.0)?;
            super::out(serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
            Ok(())
        }
    }
}

/// `NAME: ok, <summary>`, then the VXLAN endpoints and the fip64s.
fn print_check(name: &str, topo: &Topology) {
    super::out(format!("{name}: ok, {}", topo.summary()));
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
}
