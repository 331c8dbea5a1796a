//! `edgepath run --etcd` and `snapshot push|pull|check --etcd` (SPEC §9.1) against real etcd
//! servers (Debian's etcd-server and etcdctl): the version published runs, a bad one is refused
//! and shown by `status` while the old one runs on, the agent record lives under its lease; and,
//! as root on the lab of `tools/netns-lab.sh`, two hosts driven by one etcd — a new floating IP
//! answers pings within a second of its push, and etcd killed during a ping changes nothing.
//! Each test says why it skips where etcd (or root) is missing; CI has both.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use edgepath_etcd::server::Server;
use serde_json::{json, Value};

mod common;
use common::*;

fn edgepath(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_edgepath")).args(args).output().expect("edgepath");
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// `etcdctl ARGS…` (v3 API) against `url`.
fn etcdctl(url: &str, args: &[&str]) -> String {
    let o = Command::new("etcdctl").env("ETCDCTL_API", "3").args(["--endpoints", url]).args(args).output().expect("etcdctl");
    assert!(o.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The agent record of `host` under `prefix`, if any.
fn agent(url: &str, prefix: &str, host: &str) -> Option<Value> {
    let out = etcdctl(url, &["get", &format!("{prefix}/agents/{host}"), "--print-value-only"]);
    serde_json::from_str(out.trim()).ok()
}

fn status(ctl: &Path) -> Option<Value> {
    let (ok, out, _) = edgepath(&["status", "--format", "json", "--control", ctl.to_str()?]);
    ok.then(|| serde_json::from_str(&out).ok()).flatten()
}

/// Push `snap` (written to `dir`) to `url` under `prefix`.
fn push(dir: &Path, url: &str, prefix: &str, snap: &Value) -> String {
    let file = dir.join(format!("push-{}.json", snap["version"]));
    std::fs::write(&file, snap.to_string()).expect("write");
    let (ok, out, err) = edgepath(&["snapshot", "push", file.to_str().expect("utf8"), "--etcd", url, "--prefix", prefix]);
    assert!(ok, "push: {out}{err}");
    out
}

/// A real etcd server, with etcdctl beside it; `None` (saying why) where either is missing.
fn etcd() -> Option<Server> {
    if !etcd_tools() {
        return None;
    }
    Server::start(None)
}

fn etcd_tools() -> bool {
    let ok = Command::new("etcdctl").arg("version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: needs etcdctl (Debian's etcd-client; .ci/run installs it)");
    }
    ok
}

#[test]
fn run_follows_etcd_refuses_a_bad_version_and_keeps_its_agent_record() {
    let Some(etcd) = etcd() else { return };
    let url = etcd.url();
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("root").to_path_buf();
    let mut snap: Value =
        serde_json::from_str(&std::fs::read_to_string(repo.join("pcaps/l2-local/snapshot.json")).expect("read")).expect("json");
    snap["version"] = json!(10);
    push(tmp.path(), &url, "/r", &snap);
    let (ok, out, _) = edgepath(&["snapshot", "check", "--etcd", &url, "--prefix", "/r"]);
    assert!(ok && out.contains(": ok, version 10:"), "{out}");
    let (ok, pulled, _) = edgepath(&["snapshot", "pull", "--etcd", &url, "--prefix", "/r"]);
    let file = tmp.path().join("pulled.json");
    std::fs::write(&file, &pulled).expect("write");
    let (checked, out, err) = edgepath(&["snapshot", "check", file.to_str().expect("utf8")]);
    assert!(ok && checked, "pull writes a file check accepts: {out}{err}");

    // A file that does not validate: one line naming it and the resource, nothing written.
    let mut bad = snap.clone();
    bad["version"] = json!(99);
    bad["ports"][0]["network_id"] = json!("no-such-network");
    let file = tmp.path().join("bad.json");
    std::fs::write(&file, bad.to_string()).expect("write");
    let (ok, out, err) = edgepath(&["snapshot", "push", file.to_str().expect("utf8"), "--etcd", &url, "--prefix", "/r"]);
    let line = format!("edgepath: {}: ports/{}: network_id: ", file.display(), bad["ports"][0]["id"].as_str().expect("id"));
    assert!(!ok && out.is_empty() && err.starts_with(&line) && err.lines().count() == 1, "{err}");
    assert_eq!(etcdctl(&url, &["get", "/r/version", "--print-value-only"]).trim(), "10", "nothing written");

    let ctl = tmp.path().join("ctl.sock");
    let run = Running::start_from(&["--etcd", &url, "--prefix", "/r"], "host-a", &ctl, 1, &[]);
    let version = |v: u64| until(10.0, || status(&ctl).is_some_and(|s| s["version"] == v));
    assert!(version(10), "runs the published version: {:?}", status(&ctl));
    let s = status(&ctl).expect("status");
    assert!(s["snapshot"].as_str().is_some_and(|x| x.starts_with(&format!("etcd {url} prefix /r"))) && s["refused"].is_null(), "{s}");
    let record = |v: u64| until(5.0, || agent(&url, "/r", "host-a").is_some_and(|a| a["version"] == v));
    assert!(record(10), "the agent record: {:?}", agent(&url, "/r", "host-a"));
    let a = agent(&url, "/r", "host-a").expect("record");
    assert_eq!(a["ports"].as_array().map(Vec::len), Some(7), "with the ports' states: {a}");
    assert!(a["ports"].as_array().is_some_and(|p| p.iter().all(|p| p["state"] == "absent")), "{a}");

    // A new version: applied within a second.
    snap["version"] = json!(11);
    let pushed = Instant::now();
    push(tmp.path(), &url, "/r", &snap);
    assert!(version(11), "version 11 runs");
    let took = pushed.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?} from push to running");
    assert!(record(11));

    // A bad version, published by hand: refused, shown, and 11 runs on.
    etcdctl(&url, &["put", "/r/ports/bad", r#"{"id": "bad", "network_id": "no-such-network"}"#]);
    etcdctl(&url, &["put", "/r/version", "12"]);
    let refused = until(5.0, || status(&ctl).is_some_and(|s| !s["refused"].is_null()));
    let s = status(&ctl).expect("status");
    assert!(refused && s["version"] == 11, "{s}");
    let line = s["refused"].as_str().expect("line");
    assert!(line.starts_with(&format!("version 12: etcd {url} prefix /r at revision ")) && line.contains(": ports/bad: "), "{line}");
    let (_, text, _) = edgepath(&["status", "--control", ctl.to_str().expect("utf8")]);
    assert!(text.lines().any(|l| l.starts_with("refused version 12: ")), "{text}");
    assert!(until(5.0, || agent(&url, "/r", "host-a").is_some_and(|a| a["refused"] == line)), "the record shows it too");
    // Mended: applied, and the refusal gone.
    etcdctl(&url, &["del", "/r/ports/bad"]);
    etcdctl(&url, &["put", "/r/version", "13"]);
    assert!(version(13) && status(&ctl).is_some_and(|s| s["refused"].is_null()));

    // kill -9: the record outlives the process by at most the lease's TTL.
    let pid = run.child.id().to_string();
    sh(&["kill", "-9", &pid]).expect("kill");
    let killed = Instant::now();
    assert!(agent(&url, "/r", "host-a").is_some(), "the lease holds it a while");
    let ttl = Duration::from_secs(edgepath_etcd::LEASE_TTL as u64);
    assert!(until(ttl.as_secs_f64() + 2.0, || agent(&url, "/r", "host-a").is_none()), "gone within the TTL");
    assert!(killed.elapsed() <= ttl + Duration::from_secs(2), "{:?}", killed.elapsed());
    drop(run);

    // Stopped cleanly: the record goes at once.
    let run = Running::start_from(&["--etcd", &url, "--prefix", "/r"], "host-a", &ctl, 1, &[]);
    assert!(version(13) && record(13));
    let (clean, _, stderr) = run.stop();
    assert!(clean, "{stderr}");
    assert!(agent(&url, "/r", "host-a").is_none(), "gone at once with SIGTERM");
}

#[test]
fn a_first_version_refused_is_one_line_and_an_etcd_away_is_waited_for() {
    let Some(etcd) = etcd() else { return };
    let url = etcd.url();
    etcdctl(&url, &["put", "/f/ports/p1", r#"{"id": "p1"}"#]);
    etcdctl(&url, &["put", "/f/version", "1"]);
    let tmp = tempfile::tempdir().expect("tmp");
    let ctl = tmp.path().join("ctl.sock");
    let (ok, _, err) = edgepath(&["run", "--etcd", &url, "--prefix", "/f", "--host", "h", "--control", ctl.to_str().expect("utf8")]);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("edgepath: ")).collect();
    assert!(!ok && lines.len() == 1, "{err}");
    assert!(lines[0].starts_with(&format!("edgepath: etcd {url} prefix /f at revision ")) && lines[0].contains(": ports/p1: "), "{err}");
    // Nothing published yet: run waits for it, and stops when asked.
    let run = Running::start_from(&["--etcd", &url, "--prefix", "/nothing-yet"], "h", &ctl, 1, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let (clean, _, stderr) = run.stop();
    assert!(clean && stderr.contains("no snapshot published yet"), "{stderr}");
}

/// The TLS options of the command, end to end: push, check and pull against a server that asks
/// for client certificates, with a CA the test makes; without the client's certificate, one line
/// and exit 2.
#[test]
fn the_command_speaks_tls_to_etcd() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some((tls, client)) = edgepath_etcd::server::test_ca(tmp.path()) else { return };
    let Some(etcd) = Server::start(Some(tls)) else { return };
    let url = etcd.url();
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().and_then(|p| p.to_str()).expect("path").to_string();
    let (ca, cert, key) = (path(&client.ca), path(&client.cert), path(&client.key));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("root").to_path_buf();
    let snap = repo.join("pcaps/l2-local/snapshot.json");
    let with_tls = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--etcd", &url, "--prefix", "/tls", "--etcd-cacert", &ca, "--etcd-cert", &cert, "--etcd-key", &key]);
        edgepath(&all)
    };
    let (ok, out, err) = with_tls(&["snapshot", "push", snap.to_str().expect("utf8")]);
    assert!(ok && out.starts_with("pushed version "), "{out}{err}");
    let (ok, out, err) = with_tls(&["snapshot", "check"]);
    assert!(ok && out.contains(": ok, version "), "{out}{err}");
    let (ok, out, _) = with_tls(&["snapshot", "pull"]);
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&snap).expect("read")).expect("json");
    assert!(
        ok && serde_json::from_str::<Value>(&out)
            .is_ok_and(|d| d["ports"].as_array().map(Vec::len) == file["ports"].as_array().map(Vec::len)),
        "{out}"
    );
    let (ok, _, err) = edgepath(&["snapshot", "pull", "--etcd", &url, "--prefix", "/tls", "--etcd-cacert", &ca]);
    assert!(!ok && err.lines().filter(|l| l.starts_with("edgepath: ")).count() == 1, "refused without a client certificate: {err}");
}

/// Two hosts in namespaces on one etcd: a floating IP pushed for vm2 reaches both datapaths and
/// answers pings from the external host, on vm2's host (host-a, whose uplink it comes by: a VM
/// on host-b is not reachable by a floating IP, DECISIONS "a frame whose egress is a port bound
/// to another host"), within a second of the push; a bad version is refused by both while the
/// floating IP answers on; etcd killed during a ping costs no answer, and restarted, takes the
/// next push.
#[test]
fn two_hosts_on_one_etcd_a_new_fip_answers_and_etcd_down_costs_no_ping() {
    let Some(mut etcd) = etcd() else { return };
    let Some((lab, tmp)) = Lab::up("k") else { return };
    let url = etcd.url();
    let tag = lab.tag.clone();
    let ext = format!("{tag}-ext");
    let mut snap: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("snapshot.json")).expect("snapshot")).expect("json");
    push(tmp.path(), &url, "/lab", &snap);
    let (ctl_a, ctl_b) = (tmp.path().join("a.sock"), tmp.path().join("b.sock"));
    let source = ["--etcd", url.as_str(), "--prefix", "/lab"];
    let a = Running::start_from(&source, "host-a", &ctl_a, 1, &[]);
    let b = Running::start_from(&source, "host-b", &ctl_b, 1, &[]);
    let both = |v: &Value| {
        until(10.0, || status(&ctl_a).is_some_and(|s| s["version"] == *v) && status(&ctl_b).is_some_and(|s| s["version"] == *v))
    };
    assert!(both(&snap["version"]), "both run the published version");
    let ping = |dst: &str, n: &str| in_ns(&ext, &["ping", "-n", "-I", "192.0.2.50", "-c", n, "-i", "0.1", "-W", "1", dst]);
    assert!(ping("203.0.113.10", "3").is_ok(), "vm1 by its floating IP, before");
    assert!(ping("203.0.113.12", "1").is_err(), "no floating IP for vm2 yet");

    // A floating IP for vm2: pushed, and answered within a second.
    let v2 = snap["version"].as_u64().expect("version") + 1;
    snap["version"] = json!(v2);
    let fip = json!({"id": "fip-vm2", "floating_ip_address": "203.0.113.12", "fixed_ip_address": "10.0.0.4",
        "floating_network_id": "ext-net", "port_id": "vm2", "router_id": "r1"});
    snap["floatingips"].as_array_mut().expect("fips").push(fip);
    let pushed = Instant::now();
    push(tmp.path(), &url, "/lab", &snap);
    let answered = first_answer(pushed, &ext, "203.0.113.12");
    assert!(answered.is_some_and(|s| s <= 1.0), "vm2 answers by its new floating IP within a second of the push: {answered:?}");
    assert!(both(&json!(v2)), "both hosts run it");

    // A bad version published by hand: refused by both, shown by their status, and the
    // floating IP answers on.
    etcdctl(&url, &["put", "/lab/floatingips/fip-bad", r#"{"id": "fip-bad", "floating_network_id": "no-such-network"}"#]);
    etcdctl(&url, &["put", "/lab/version", &(v2 + 1).to_string()]);
    let refused = |ctl: &Path| until(5.0, || status(ctl).is_some_and(|s| s["version"] == v2 && !s["refused"].is_null()));
    assert!(refused(&ctl_a) && refused(&ctl_b), "refused by both: {:?}", status(&ctl_a));
    assert!(ping("203.0.113.12", "5").is_ok_and(|o| o.contains(" 0% packet loss")), "the running version forwards on");
    etcdctl(&url, &["del", "/lab/floatingips/fip-bad"]);
    snap["version"] = json!(v2 + 2);
    push(tmp.path(), &url, "/lab", &snap);
    assert!(both(&json!(v2 + 2)), "mended: both run it");
    let v2 = v2 + 2;

    // etcd killed during a ping: every answer comes; restarted, the next push is applied.
    let during = std::thread::scope(|s| {
        let pings = s.spawn(|| ping("203.0.113.12", "30"));
        std::thread::sleep(Duration::from_millis(500));
        etcd.kill();
        pings.join().expect("ping")
    });
    assert!(during.as_ref().is_ok_and(|o| o.contains(" 0% packet loss")), "{during:?}");
    assert!(status(&ctl_a).is_some_and(|s| s["version"] == v2), "the running version stays");
    etcd.restart();
    snap["version"] = json!(v2 + 1);
    snap["floatingips"].as_array_mut().expect("fips").retain(|f| f["id"] != "fip-vm2");
    push(tmp.path(), &url, "/lab", &snap);
    assert!(both(&json!(v2 + 1)), "after the restart both follow again");
    assert!(ping("203.0.113.12", "2").is_err(), "the floating IP is gone with its version");
    assert!(ping("203.0.113.10", "2").is_ok(), "vm1's stays");
    let ((ca, _, ea), (cb, _, eb)) = (a.stop(), b.stop());
    assert!(ca && cb, "{ea}\n{eb}");
}
