//! edgepath as a host daemon (issue 16): the systemd unit passes `systemd-analyze verify` (with
//! the man pages it names, made by `edgepath generate`), and `run` tells systemd it is ready
//! once its first snapshot runs, what it runs, and that it stops (`Type=notify`), through a
//! notification socket of the test's own.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
use common::*;

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("root").to_path_buf()
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        return eprintln!("skipped: needs systemd-analyze (Debian's systemd)");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let gen = Command::new(env!("CARGO_BIN_EXE_edgepath")).arg("generate").arg(tmp.path()).output().expect("generate");
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
    for page in ["edgepath.1", "edgepath-run.1", "edgepath-snapshot-push.1", "edgepath-status.1"] {
        assert!(tmp.path().join("man/man1").join(page).exists(), "{page}");
    }
    for c in ["edgepath.bash", "_edgepath", "edgepath.fish"] {
        let text = std::fs::read_to_string(tmp.path().join("completions").join(c)).expect("completion");
        assert!(text.contains("snapshot") && text.contains("--etcd"), "{c} completes the subcommands and options");
    }
    // The unit as installed, but with this build's binary where /usr/bin/edgepath would be.
    let unit = std::fs::read_to_string(repo().join("tools/debian/edgepath.service")).expect("unit");
    let unit = unit.replace("/usr/bin/edgepath", env!("CARGO_BIN_EXE_edgepath"));
    let path = tmp.path().join("edgepath.service");
    std::fs::write(&path, unit).expect("write");
    let o = Command::new("systemd-analyze").arg("verify").arg(&path).env("MANPATH", tmp.path().join("man")).output().expect("verify");
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

#[test]
fn run_tells_systemd_when_it_is_ready_what_it_runs_and_that_it_stops() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sock = tmp.path().join("notify");
    let listener = UnixDatagram::bind(&sock).expect("bind");
    listener.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let ctl = tmp.path().join("ctl.sock");
    let snap = repo().join("pcaps/l2-local/snapshot.json");
    let child = Command::new(env!("CARGO_BIN_EXE_edgepath"))
        .args(["run", "--snapshot", snap.to_str().expect("utf8"), "--host", "host-a", "--control", ctl.to_str().expect("utf8")])
        .env("NOTIFY_SOCKET", &sock)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let run = Running { child };
    let mut buf = [0u8; 4096];
    let n = listener.recv(&mut buf).expect("a notification");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.lines().any(|l| l == "STATUS=running snapshot version 1"), "{ready}");
    // Ready means serving: the control socket answers at once.
    let status =
        Command::new(env!("CARGO_BIN_EXE_edgepath")).args(["status", "--control", ctl.to_str().expect("utf8")]).output().expect("status");
    assert!(status.status.success(), "answers once ready");
    let (clean, _, stderr) = run.stop();
    let n = listener.recv(&mut buf).expect("a notification");
    let stopping = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    assert!(clean, "{stderr}");
}
