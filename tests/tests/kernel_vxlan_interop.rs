//! Interop with the Linux kernel's VXLAN (issue 3 item 9, SPEC §7): a kernel `vxlan` device in a
//! network namespace is host-b's VTEP, with vm4's MAC and address and a static FDB entry toward
//! edgepath's tunnel IP. edgepath runs as host-a on one end of a veth pair (its underlay); the
//! test moves frames between the datapath and the veth with AF_PACKET (pnet).
//!
//! vm1 pings vm4: edgepath resolves host-b's tunnel IP by ARP on the underlay (the kernel
//! answers), encapsulates the echo request, the kernel decapsulates it and answers, and
//! edgepath decapsulates the kernel's VXLAN and delivers the echo reply to vm1. Both sides
//! accept each other's frames.
//!
//! Needs root (network namespaces, veth, vxlan); CI runs as root. Elsewhere it skips, saying why.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use datapath::{Datapath, IfIdx, Instant};
use edgepath_tests::repo_root;
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use pnet_datalink::{Channel, Config, DataLinkReceiver, DataLinkSender};

const VM1: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x03];
const VM4: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x05];

fn sh(args: &[&str]) -> Result<(), String> {
    let o = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()))
    }
}

/// The namespace and veth pair, removed when dropped.
struct Lab {
    ns: String,
    veth: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = sh(&["ip", "link", "del", &self.veth]);
        let _ = sh(&["ip", "netns", "del", &self.ns]);
    }
}

fn setup(tag: &str) -> Result<Lab, String> {
    let lab = Lab { ns: format!("epvx{tag}"), veth: format!("epv{tag}") };
    let peer = format!("epp{tag}");
    let ns = lab.ns.as_str();
    sh(&["ip", "netns", "add", ns])?;
    sh(&["ip", "link", "add", &lab.veth, "type", "veth", "peer", "name", &peer])?;
    sh(&["ip", "link", "set", &peer, "netns", ns])?;
    for cmd in [
        vec!["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
        vec!["ip", "link", "set", "lo", "up"],
        vec!["ip", "addr", "add", "192.168.77.2/24", "dev", &peer],
        vec!["ip", "link", "set", &peer, "up"],
        vec!["ip", "link", "add", "vx0", "type", "vxlan", "id", "100", "local", "192.168.77.2", "dstport", "4789", "nolearning"],
        vec!["ip", "link", "set", "vx0", "address", "fa:16:3e:00:00:05"],
        vec!["ip", "addr", "add", "10.0.0.5/24", "dev", "vx0"],
        vec!["ip", "link", "set", "vx0", "up"],
        vec!["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", "192.168.77.1"],
        vec!["ip", "neigh", "replace", "10.0.0.3", "lladdr", "fa:16:3e:00:00:03", "dev", "vx0", "nud", "permanent"],
    ] {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend(cmd);
        sh(&full)?;
    }
    let _ = sh(&["sysctl", "-qw", &format!("net.ipv6.conf.{}.disable_ipv6=1", lab.veth)]);
    sh(&["ip", "link", "set", &lab.veth, "up"])?;
    Ok(lab)
}

/// The MAC of an interface of this namespace.
fn mac_of(ifname: &str) -> Option<rules::model::Mac> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/address")).ok()?.trim().parse().ok()
}

/// Send what the datapath sent on `ul`; return what it sent elsewhere.
fn flush(dp: &Datapath, ul: IfIdx, tx: &mut dyn DataLinkSender) -> Vec<(IfIdx, Vec<u8>)> {
    let mut other = Vec::new();
    for (i, f) in dp.tx().iter() {
        if i == ul {
            tx.send_to(f, None).expect("send").expect("sent");
        } else {
            other.push((i, f.to_vec()));
        }
    }
    other
}

fn is_echo_reply_to_vm1(f: &[u8]) -> bool {
    let Ok(p) = SlicedPacket::from_ethernet(f) else { return false };
    let Some(TransportSlice::Icmpv4(icmp)) = p.transport else { return false };
    f[0..6] == VM1 && icmp.type_u8() == 0
}

#[test]
fn edgepath_and_a_kernel_vtep_accept_each_others_vxlan() {
    if effective_uid() != 0 {
        eprintln!("skipped: needs root for network namespaces, veth and a kernel vxlan device (CI runs as root)");
        return;
    }
    let tag = format!("{}", std::process::id() % 100000);
    let lab = setup(&tag).unwrap_or_else(|e| panic!("setting up the namespace: {e}"));

    // host-a (edgepath) at 192.168.77.1 on the veth; host-b (the kernel) at 192.168.77.2.
    let text = std::fs::read_to_string(repo_root().join("pcaps/vxlan-host-a/snapshot.json")).expect("snapshot");
    let mut snap: serde_json::Value = serde_json::from_str(&text).expect("json");
    snap["hosts"][0]["tunnel_ip"] = "192.168.77.1".into();
    snap["hosts"][0]["underlay_interface"] = lab.veth.clone().into();
    snap["hosts"][1]["tunnel_ip"] = "192.168.77.2".into();
    let topo = rules::Topology::compile(rules::load_str(&snap.to_string()).expect("valid")).expect("compiles");
    let macs = HashMap::from([(lab.veth.clone(), mac_of(&lab.veth).expect("veth MAC"))]);
    let mut dp = Datapath::new(Arc::new(topo), "host-a", &macs).expect("datapath");
    let (tap, ul) = (dp.interfaces().by_name("tap-vm1").expect("tap"), dp.interfaces().by_name(&lab.veth).expect("underlay"));

    let iface = pnet_datalink::interfaces().into_iter().find(|i| i.name == lab.veth).expect("veth visible");
    let cfg = Config { read_timeout: Some(Duration::from_millis(100)), ..Default::default() };
    let (mut tx, mut rx): (Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>) = match pnet_datalink::channel(&iface, cfg) {
        Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
        Ok(_) => panic!("not an Ethernet channel"),
        Err(e) => panic!("AF_PACKET on {}: {e}", lab.veth),
    };

    let mut ping = Vec::new();
    PacketBuilder::ethernet2(VM1, VM4)
        .ipv4([10, 0, 0, 3], [10, 0, 0, 5], 64)
        .icmpv4_echo_request(77, 1)
        .write(&mut ping, &[0x42; 32])
        .expect("build");
    let start = StdInstant::now();
    let clock = |s: StdInstant| Instant(s.elapsed().as_nanos() as u64 + 1);
    dp.process(tap, &ping, clock(start));
    assert!(flush(&dp, ul, tx.as_mut()).is_empty(), "the first ping waits for ARP");

    // Everything the kernel sends on the underlay goes into the datapath; what the datapath
    // sends there goes back out; what it delivers to vm1 is what we wait for.
    let mut delivered = Vec::new();
    let mut sent_again = false;
    while start.elapsed() < Duration::from_secs(5) && !delivered.iter().any(|(_, f): &(IfIdx, Vec<u8>)| is_echo_reply_to_vm1(f)) {
        match rx.next() {
            Ok(frame) => {
                let frame = frame.to_vec();
                dp.process(ul, &frame, clock(start));
                delivered.extend(flush(&dp, ul, tx.as_mut()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                // Once ARP is learned, a second ping takes the cached path too.
                if !sent_again && dp.stats().forwarded > 0 {
                    dp.process(tap, &ping, clock(start));
                    flush(&dp, ul, tx.as_mut());
                    sent_again = true;
                }
            }
            Err(e) => panic!("receive: {e}"),
        }
    }
    let replies: Vec<_> = delivered.iter().filter(|(i, f)| *i == tap && is_echo_reply_to_vm1(f)).collect();
    assert!(!replies.is_empty(), "no echo reply from the kernel reached vm1; stats:\n{:?}", dp.stats());
    let p = SlicedPacket::from_ethernet(&replies[0].1).expect("parse");
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!("IPv4") };
    assert_eq!(ip.header().source(), [10, 0, 0, 5]);
    assert_eq!(ip.header().destination(), [10, 0, 0, 3]);
    assert_eq!(replies[0].1[6..12], VM4, "from vm4's MAC, as the kernel VTEP's device has it");
    drop(lab);
}

fn effective_uid() -> u32 {
    // Root is what creating namespaces needs; /proc tells the effective uid without libc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).and_then(|u| u.parse().ok()))
        .unwrap_or(u32::MAX)
}
