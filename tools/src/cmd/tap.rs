//! `edgepath trace --live` and `edgepath capture --drops`: the running datapath's tap (issue 16),
//! armed through the control socket, read every 100 ms until it has given what was asked, and
//! let go at the end (or at Ctrl-C).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::Value;

#[derive(Args)]
pub struct CaptureArgs {
    /// Dropped frames (the only capture there is).
    #[arg(long, required = true)]
    drops: bool,
    /// Only drops of this reason (a name `stats` lists, e.g. spoofed_ip).
    #[arg(long)]
    reason: Option<String>,
    /// Only frames that arrived by this port's interface.
    #[arg(long, value_name = "ID")]
    port: Option<String>,
    /// How many frames.
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// The pcapng file written: each frame with its drop reason as its comment.
    #[arg(short = 'w', value_name = "FILE")]
    write: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// The running datapath's control socket.
    #[arg(long, default_value = super::run::DEFAULT_CONTROL)]
    control: PathBuf,
}

/// Arm the tap with `arm`, and hand each event to `each` until `count` came, the tap is done, or
/// `timeout`; the tap is let go at the end. Returns how many events came and how many the
/// datapath lost (its queue full).
pub fn follow(
    control: &Path,
    arm: &str,
    count: usize,
    timeout: Duration,
    mut each: impl FnMut(&Value) -> Result<(), String>,
) -> Result<(usize, u64), String> {
    let ask = |c: &str| -> Result<String, String> {
        let a =
            datapath::io::control::ask(control, c).map_err(|e| format!("{}: cannot reach a running edgepath: {e}", control.display()))?;
        match a.starts_with("error:") {
            true => Err(a.trim_end().to_string()),
            false => Ok(a),
        }
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, interrupted.clone());
    }
    ask(arm)?;
    let started = Instant::now();
    let (mut got, mut lost, mut finishing) = (0, 0, false);
    let result = loop {
        std::thread::sleep(Duration::from_millis(100));
        let answer = match ask("tap take") {
            Ok(a) => a,
            Err(e) => break Err(e),
        };
        let v: Value = serde_json::from_str(&answer).map_err(|e| format!("the datapath's answer is not JSON: {e}"))?;
        for e in v["events"].as_array().into_iter().flatten() {
            if got < count {
                each(e)?;
                got += 1;
            }
        }
        lost = v["lost"].as_u64().unwrap_or(0);
        // The tap done: one more read for an event a worker counted but had not yet queued.
        let done = got >= count || (v["remaining"].as_u64() == Some(0) && std::mem::replace(&mut finishing, true));
        if done || interrupted.load(Ordering::Relaxed) || started.elapsed() > timeout {
            break Ok((got, lost));
        }
    };
    let _ = ask("tap stop");
    result.map(|(g, _)| (g, lost))
}

/// `edgepath capture --drops`.
pub fn capture(a: CaptureArgs) -> Result<(), String> {
    use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
    use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
    use pcap_file::pcapng::PcapNgWriter;
    let _ = a.drops;
    let mut arm = format!("tap drops {}", a.count);
    for (k, v) in [("reason", &a.reason), ("port", &a.port)] {
        if let Some(v) = v {
            arm.push_str(&format!(" {k}={v}"));
        }
    }
    let name = a.write.display().to_string();
    let file = std::fs::File::create(&a.write).map_err(|e| format!("{name}: {e}"))?;
    let mut w = PcapNgWriter::new(std::io::BufWriter::new(file)).map_err(|e| format!("{name}: {e}"))?;
    let mut ifaces: Vec<String> = Vec::new();
    let (got, lost) = follow(&a.control, &arm, a.count, Duration::from_secs(a.timeout), |e| {
        let iface = e["interface"].as_str().unwrap_or("?").to_string();
        let id = match ifaces.iter().position(|i| *i == iface) {
            Some(k) => k,
            None => {
                let idb = InterfaceDescriptionBlock {
                    linktype: pcap_file::DataLink::ETHERNET,
                    snaplen: 0,
                    options: vec![InterfaceDescriptionOption::IfName(iface.clone().into())],
                };
                w.write_pcapng_block(idb).map_err(|e| format!("{name}: {e}"))?;
                ifaces.push(iface);
                ifaces.len() - 1
            }
        };
        let frame = datapath::io::control::from_hex(e["frame"].as_str().unwrap_or_default()).unwrap_or_default();
        let comment = format!("edgepath drop: {} ({})", e["reason"].as_str().unwrap_or("?"), e["description"].as_str().unwrap_or(""));
        let epb = EnhancedPacketBlock {
            interface_id: id as u32,
            timestamp: Duration::from_nanos(e["at_ns"].as_u64().unwrap_or(0)),
            original_len: frame.len() as u32,
            data: frame.into(),
            options: vec![EnhancedPacketOption::Comment(comment.into())],
        };
        w.write_pcapng_block(epb).map_err(|e| format!("{name}: {e}"))?;
        Ok(())
    })?;
    std::io::Write::flush(w.get_mut()).map_err(|e| format!("{name}: {e}"))?;
    super::out(format!(
        "{name}: {got} dropped frames{}",
        if lost > 0 { format!(" ({lost} lost: the queue was full)") } else { String::new() }
    ));
    Ok(())
}
