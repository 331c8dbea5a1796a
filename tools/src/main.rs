//! `edgepath`: the operator's command.
//!
//! Exit status: 0 on success; 2 for a bad snapshot, a bad argument, or unreadable input, after
//! one line on stderr naming the file, the resource and the attribute.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "edgepath", version, about = "Userspace overlay router and VXLAN gateway datapath (MidoNet network model)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with control-plane snapshots.
    Snapshot {
        #[command(subcommand)]
        command: cmd::snapshot::SnapshotCommand,
    },
    /// Run the datapath on the host's interfaces until SIGINT or SIGTERM (SPEC §2).
    Run(cmd::run::RunArgs),
    /// Replay pcap files through the datapath (SPEC §4).
    Replay(cmd::replay::ReplayArgs),
    /// Print the frames of pcap files, one line each.
    Pcap(cmd::pcap::PcapArgs),
    /// Show what the datapath does with one packet: every device, rule and NAT step.
    Trace(cmd::trace::TraceArgs),
    /// The running datapath's snapshot version and since when, and every port bound on the
    /// host: interface, ifindex, up / down / absent, since when.
    Status(cmd::control::ControlArgs),
    /// The running datapath's counters: per interface, per drop reason, flows, connections.
    Stats(cmd::control::ControlArgs),
    /// The running datapath's cached flows, their actions and hit counts.
    Flows(cmd::control::FlowsArgs),
    /// The running datapath's connections: NAT mappings and firewall state.
    Conntrack(cmd::control::ConntrackArgs),
    /// Write the frames the running datapath drops, with their reasons, to a pcapng file.
    Capture(cmd::tap::CaptureArgs),
    /// Write the man pages (DIR/man/man1) and the bash, zsh and fish completions (DIR/completions)
    /// made from these definitions, for packaging.
    #[command(hide = true)]
    Generate { dir: std::path::PathBuf },
}

/// `edgepath generate DIR`.
fn generate(dir: &std::path::Path) -> Result<(), String> {
    use clap::CommandFactory;
    let (man, completions) = (dir.join("man/man1"), dir.join("completions"));
    let fail = |p: &std::path::Path, e: std::io::Error| format!("{}: {e}", p.display());
    std::fs::create_dir_all(&man).map_err(|e| fail(&man, e))?;
    std::fs::create_dir_all(&completions).map_err(|e| fail(&completions, e))?;
    clap_mangen::generate_to(Cli::command(), &man).map_err(|e| fail(&man, e))?;
    for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "edgepath", &completions).map_err(|e| fail(&completions, e))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        // Logs (RUST_LOG, warnings by default) on stderr; `run` sets up its own.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
    }
    let result = match cli.command {
        Command::Snapshot { command } => cmd::snapshot::run(command),
        Command::Run(args) => cmd::run::run(args),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Pcap(args) => cmd::pcap::run(args),
        Command::Trace(args) => cmd::trace::run(args),
        Command::Status(args) => cmd::control::status(args),
        Command::Stats(args) => cmd::control::stats(args),
        Command::Flows(args) => cmd::control::flows(args),
        Command::Conntrack(args) => cmd::control::conntrack(args),
        Command::Capture(args) => cmd::tap::capture(args),
        Command::Generate { dir } => generate(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            eprintln!("edgepath: {line}");
            ExitCode::from(2)
        }
    }
}
