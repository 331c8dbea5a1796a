//! `edgepath replay` (SPEC §4).

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;
use datapath::io::pcap::{replay_traced, Hooks, ReplayConfig};
use rules::model::Mac;

#[derive(Args)]
pub struct ReplayArgs {
    /// The control-plane snapshot.
    #[arg(long)]
    snapshot: PathBuf,
    /// The host this datapath runs as (an id in `hosts`).
    #[arg(long)]
    host: String,
    /// Directory of `<interface>.pcap` inputs.
    #[arg(long = "in")]
    in_dir: PathBuf,
    /// Directory for `<interface>.pcap` outputs.
    #[arg(long = "out")]
    out_dir: PathBuf,
    /// Directory for firewall logs.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Worker threads (default: the number of cores; the output is the same for any number).
    #[arg(long)]
    threads: Option<usize>,
    /// An interface's own MAC, `IFNAME=MAC` (repeatable; default 02:00:00:00:00:01).
    #[arg(long = "mac", value_parser = super::parse_mac_arg)]
    macs: Vec<(String, Mac)>,
    /// Simulate every packet instead of caching flows (for comparing).
    #[arg(long)]
    no_flow_cache: bool,
    /// Print every input frame and the steps of its simulation: devices, NAT rules, outputs.
    #[arg(long)]
    trace: bool,
    #[command(flatten)]
    limits: super::limits::LimitArgs,
}

pub fn run(a: ReplayArgs) -> Result<(), String> {
    let cfg = ReplayConfig {
        snapshot: a.snapshot,
        host: a.host,
        in_dir: a.in_dir,
        out_dir: a.out_dir,
        log_dir: a.log_dir,
        threads: a.threads.unwrap_or_else(super::cores),
        macs: a.macs.into_iter().collect::<HashMap<_, _>>(),
        flow_cache: !a.no_flow_cache,
        limits: a.limits.limits(),
    };
    let mut print = |line: String| super::out(line);
    // A progress bar on a terminal, for inputs large enough to wait for.
    let bar = (std::io::IsTerminal::is_terminal(&std::io::stderr()) && !a.trace).then(|| {
        let b = indicatif::ProgressBar::hidden();
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} frames {per_sec} {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut show = |done: u64, total: u64| {
        if let Some(b) = &bar {
            if total >= 100_000 && b.is_hidden() {
                b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            b.set_length(total);
            b.set_position(done);
        }
    };
    let hooks = Hooks {
        trace: a.trace.then_some(&mut print as &mut dyn FnMut(String)),
        progress: bar.is_some().then_some(&mut show as &mut dyn FnMut(u64, u64)),
    };
    let summary = replay_traced(&cfg, hooks).map_err(|e| e.to_string())?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    super::out(summary.render().trim_end());
    Ok(())
}
