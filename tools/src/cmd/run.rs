//! `edgepath run --snapshot FILE --host H`: the live datapath on the host's interfaces (SPEC §2),
//! until SIGINT or SIGTERM. Logs with tracing (`RUST_LOG`, default `info`) on stderr; prints the
//! counters when it stops.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Args;
use datapath::io::afpacket::Notice;
use datapath::io::source::Source;
use rules::Topology;

use super::etcd::EtcdFeed;

#[derive(Args)]
pub struct RunArgs {
    /// The control-plane snapshot file, read again on SIGHUP or when it changes.
    #[arg(long, required_unless_present = "etcd", conflicts_with = "etcd")]
    snapshot: Option<PathBuf>,
    #[command(flatten)]
    etcd: super::etcd::EtcdArgs,
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
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (counters per interface, drop
    /// reason, worker and table; built when scraped, nothing added per packet).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
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

/// Where the control socket is unless `--control` says otherwise: under the runtime directory
/// systemd makes for the unit (`RuntimeDirectory=edgepath`), made here when missing.
pub const DEFAULT_CONTROL: &str = "/run/edgepath/edgepath.sock";

pub fn run(a: RunArgs) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
    let (stop, reload) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("installing a signal handler: {e}"))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone()).map_err(|e| format!("installing a signal handler: {e}"))?;
    let (topo, source) = match (&a.snapshot, a.etcd.config()?) {
        (Some(file), _) => (rules::load_topology(file).map_err(|e| e.to_string())?, Source::File(file.clone())),
        (None, Some(cfg)) => match first_published(cfg, &a.host, &stop)? {
            Some(first) => first,
            None => return Ok(()),
        },
        (None, None) => return Err("run needs --snapshot FILE or --etcd URL".into()),
    };
    let where_ = source.describe();
    if let Some(dir) = a.control.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("--control {}: {e}", a.control.display()))?;
    }
    let threads = a.threads.unwrap_or_else(super::cores);
    let opts = datapath::io::afpacket::LiveOptions {
        source,
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
        metrics: a.metrics,
        notify: Some(Box::new(tell_systemd)),
    };
    let summary = datapath::io::afpacket::run(Arc::new(topo), opts).map_err(|e| format!("{where_}: {e}"))?;
    tracing::info!("stopped");
    super::out(summary.render().trim_end());
    Ok(())
}

/// Follow etcd (SPEC §9.1) until the first version published there comes, or `stop`: that
/// version compiled, and the follower as the source of the next. A first version that is
/// refused is the one line of a bad snapshot file: the datapath does not start on it.
fn first_published(cfg: edgepath_etcd::Config, host: &str, stop: &AtomicBool) -> Result<Option<(Topology, Source)>, String> {
    let follower = edgepath_etcd::Follower::start(cfg, host).map_err(|e| e.0)?;
    tracing::info!("waiting for the snapshot published in {}", follower.describe());
    let first = loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        if let Some(p) = follower.wait(std::time::Duration::from_millis(200)) {
            break p;
        }
    };
    let topo = match first.document {
        Ok(doc) => rules::topology_of(&doc, &first.origin).map_err(|e| e.to_string())?,
        Err(e) => return Err(format!("{}: {e}", first.origin)),
    };
    Ok(Some((topo, Source::Feed(Box::new(EtcdFeed(follower))))))
}

/// What systemd is told (`Type=notify`; nothing without `NOTIFY_SOCKET`): ready once the first
/// version runs, each version applied or refused as the unit's status line, stopping.
fn tell_systemd(n: Notice) {
    use sd_notify::NotifyState;
    let status = match &n {
        Notice::Ready(v) | Notice::Applied(v) => format!("running snapshot version {v}"),
        Notice::Refused(line, v) => format!("running snapshot version {v}; refused {line}"),
        Notice::Stopping => "stopping".into(),
    };
    let mut states = vec![NotifyState::Status(&status)];
    match n {
        Notice::Ready(_) => states.push(NotifyState::Ready),
        Notice::Stopping => states.push(NotifyState::Stopping),
        _ => {}
    }
    if let Err(e) = sd_notify::notify(&states) {
        tracing::warn!(error = %e, "telling systemd");
    }
}
