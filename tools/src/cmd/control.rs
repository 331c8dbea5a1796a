//! `edgepath status|stats|flows|conntrack`: ask a running datapath through its control socket,
//! as text or JSON (both made from the same records), with filters.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Args)]
pub struct ControlArgs {
    /// The running datapath's control socket.
    #[arg(long, default_value = super::run::DEFAULT_CONTROL)]
    control: PathBuf,
    /// Text for people, or JSON for programs.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

impl ControlArgs {
    /// ` json` when JSON is asked for.
    fn json(&self) -> &'static str {
        if self.format == Format::Json {
            " json"
        } else {
            ""
        }
    }
}

#[derive(Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    control: ControlArgs,
    /// Only the flows that come in or go out by this port's interface.
    #[arg(long, value_name = "ID")]
    port: Option<String>,
    /// Only the flows that enter this router (they match one of its ports' MACs).
    #[arg(long, value_name = "ID")]
    router: Option<String>,
}

#[derive(Args)]
pub struct ConntrackArgs {
    #[command(flatten)]
    control: ControlArgs,
    /// Only connections from this address (the original direction's source).
    #[arg(long)]
    src: Option<IpAddr>,
    /// Only connections to this address (the original direction's destination).
    #[arg(long)]
    dst: Option<IpAddr>,
    /// Only this router's connections.
    #[arg(long, value_name = "ID")]
    router: Option<String>,
    /// Only this protocol: tcp, udp, icmp, icmpv6, ip (fip64 bindings).
    #[arg(long)]
    proto: Option<String>,
}

/// `edgepath status`: the version running and every port bound on the host — interface,
/// ifindex, up / down / absent, and since when (SPEC §2).
pub fn status(a: ControlArgs) -> Result<(), String> {
    ask(&format!("status{}", a.json()), &a)
}

/// `edgepath stats`: the counters, summed over the workers, and each table's fill.
pub fn stats(a: ControlArgs) -> Result<(), String> {
    ask(&format!("stats{}", a.json()), &a)
}

/// `edgepath flows`: each worker's cached flows.
pub fn flows(a: FlowsArgs) -> Result<(), String> {
    let mut command = format!("flows{}", a.control.json());
    for (k, v) in [("port", &a.port), ("router", &a.router)] {
        if let Some(v) = v {
            command.push_str(&format!(" {k}={v}"));
        }
    }
    ask(&command, &a.control)
}

/// `edgepath conntrack`: the connections, `key=value` per line as `conntrack -L` prints them.
pub fn conntrack(a: ConntrackArgs) -> Result<(), String> {
    let mut command = format!("conntrack{}", a.control.json());
    let (src, dst) = (a.src.map(|x| x.to_string()), a.dst.map(|x| x.to_string()));
    for (k, v) in [("src", &src), ("dst", &dst), ("router", &a.router), ("proto", &a.proto)] {
        if let Some(v) = v {
            command.push_str(&format!(" {k}={v}"));
        }
    }
    ask(&command, &a.control)
}

fn ask(command: &str, a: &ControlArgs) -> Result<(), String> {
    let answer = datapath::io::control::ask(&a.control, command)
        .map_err(|e| format!("{}: cannot reach a running edgepath: {e}", a.control.display()))?;
    if answer.starts_with("error:") {
        return Err(answer.trim_end().to_string());
    }
    super::out(answer.trim_end());
    Ok(())
}
