//! `edgepath run` on real interfaces (issue 5, first part): network namespaces for vm1 and for an
//! external host behind the uplink, joined to edgepath by veth pairs whose other ends it binds.
//! The external host pings vm1's floating IP and vm1 pings the external host through it — real
//! Linux stacks on both sides, ARP included — and SIGTERM stops edgepath cleanly.
//!
//! Needs root (namespaces, veth, raw sockets); CI runs as root. Elsewhere it skips, saying why.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sh(args: &[&str]) -> Result<String, String> {
    let o = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!("{}: {}{}", args.join(" "), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    }
}

fn in_ns(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    sh(&full)
}

/// A TCP server in a namespace: counts what it receives, answers the count, once per connection.
const SERVER: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(4); s.settimeout(20)
for _ in range(int(sys.argv[3])):
    c, _ = s.accept(); c.settimeout(20); n = 0
    while True:
        d = c.recv(65536)
        if not d: break
        n += len(d)
    c.sendall(str(n).encode()); c.close()
"#;

/// A TCP client: sends `bytes` in `chunks` with `pause` seconds between them, prints the answer.
const CLIENT: &str = r#"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
total, chunks, pause = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
for i in range(chunks):
    c.sendall(b"x" * (total // chunks)); time.sleep(pause)
c.shutdown(socket.SHUT_WR); print(c.recv(100).decode())
"#;

fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).and_then(|u| u.parse().ok()))
        .unwrap_or(u32::MAX)
}

/// Namespaces and veths, removed when dropped.
struct Lab {
    namespaces: Vec<String>,
    links: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for l in &self.links {
            let _ = sh(&["ip", "link", "del", l]);
        }
        for n in &self.namespaces {
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }
}

/// A namespace `ns` with `eth0` (MAC, address, default route), the other end `root` left here.
fn host(lab: &mut Lab, ns: &str, root: &str, mac: &str, addr: &str, route: &[&str]) -> Result<(), String> {
    sh(&["ip", "netns", "add", ns])?;
    lab.namespaces.push(ns.to_string());
    sh(&["ip", "link", "add", root, "type", "veth", "peer", "name", &format!("{root}p")])?;
    lab.links.push(root.to_string());
    sh(&["ip", "link", "set", &format!("{root}p"), "netns", ns, "name", "eth0"])?;
    in_ns(ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
    in_ns(ns, &["ip", "link", "set", "lo", "up"])?;
    in_ns(ns, &["ip", "link", "set", "eth0", "address", mac])?;
    // edgepath takes MTU-sized frames: no segmentation offload toward it (docs/DECISIONS.md).
    in_ns(ns, &["ip", "link", "set", "eth0", "gso_max_size", "1500"])?;
    in_ns(ns, &["ip", "addr", "add", addr, "dev", "eth0"])?;
    in_ns(ns, &["ip", "link", "set", "eth0", "up"])?;
    let mut r = vec!["ip", "route", "add"];
    r.extend_from_slice(route);
    in_ns(ns, &r)?;
    let _ = sh(&["sysctl", "-qw", &format!("net.ipv6.conf.{root}.disable_ipv6=1")]);
    sh(&["ip", "link", "set", root, "up"])?;
    Ok(())
}

#[test]
fn floating_ip_pings_through_a_live_edgepath() {
    if effective_uid() != 0 {
        eprintln!("skipped: needs root for network namespaces, veth and raw sockets (CI runs as root)");
        return;
    }
    let tag = format!("{}", std::process::id() % 10000);
    let (vm_if, up_if) = (format!("ev{tag}"), format!("eu{tag}"));
    let (vm_ns, ext_ns) = (format!("epvm{tag}"), format!("epext{tag}"));
    let mut lab = Lab { namespaces: Vec::new(), links: Vec::new() };
    host(&mut lab, &vm_ns, &vm_if, "fa:16:3e:00:00:03", "10.0.0.3/24", &["default", "via", "10.0.0.1"]).expect("vm1 namespace");
    host(&mut lab, &ext_ns, &up_if, "02:aa:00:00:00:01", "198.51.100.1/24", &["203.0.113.0/24", "via", "198.51.100.2"])
        .expect("external namespace");
    in_ns(&ext_ns, &["ip", "addr", "add", "192.0.2.50/32", "dev", "lo"]).expect("external host address");

    // The floating-IP scenario, with only vm1 and the uplink bound, to the veths.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("root").to_path_buf();
    let text = std::fs::read_to_string(repo.join("pcaps/fip-dnat-inbound/snapshot.json")).expect("snapshot");
    let mut snap: serde_json::Value = serde_json::from_str(&text).expect("json");
    snap["hosts"][0].as_object_mut().map(|h| h.remove("underlay_interface"));
    for p in snap["ports"].as_array_mut().expect("ports") {
        let name = match p["id"].as_str() {
            Some("vm1") => Some(vm_if.clone()),
            Some("edge-up") => Some(up_if.clone()),
            _ => None,
        };
        match name {
            Some(n) => p["binding:profile"] = serde_json::json!({"interface_name": n}),
            None => {
                p.as_object_mut().map(|o| o.remove("binding:profile"));
            }
        }
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let snap_path = tmp.path().join("snap.json");
    std::fs::write(&snap_path, snap.to_string()).expect("write");

    let ctl = tmp.path().join("ctl.sock");
    let ctl_s = ctl.to_str().expect("utf8").to_string();
    let ask = |cmd: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_edgepath")).args([cmd, "--control", &ctl_s]).output().expect("client");
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let status_version = |v: u64| {
        let want = format!("running snapshot version {v} since");
        (0..40).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            ask("status").1.contains(&want)
        })
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgepath"))
        .args(["run", "--snapshot", snap_path.to_str().expect("utf8"), "--host", "host-a", "--control", &ctl_s])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgepath");
    std::thread::sleep(Duration::from_millis(500));

    let inbound = in_ns(&ext_ns, &["ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", "192.0.2.50", "203.0.113.10"]);
    let outbound = in_ns(&vm_ns, &["ping", "-c", "3", "-i", "0.2", "-W", "2", "192.0.2.50"]);

    // TCP both ways through the floating IP: vm1 → outside leaves as FIP-A; outside → FIP-A
    // reaches vm1. The namespaces' veths offload checksums, so frames arrive with them pending.
    let script = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).expect("script");
        p.to_str().expect("utf8").to_string()
    };
    let (server, client) = (script("server.py", SERVER), script("client.py", CLIENT));
    let mut ext_server =
        Command::new("ip").args(["netns", "exec", &ext_ns, "python3", &server, "192.0.2.50", "8080", "2"]).spawn().expect("server");
    let mut vm_server =
        Command::new("ip").args(["netns", "exec", &vm_ns, "python3", &server, "10.0.0.3", "9090", "1"]).spawn().expect("server");
    std::thread::sleep(Duration::from_millis(300));
    let out_tcp = in_ns(&vm_ns, &["python3", &client, "192.0.2.50", "8080", "300000", "10", "0"]);
    let in_tcp = in_ns(&ext_ns, &["python3", &client, "203.0.113.10", "9090", "300000", "10", "0"]);
    // A transfer that spans a hot reload keeps its connection.
    let during = {
        let (ns, c) = (vm_ns.clone(), client.clone());
        std::thread::spawn(move || in_ns(&ns, &["python3", &c, "192.0.2.50", "8080", "100000", "10", "0.15"]))
    };
    std::thread::sleep(Duration::from_millis(500));
    snap["version"] = 5.into();
    std::fs::write(&snap_path, snap.to_string()).expect("write v5");
    sh(&["kill", "-HUP", &child.id().to_string()]).expect("SIGHUP");
    let during = during.join().expect("transfer thread");
    let reloaded_mid = status_version(5);
    for server in [&mut ext_server, &mut vm_server] {
        let _ = server.kill();
        let _ = server.wait();
    }

    // The operator tools, over the owner-only control socket.
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&ctl).expect("socket").permissions()) & 0o777;
    let (status0, stats, flows, conntrack) = (ask("status"), ask("stats"), ask("flows"), ask("conntrack"));
    // Hot reload: a new version on SIGHUP; a broken file refused, the old version kept; a change of
    // the file without a signal picked up too; traffic still crosses afterwards.
    snap["version"] = 6.into();
    std::fs::write(&snap_path, snap.to_string()).expect("write v2");
    sh(&["kill", "-HUP", &child.id().to_string()]).expect("SIGHUP");
    let reloaded = status_version(6);
    std::fs::write(&snap_path, "{ not json").expect("write broken");
    sh(&["kill", "-HUP", &child.id().to_string()]).expect("SIGHUP");
    std::thread::sleep(Duration::from_millis(300));
    let kept = status_version(6);
    snap["version"] = 7.into();
    std::fs::write(&snap_path, snap.to_string()).expect("write v7");
    let watched = status_version(7);
    let after = in_ns(&ext_ns, &["ping", "-c", "2", "-i", "0.2", "-W", "2", "-I", "192.0.2.50", "203.0.113.10"]);

    let started = Instant::now();
    sh(&["kill", "-TERM", &child.id().to_string()]).expect("SIGTERM");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(inbound.is_ok(), "ping to the floating IP failed: {inbound:?}\n{stdout}\n{stderr}");
    assert!(outbound.is_ok(), "ping from vm1 failed: {outbound:?}\n{stdout}\n{stderr}");
    assert!(status.is_some_and(|s| s.success()), "SIGTERM did not stop edgepath cleanly: {status:?}\n{stderr}");
    assert!(stdout.contains("frames in:"), "the counters are printed on exit:\n{stdout}");
    assert!(stderr.contains("datapath running"), "tracing logs on stderr:\n{stderr}");
    assert_eq!(mode, 0o600, "the control socket is owner-only");
    assert_eq!(out_tcp.as_deref().map(str::trim), Ok("300000"), "TCP from vm1 through FIP-A\n{stderr}");
    assert_eq!(in_tcp.as_deref().map(str::trim), Ok("300000"), "TCP to FIP-A\n{stderr}");
    assert_eq!(during.as_deref().map(str::trim), Ok("100000"), "a transfer across a hot reload\n{stderr}");
    assert!(reloaded_mid, "the reload during the transfer happened\n{stderr}");
    assert!(status0.1.contains("host host-a running snapshot version 5 since"), "{status0:?}");
    assert!(
        stats.1.contains("forwarded:") && stats.1.contains(&format!("interface {vm_if}: in")) && stats.1.contains("flows:"),
        "{stats:?}"
    );
    assert!(flows.1.contains(&format!("in {up_if} ")) && flows.1.contains("ip_dst=10.0.0.3") && flows.1.contains("hits="), "{flows:?}");
    assert_eq!(conntrack.0, Some(0), "{conntrack:?}");
    assert!(reloaded, "SIGHUP did not activate version 2\n{stderr}");
    assert!(kept, "a broken snapshot replaced the running one\n{stderr}");
    assert!(stderr.contains("snapshot refused, version 6 keeps running"), "{stderr}");
    assert!(watched, "a changed file was not picked up\n{stderr}");
    assert!(after.is_ok(), "traffic after the reloads: {after:?}");
    drop(lab);
}

/// A missing interface is one clear line and exit status 2 (no root needed).
#[test]
fn run_refuses_a_missing_interface() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("root").to_path_buf();
    let snap = repo.join("pcaps/l2-local/snapshot.json");
    let o = Command::new(env!("CARGO_BIN_EXE_edgepath"))
        .args(["run", "--snapshot", snap.to_str().expect("utf8"), "--host", "host-a"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.ends_with("interface \"tap-vm1\" does not exist on this machine\n"), "{err}");
}
