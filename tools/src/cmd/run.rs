//! `edgepath run --snapshot FILE --host H`: the live datapath on the host's interfaces (SPEC §2),
//! until SIGINT or SIGTERM. Logs with tracing (`RUST_LOG`, default `info`) on stderr; prints the
//! counters when it stops.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Args;

#[derive(Args)]
pub struct RunArgs {
    /// The control-plane snapshot.
    #[arg(long)]
    snapshot: PathBuf,
    /// The host this datapath runs as (an id in `hosts`).
    #[arg(long)]
    host: String,
    /// The control socket, for `edgepath status|stats|flows|conntrack` (owner-only).
    #[arg(long, default_value = DEFAULT_CONTROL)]
    control: PathBuf,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Directory for firewall logs (`fw-<firewall_log_id>.log`).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// How frames are received (with `--io packet`, and where AF_XDP is unavailable).
    #[arg(long, value_enum, default_value_t = Rx::Ring)]
    rx: Rx,
    /// The sockets: AF_PACKET, or AF_XDP (one per interface queue, a worker each; copy mode on
    /// veth, zero-copy where the driver has it; AF_PACKET with one log line where XDP is
    /// unavailable). AF_XDP needs libxdp (Debian's libxdp1) and CAP_SYS_ADMIN besides.
    #[arg(long, value_enum, default_value_t = Io::Packet)]
    io: Io,
    /// Keep connections (NAT mappings, firewall state) and learned MAC and ARP entries across a
    /// restart: written to DIR/state.json on SIGTERM, put back at the next start where their
    /// resources and rules still exist (as a reload would).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    limits: super::limits::LimitArgs,
}

/// `--rx`: how a worker receives frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rx {
    /// TPACKET_V3 rings, read in place.
    Ring,
    /// recvmmsg() into the worker's buffers.
    Mmsg,
}

/// `--io`: the sockets frames come and go by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Io {
    /// AF_PACKET sockets.
    Packet,
    /// AF_XDP sockets through libxdp's redirect program.
    Xdp,
}

impl From<Rx> for datapath::io::afpacket::RxMode {
    fn from(r: Rx) -> Self {
        match r {
            Rx::Ring => datapath::io::afpacket::RxMode::Ring,
            Rx::Mmsg => datapath::io::afpacket::RxMode::Mmsg,
        }
    }
}

/// Where the control socket is unless `--control` says otherwise.
pub const DEFAULT_CONTROL: &str = "/run/edgepath.sock";

pub fn run(a: RunArgs) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
    let topo = Arc::new(rules::load_topology(&a.snapshot).map_err(|e| e.to_string())?);
    let (stop, reload) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("installing a signal handler: {e}"))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone()).map_err(|e| format!("installing a signal handler: {e}"))?;
    let threads = a.threads.unwrap_or_else(super::cores);
    let opts = datapath::io::afpacket::LiveOptions {
        snapshot: a.snapshot.clone(),
        host: a.host,
        control: Some(a.control),
        stop,
        reload,
        threads,
        log_dir: a.log_dir,
        rx: a.rx.into(),
        xdp: a.io == Io::Xdp,
        limits: a.limits.limits(),
        state_dir: a.state_dir,
    };
    let summary = datapath::io::afpacket::run(topo, opts).map_err(|e| format!("{}: {e}", a.snapshot.display()))?;
    tracing::info!("stopped");
    super::out(summary.render().trim_end());
    Ok(())
}
