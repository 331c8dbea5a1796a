//! `edgepath status|stats|flows|conntrack`: ask a running datapath through its control socket.

use std::path::PathBuf;

use clap::Args;

#[derive(Args)]
pub struct ControlArgs {
    /// The running datapath's control socket.
    #[arg(long, default_value = super::run::DEFAULT_CONTROL)]
    control: PathBuf,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    control: ControlArgs,
    /// `text` (one line, then one line per port), or `json`.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

/// `edgepath status`: the version running and every port bound on the host — interface,
/// ifindex, up / down / absent, and since when (SPEC §2).
pub fn status(a: StatusArgs) -> Result<(), String> {
    run(if a.format == "json" { "status json" } else { "status" }, a.control)
}

pub fn run(command: &str, a: ControlArgs) -> Result<(), String> {
    let answer = datapath::io::control::ask(&a.control, command)
        .map_err(|e| format!("{}: cannot reach a running edgepath: {e}", a.control.display()))?;
    if answer.starts_with("error:") {
        return Err(answer.trim_end().to_string());
    }
    super::out(answer.trim_end());
    Ok(())
}
