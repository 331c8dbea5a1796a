//! What the command's tests share: running commands (in namespaces too), the lab of
//! `tools/netns-lab.sh`, a running `edgepath run`, waiting for a condition.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn sh(args: &[&str]) -> Result<String, String> {
    let o = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!("{}: {}{}", args.join(" "), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    }
}

pub fn in_ns(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    sh(&full)
}

pub fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).and_then(|u| u.parse().ok()))
        .unwrap_or(u32::MAX)
}

/// The lab of `tools/netns-lab.sh`, taken down when dropped.
pub struct Lab {
    pub script: std::path::PathBuf,
    pub tag: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(&self.script).args(["down", &self.tag]).output();
    }
}

impl Lab {
    /// The lab, tagged `prefix` and the process id, with its snapshot in a new temporary
    /// directory; `None` (and a line saying why) where it cannot be built: it needs root.
    pub fn up(prefix: &str) -> Option<(Lab, tempfile::TempDir)> {
        if effective_uid() != 0 {
            eprintln!("skipped: needs root for network namespaces, veth and raw sockets (CI runs as root)");
            return None;
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("root").to_path_buf();
        let tag = format!("{prefix}{}", std::process::id() % 100000);
        let tmp = tempfile::tempdir().expect("tmp");
        let lab = Lab { script: repo.join("tools/netns-lab.sh"), tag: tag.clone() };
        lab.run(&["up", &tag, tmp.path().to_str().expect("utf8")]).expect("netns-lab up");
        Some((lab, tmp))
    }

    /// `tools/netns-lab.sh ARGS...`.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut full = vec![self.script.to_str().expect("utf8")];
        full.extend_from_slice(args);
        sh(&full)
    }
}

pub struct Running {
    pub child: std::process::Child,
}

impl Running {
    pub fn start(snapshot: &Path, host: &str, control: &Path, threads: usize, extra: &[&str]) -> Running {
        Running::start_from(&["--snapshot", snapshot.to_str().expect("utf8")], host, control, threads, extra)
    }

    /// `edgepath run` with its snapshot from `source` (`--snapshot FILE`, `--etcd URL …`).
    pub fn start_from(source: &[&str], host: &str, control: &Path, threads: usize, extra: &[&str]) -> Running {
        let child = Command::new(env!("CARGO_BIN_EXE_edgepath"))
            .arg("run")
            .args(source)
            .args(["--host", host, "--control", control.to_str().expect("utf8")])
            .args(["--threads", &threads.to_string()])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start edgepath");
        Running { child }
    }

    pub fn signal(&self, sig: &str) {
        sh(&["kill", sig, &self.child.id().to_string()]).expect("signal");
    }

    /// Stop with SIGTERM; whether it exited cleanly within 5 s, and its stdout and stderr.
    pub fn stop(mut self) -> (bool, String, String) {
        self.signal("-TERM");
        let started = Instant::now();
        let clean = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s.success();
            }
            if started.elapsed() > Duration::from_secs(5) {
                let _ = self.child.kill();
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = self.child.wait_with_output().expect("output");
        (clean, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Wait up to `secs` for `f` to hold, looking every 10 ms.
pub fn until(secs: f64, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Seconds from `since` until `ns` gets an answer from `dst`: pings every 10 ms for 3 s and takes
/// the first sequence number answered (to within the 10 ms between pings).
pub fn first_answer(since: Instant, ns: &str, dst: &str) -> Option<f64> {
    let start = since.elapsed().as_secs_f64();
    let out = in_ns(ns, &["ping", "-n", "-i", "0.01", "-w", "3", "-c", "1", dst]).ok()?;
    let seq: u32 =
        out.lines().find_map(|l| l.split("icmp_seq=").nth(1)).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok())?;
    Some(start + seq.saturating_sub(1) as f64 * 0.01)
}
