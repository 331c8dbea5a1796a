//! SPEC §9.1 against real etcd servers (Debian's etcd-server), each on loopback ports of its own:
//! push and pull, a publication in many transactions handed over once and whole, the watch
//! resumed across a cut and read again when compacted, etcd killed and restarted, the agent
//! record's lease, TLS with a CA made here. Where etcd is not installed each test says so and
//! skips; CI installs it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgepath_etcd::server::Server;
use edgepath_etcd::{pull, push, Config, Follower, Published, Tls};
use etcd_client::{Client, GetOptions, Txn, TxnOp};
use serde_json::{json, Value};

fn snapshot(case: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps").join(case).join("snapshot.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("snapshot")).expect("json")
}

fn config(url: &str, prefix: &str) -> Config {
    Config::new(url, prefix, Tls::default()).expect("config")
}

/// Run `f` with a client of `url` on a runtime of its own.
fn with_client<T>(url: &str, f: impl AsyncFnOnce(&mut Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut c = Client::connect([url], None).await.expect("connect");
        f(&mut c).await
    })
}

/// Every key under `prefix` with its value and mod revision.
fn keys(url: &str, prefix: &str) -> Vec<(String, String, i64)> {
    with_client(url, async |c| {
        let r = c.get(format!("{prefix}/"), Some(GetOptions::new().with_prefix())).await.expect("get");
        r.kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap_or("").to_string(), kv.value_str().unwrap_or("").to_string(), kv.mod_revision()))
            .collect()
    })
}

/// The same document, whatever the order of each collection's resources.
fn same(a: &Value, b: &Value) -> bool {
    let norm = |d: &Value| -> Value {
        let mut d = d.clone();
        if let Some(o) = d.as_object_mut() {
            o.retain(|_, v| !v.as_array().is_some_and(Vec::is_empty));
            for v in o.values_mut() {
                if let Some(a) = v.as_array_mut() {
                    a.sort_by_key(|x| x["id"].as_str().unwrap_or("").to_string());
                }
            }
        }
        d
    };
    norm(a) == norm(b)
}

/// The next version the follower hands over within `secs`.
fn next(f: &Follower, secs: u64) -> Option<Published> {
    f.wait(Duration::from_secs(secs))
}

fn version_of(p: &Published) -> u64 {
    p.document.as_ref().expect("a document")["version"].as_u64().expect("version")
}

#[test]
fn push_writes_what_changed_and_the_version_last_and_pull_reads_it_back() {
    let Some(etcd) = Server::start(None) else { return };
    let cfg = config(&etcd.url(), "/e");
    let mut doc = snapshot("fip-dnat-inbound");
    let first = push(&cfg, &doc).expect("push");
    assert!(first.written > 20 && first.deleted == 0 && first.unchanged == 0, "{first:?}");
    let before = keys(&etcd.url(), "/e");
    let version_rev = |k: &[(String, String, i64)]| k.iter().find(|(k, _, _)| k == "/e/version").map(|(_, _, r)| *r).expect("version");
    assert!(before.iter().all(|(_, _, r)| *r <= version_rev(&before)), "the version is written last");
    assert!(same(&pull(&cfg).expect("pull").0, &doc), "pull reads back what was pushed");

    // One floating IP removed, one port changed: one key written, one deleted, the rest alone.
    doc["version"] = json!(2);
    let fips = doc["floatingips"].as_array_mut().expect("fips");
    let gone = fips.pop().expect("a fip")["id"].as_str().expect("id").to_string();
    doc["ports"][0]["name"] = json!("renamed");
    let changed = doc["ports"][0]["id"].as_str().expect("id").to_string();
    let second = push(&cfg, &doc).expect("push");
    assert_eq!((second.written, second.deleted, second.unchanged), (1, 1, first.written - 2), "{second:?}");
    let after = keys(&etcd.url(), "/e");
    assert!(!after.iter().any(|(k, _, _)| *k == format!("/e/floatingips/{gone}")), "the removed resource's key is deleted");
    for (k, _, r) in &after {
        let old = before.iter().find(|(b, _, _)| b == k).map(|(_, _, r)| *r);
        if *k == format!("/e/ports/{changed}") || k == "/e/version" {
            assert!(old < Some(*r), "{k} written again");
        } else {
            assert_eq!(old, Some(*r), "{k} left alone");
        }
    }
    assert!(after.iter().all(|(_, _, r)| *r <= version_rev(&after)), "the version is written last");
    let (pulled, rev) = pull(&cfg).expect("pull");
    assert!(same(&pulled, &doc) && rev == version_rev(&after), "pull reads the new version at its revision");

    // The same version again: nothing to write; a change without a greater version: refused.
    assert_eq!(push(&cfg, &doc).expect("push").revision, None);
    doc["ports"][0]["name"] = json!("again");
    let refused = push(&cfg, &doc).expect_err("the version must grow").0;
    assert!(refused.ends_with("publishes version 2; the file's version 2 must be greater"), "{refused}");
    // Nothing published under another prefix: a line saying so.
    let none = pull(&config(&etcd.url(), "/nothing")).expect_err("nothing published").0;
    assert!(none.ends_with("no snapshot published (/nothing/version absent)"), "{none}");
}

/// Port resources, `n` of them, for publications large enough to need many transactions.
fn ports(n: usize) -> Vec<Value> {
    (0..n).map(|k| json!({"id": format!("p{k:04}"), "network_id": "n1", "mac_address": "fa:16:3e:00:00:01"})).collect()
}

#[test]
fn a_publication_in_many_transactions_is_handed_over_once_and_whole() {
    let Some(etcd) = Server::start(None) else { return };
    let cfg = config(&etcd.url(), "/m");
    let follower = Follower::start(cfg.clone(), "host-a").expect("follow");
    assert!(next(&follower, 1).is_none(), "nothing published, nothing handed over");
    // A slow publisher: 300 resources in three transactions a while apart, then the version.
    let ports = ports(300);
    for chunk in ports.chunks(100) {
        with_client(&etcd.url(), async |c| {
            let ops: Vec<TxnOp> =
                chunk.iter().map(|p| TxnOp::put(format!("/m/ports/{}", p["id"].as_str().unwrap_or("")), p.to_string(), None)).collect();
            c.txn(Txn::new().and_then(ops)).await.expect("txn");
        });
        assert!(next(&follower, 1).is_none(), "resources without their version are not a publication");
    }
    with_client(&etcd.url(), async |c| c.put("/m/version", "1", None).await.expect("put")).header();
    let first = next(&follower, 5).expect("version 1 handed over");
    let doc = first.document.as_ref().expect("document");
    assert_eq!((doc["version"].as_u64(), doc["ports"].as_array().map(Vec::len)), (Some(1), Some(300)), "whole");
    assert!(next(&follower, 1).is_none(), "once");

    // push itself: 450 resources changed and 300 gone, in transactions of at most 128.
    let mut doc = json!({"version": 2, "ports": self::ports(750)[300..].to_vec()});
    let pushed = push(&cfg, &doc).expect("push");
    assert_eq!((pushed.written, pushed.deleted), (450, 300), "{pushed:?}");
    let second = next(&follower, 5).expect("version 2");
    assert!(same(second.document.as_ref().expect("doc"), &doc) && second.revision == pushed.revision.expect("revision"));
    assert!(next(&follower, 1).is_none(), "once");
    // Keys that make no snapshot: handed over as a refusal naming the key.
    doc["version"] = json!(3);
    with_client(&etcd.url(), async |c| c.put("/m/ports/p0500", "{\"id\": \"other\"}", None).await.expect("put")).header();
    with_client(&etcd.url(), async |c| c.put("/m/version", "3", None).await.expect("put")).header();
    let bad = next(&follower, 5).expect("version 3").document.expect_err("refused").0;
    assert_eq!(bad, "etcd key /m/ports/p0500: holds the resource of id \"other\"");
}

/// A TCP relay to a server that the test can cut (every connection closed, new ones refused)
/// and put back, as a network partition would.
struct Relay {
    port: u16,
    on: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(to: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (on, conns) = (Arc::new(AtomicBool::new(true)), Arc::new(Mutex::new(Vec::<TcpStream>::new())));
        let (on2, conns2) = (on.clone(), conns.clone());
        std::thread::spawn(move || {
            for c in listener.incoming().flatten() {
                if !on2.load(Ordering::SeqCst) {
                    let _ = c.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(s) = TcpStream::connect(("127.0.0.1", to)) else { continue };
                let mut list = conns2.lock().expect("lock");
                for (mut a, mut b) in [
                    (c.try_clone().expect("clone"), s.try_clone().expect("clone")),
                    (s.try_clone().expect("clone"), c.try_clone().expect("clone")),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = a.read(&mut buf) {
                            if n == 0 || b.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = b.shutdown(Shutdown::Both);
                    });
                }
                list.extend([c, s]);
            }
        });
        Relay { port, on, conns }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.on.store(false, Ordering::SeqCst);
        for c in self.conns.lock().expect("lock").drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn mend(&self) {
        self.on.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_cut_resumes_the_watch_and_a_compacted_one_reads_the_latest_version() {
    let Some(etcd) = Server::start(None) else { return };
    let port = etcd.url().rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let relay = Relay::start(port);
    let direct = config(&etcd.url(), "/c");
    let follower = Follower::start(config(&relay.url(), "/c"), "host-a").expect("follow");
    let doc = |v: u64, n: usize| json!({"version": v, "ports": ports(n)});
    push(&direct, &doc(1, 3)).expect("push");
    assert_eq!(version_of(&next(&follower, 5).expect("v1")), 1);

    // Cut, and while cut: nothing changes; mended, nothing is handed over again.
    relay.cut();
    std::thread::sleep(Duration::from_millis(1500));
    relay.mend();
    assert!(next(&follower, 4).is_none(), "nothing applied twice across a reconnect");

    // Cut again; two versions published and the history compacted past the watch's revision.
    relay.cut();
    push(&direct, &doc(2, 4)).expect("push");
    let three = push(&direct, &doc(3, 5)).expect("push").revision.expect("revision");
    with_client(&etcd.url(), async |c| c.compact(three, None).await.expect("compact")).header();
    relay.mend();
    let latest = next(&follower, 10).expect("read again after the compacted watch");
    assert_eq!((version_of(&latest), latest.revision), (3, three), "the latest version, not the one between");
    assert!(next(&follower, 1).is_none(), "once");
    // And it follows on from there.
    push(&direct, &doc(4, 6)).expect("push");
    assert_eq!(version_of(&next(&follower, 5).expect("v4")), 4);
}

#[test]
fn etcd_killed_and_restarted_the_follower_comes_back() {
    let Some(mut etcd) = Server::start(None) else { return };
    let cfg = config(&etcd.url(), "/k");
    let follower = Follower::start(cfg.clone(), "host-a").expect("follow");
    push(&cfg, &json!({"version": 1, "ports": ports(2)})).expect("push");
    assert_eq!(version_of(&next(&follower, 5).expect("v1")), 1);
    etcd.kill();
    assert!(push(&cfg, &json!({"version": 2})).is_err(), "etcd is down");
    std::thread::sleep(Duration::from_secs(2));
    etcd.restart();
    let t = Instant::now();
    push(&cfg, &json!({"version": 2, "ports": ports(3)})).expect("push");
    let v2 = next(&follower, 10).expect("v2 after the restart");
    assert_eq!(version_of(&v2), 2);
    // The pause between attempts is capped at 3 s.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn the_agent_record_lives_under_a_lease_and_goes_with_its_follower() {
    let Some(etcd) = Server::start(None) else { return };
    let cfg = config(&etcd.url(), "/a");
    let follower = Follower::start(cfg, "host-a").expect("follow");
    follower.report(json!({"host": "host-a", "version": 7}).to_string());
    let record = || {
        with_client(&etcd.url(), async |c| {
            let r = c.get("/a/agents/host-a", None).await.expect("get");
            r.kvs().first().map(|kv| (kv.value_str().unwrap_or("").to_string(), kv.lease()))
        })
    };
    let t = Instant::now();
    let seen = loop {
        match record() {
            Some((v, lease)) if v.contains("\"version\":7") => break (v, lease),
            _ if t.elapsed() > Duration::from_secs(5) => panic!("no record: {:?}", record()),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(seen.1 != 0, "under a lease: {seen:?}");
    drop(follower);
    assert_eq!(record(), None, "gone with its follower (the lease revoked)");
}

#[test]
fn tls_with_a_ca_made_here() {
    let dir = std::env::temp_dir().join(format!("edgepath-etcd-tls-{}", std::process::id()));
    let Some((tls, client)) = edgepath_etcd::server::test_ca(&dir) else { return };
    let Some(etcd) = Server::start(Some(tls)) else { return };
    assert!(etcd.url().starts_with("https://"));
    let cfg = Config::new(&etcd.url(), "/t", client.clone()).expect("config");
    let follower = Follower::start(cfg.clone(), "host-a").expect("follow");
    let doc = json!({"version": 5, "ports": ports(2)});
    push(&cfg, &doc).expect("push over TLS");
    assert!(same(&pull(&cfg).expect("pull over TLS").0, &doc));
    assert_eq!(version_of(&next(&follower, 5).expect("followed over TLS")), 5);
    // Without a client certificate the server refuses.
    let anonymous = Config::new(&etcd.url(), "/t", Tls { ca: client.ca, ..Tls::default() }).expect("config");
    assert!(pull(&anonymous).is_err(), "a client without a certificate is refused");
    let _ = std::fs::remove_dir_all(&dir);
}
