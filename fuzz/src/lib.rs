//! What the fuzz targets share: the scenario snapshots, the input format of the `datapath`
//! target, the checksum oracle, and the seed corpora (`seed` binary).
//!
//! **`datapath` input.** Byte 0 picks a scenario of `pcaps/` (in name order). Then records:
//! `ctl`, `dt`, a big-endian 16-bit length, and that many frame bytes (the last record takes what
//! is left). `ctl & 0x3f` picks the ingress interface — the scenario's input files in name order,
//! then its other interfaces; `ctl & 0x80` keeps the frame's checksums as they are, otherwise
//! they are made valid first (so the checksum invariant can be checked on what leaves). `dt`
//! advances the packet clock: below 200, by `dt` × 10 ms; from 200, by `dt - 199` minutes (so
//! timeouts and MAC aging are reached).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use datapath::limits::Limits;
use datapath::wire::{self, vxlan, Frag, L3, L4};
use datapath::{csum, Datapath, IfIdx, Instant};
use rules::model::Mac;

/// The repository's scenario suites.
pub fn pcaps_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps")
}

pub struct Scenario {
    pub name: String,
    pub topo: Arc<rules::Topology>,
    pub host: String,
    pub macs: HashMap<String, Mac>,
    /// Ingress interfaces, as `ctl` numbers them.
    pub ifaces: Vec<String>,
}

/// Small bounds, so the fuzzer reaches full tables.
pub fn fuzz_limits() -> Limits {
    Limits {
        connections: 48,
        connections_per_router: 32,
        macs_per_network: 16,
        mac_aging: Duration::from_secs(300),
        arp_per_router: 8,
        arp_waiting: 8,
        flows_per_worker: 24,
        fip64_bindings_per_router: 4,
        fip64_pool: 3,
    }
}

fn input_stems(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str()?.strip_suffix(".pcap").map(String::from)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

pub fn scenarios() -> &'static [Scenario] {
    static ALL: OnceLock<Vec<Scenario>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(pcaps_root())
            .expect("pcaps/")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.join("snapshot.json").exists())
            .collect();
        dirs.sort();
        dirs.into_iter()
            .map(|d| {
                let topo = Arc::new(rules::load_topology(&d.join("snapshot.json")).expect("scenario snapshot"));
                let meta: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(d.join("case.json")).expect("case.json")).expect("case.json");
                let host = meta["host"].as_str().expect("host").to_string();
                let macs = meta["macs"]
                    .as_object()
                    .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.parse().ok()?))).collect())
                    .unwrap_or_default();
                let mut ifaces = input_stems(&d.join("in"));
                let dp = Datapath::new(topo.clone(), &host, &macs).expect("scenario datapath");
                for i in &dp.interfaces().list {
                    if !i.name.is_empty() && !ifaces.contains(&i.name) {
                        ifaces.push(i.name.clone());
                    }
                }
                Scenario { name: d.file_name().unwrap_or_default().to_string_lossy().into_owned(), topo, host, macs, ifaces }
            })
            .collect()
    })
}

/// One record of a `datapath` input.
pub struct Record<'a> {
    pub ctl: u8,
    pub dt: u8,
    pub frame: &'a [u8],
}

pub fn records(mut data: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        let [ctl, dt, hi, lo, rest @ ..] = data else { return None };
        let n = (u16::from_be_bytes([*hi, *lo]) as usize).min(rest.len());
        let (frame, tail) = rest.split_at(n);
        data = tail;
        Some(Record { ctl: *ctl, dt: *dt, frame })
    })
}

pub fn encode(out: &mut Vec<u8>, ctl: u8, dt: u8, frame: &[u8]) {
    let n = frame.len().min(u16::MAX as usize);
    out.extend_from_slice(&[ctl, dt]);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&frame[..n]);
}

pub fn step(dt: u8) -> Duration {
    if dt < 200 {
        Duration::from_millis(dt as u64 * 10)
    } else {
        Duration::from_secs((dt as u64 - 199) * 60)
    }
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Make the IPv4 header checksum and the L4 checksum of an IPv4 frame (and of the frame inside
/// a VXLAN packet) valid; other frames are left alone.
pub fn fix_checksums(f: &mut [u8]) {
    if f.get(12..14) == Some(&[0x86, 0xdd]) {
        return fix_checksums6(f);
    }
    if f.len() < 34 || f[12..14] != [8, 0] {
        return;
    }
    let ihl = ((f[14] & 0xf) as usize) * 4;
    if ihl < 20 || 14 + ihl > f.len() {
        return;
    }
    let end = 14 + u16::from_be_bytes([f[16], f[17]]) as usize;
    let whole = u16::from_be_bytes([f[20], f[21]]) & 0x3fff == 0;
    let (l4, proto) = (14 + ihl, f[23]);
    if whole && end <= f.len() && end >= l4 {
        let pseudo = |f: &[u8]| csum::pseudo_header([f[26], f[27], f[28], f[29]], [f[30], f[31], f[32], f[33]], proto, (end - l4) as u16);
        match proto {
            6 if end - l4 >= 20 => {
                put16(f, l4 + 16, 0);
                let c = csum::finish(csum::sum(&f[l4..end]) + pseudo(f));
                put16(f, l4 + 16, c);
            }
            17 if end - l4 >= 8 => {
                if u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]) == vxlan::PORT && end - l4 >= 16 {
                    fix_checksums(&mut f[l4 + 16..end]);
                }
                if u16::from_be_bytes([f[l4 + 6], f[l4 + 7]]) != 0 {
                    put16(f, l4 + 6, 0);
                    let c = csum::finish(csum::sum(&f[l4..end]) + pseudo(f));
                    put16(f, l4 + 6, if c == 0 { 0xffff } else { c });
                }
            }
            1 if end - l4 >= 4 => {
                put16(f, l4 + 2, 0);
                let c = csum::finish(csum::sum(&f[l4..end]));
                put16(f, l4 + 2, c);
            }
            _ => {}
        }
    }
    put16(f, 24, 0);
    let c = csum::finish(csum::sum(&f[14..14 + ihl]));
    put16(f, 24, c);
}

/// Where an IPv6 packet's upper-layer checksum is, from its L4 header, when it is one edgepath
/// reads (TCP, UDP, ICMPv6) and the packet is whole.
fn checksum6_at(ip: &wire::Ipv6) -> Option<usize> {
    if ip.frag != Frag::Whole {
        return None;
    }
    let at = match ip.l4 {
        L4::Tcp { .. } => 16,
        L4::Udp { .. } => 6,
        L4::Icmp { .. } => 2,
        L4::None => return None,
    };
    Some(ip.l4_off() + at)
}

fn sum6(f: &[u8], ip: &wire::Ipv6) -> u32 {
    let seg = &f[ip.l4_off()..ip.end()];
    csum::sum(seg) + wire::ipv6::pseudo_header(ip.src, ip.dst, ip.proto, seg.len() as u32)
}

/// The same for an IPv6 frame: its TCP, UDP or ICMPv6 checksum over the pseudo-header (IPv6
/// has no header checksum; UDP's is mandatory, RFC 8200 §8.1).
fn fix_checksums6(f: &mut [u8]) {
    let Ok(h) = wire::parse(f) else { return };
    let L3::Ipv6(ip) = h.l3 else { return };
    let Some(at) = checksum6_at(&ip) else { return };
    put16(f, at, 0);
    let c = csum::finish(sum6(f, &ip));
    put16(f, at, if c == 0 && matches!(ip.l4, L4::Udp { .. }) { 0xffff } else { c });
}

/// Why a frame the datapath sent is not well formed, if it is not: it must parse, its IPv4
/// header checksum and (unfragmented) TCP, UDP or ICMP checksum must verify (for IPv6, its
/// TCP, UDP or ICMPv6 checksum), and so must those
/// of the frame a VXLAN packet carries (one level: deeper is payload to edgepath).
pub fn check_sent(f: &[u8]) -> Result<(), String> {
    check_frame(f, true)
}

fn check_frame(f: &[u8], outer: bool) -> Result<(), String> {
    let h = match wire::parse(f) {
        Ok(h) => h,
        // What a VM sends to UDP port 4789 need not be VXLAN: payload is not edgepath's to check.
        Err(_) if !outer => return Ok(()),
        Err(r) => return Err(format!("a frame sent does not parse: {}", r.name())),
    };
    if let L3::Ipv6(ip) = &h.l3 {
        return match checksum6_at(ip) {
            Some(_) if csum::fold(sum6(f, ip)) != 0xffff => Err(format!("bad {} checksum in {}", ip.proto, wire::describe::describe(f))),
            _ => Ok(()),
        };
    }
    let L3::Ipv4(ip) = &h.l3 else { return Ok(()) };
    if ip.frag != Frag::Whole {
        return Ok(());
    }
    let (l4, end) = (ip.l4_off(), ip.end());
    let seg = &f[l4..end];
    let pseudo = csum::pseudo_header(ip.src.octets(), ip.dst.octets(), ip.proto, seg.len() as u16);
    let ok = match ip.l4 {
        L4::Tcp { .. } => csum::fold(csum::sum(seg) + pseudo) == 0xffff,
        L4::Udp { .. } => u16::from_be_bytes([seg[6], seg[7]]) == 0 || csum::fold(csum::sum(seg) + pseudo) == 0xffff,
        L4::Icmp { .. } => csum::fold(csum::sum(seg)) == 0xffff,
        L4::None => true,
    };
    if !ok {
        return Err(format!("bad {} checksum in {}", ip.proto, wire::describe::describe(f)));
    }
    if let (true, Some((_, off))) = (outer, vxlan::view(f, &h)) {
        if let Some(inner) = f.get(off..end) {
            check_frame(inner, false).map_err(|e| format!("inside VXLAN: {e}"))?;
        }
    }
    Ok(())
}

/// The `datapath` target: see the module header.
pub fn run_datapath(data: &[u8]) {
    let all = scenarios();
    let Some((&pick, rest)) = data.split_first() else { return };
    let sc = &all[pick as usize % all.len()];
    let new = |cache: bool| {
        let mut dp = Datapath::new(sc.topo.clone(), &sc.host, &sc.macs).expect("scenario datapath").with_limits(fuzz_limits());
        dp.set_flow_cache(cache);
        dp
    };
    let (mut on, mut off) = (new(true), new(false));
    // The vector path (issue 14), each frame a batch of one in a buffer with headroom: a hit is
    // rewritten in place, and must send what the frame-at-a-time path sends.
    let mut vector = new(true);
    let mut rx = datapath::batch::RxBatch::of(1, rest.len());
    let ifs: Vec<IfIdx> = sc.ifaces.iter().filter_map(|n| on.interfaces().by_name(n)).collect();
    let mut now = Instant(1_767_225_600_000_000_000);
    let mut all_fixed = true;
    let mut buf = Vec::new();
    let debug = std::env::var_os("EDGEPATH_FUZZ_DEBUG").is_some();
    for r in records(rest) {
        now = now.saturating_add(step(r.dt));
        let i = ifs[(r.ctl & 0x3f) as usize % ifs.len()];
        buf.clear();
        buf.extend_from_slice(r.frame);
        if r.ctl & 0x80 == 0 {
            fix_checksums(&mut buf);
        } else {
            all_fixed = false;
        }
        let (d_on, d_off) = (on.stats().drops.clone(), off.stats().drops.clone());
        on.process(i, &buf, now);
        off.process(i, &buf, now);
        if debug {
            let new = |dp: &Datapath, before: &datapath::drop::DropCounters| {
                dp.stats().drops.nonzero().filter(|(r, n)| before.get(*r) != *n).map(|(r, _)| r.name()).collect::<Vec<_>>()
            };
            eprintln!(
                "{} {}: on {:?} off {:?}",
                sc.ifaces[(r.ctl & 0x3f) as usize % ifs.len()],
                wire::describe::describe(&buf),
                new(&on, &d_on),
                new(&off, &d_off)
            );
        }
        rx.clear();
        rx.push(&buf, now);
        vector.process_batch(i, &mut rx);
        let a: Vec<(IfIdx, &[u8])> = on.tx().iter().collect();
        let b: Vec<(IfIdx, &[u8])> = off.tx().iter().collect();
        assert!(a == b, "{}: cache on sent {a:02x?}, cache off {b:02x?}", sc.name);
        let v: Vec<(IfIdx, &[u8])> = vector.batch_sent(0, &rx).collect();
        assert!(a == v, "{}: one at a time sent {a:02x?}, the vector path {v:02x?}", sc.name);
        vector.sent();
        if all_fixed {
            for (_, f) in &a {
                if let Err(e) = check_sent(f) {
                    panic!("{}: {e}", sc.name);
                }
            }
        }
    }
    on.finish();
    off.finish();
    for (which, dp) in [("on", &on), ("off", &off)] {
        let s = dp.stats();
        assert_eq!(s.rx, s.forwarded + s.handled + s.drops.total(), "{} cache {which}: every input counted once: {s:?}", sc.name);
    }
    assert_eq!(on.stats().drops, off.stats().drops, "{}", sc.name);
    assert_eq!(on.stats().forwarded, off.stats().forwarded, "{}", sc.name);
}

/// The `snapshot` target: any text loads as a snapshot or gives one error line; what loads
/// compiles or gives one line; every host of what compiles starts a datapath or gives one line.
pub fn run_snapshot(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let snap = match rules::load_str(text) {
        Ok(s) => s,
        Err(e) => return assert!(!e.to_string().contains('\n'), "one line: {e}"),
    };
    let hosts: Vec<String> = snap.hosts.iter().map(|h| h.id.clone()).collect();
    let topo = match rules::Topology::compile(snap) {
        Ok(t) => Arc::new(t),
        Err(e) => return assert!(!e.to_string().contains('\n'), "one line: {e}"),
    };
    for h in hosts {
        if let Err(e) = Datapath::new(topo.clone(), &h, &HashMap::new()) {
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }
}

/// Scenario `k`'s inputs as one `datapath` input: in time order, on their interfaces, each
/// frame's checksums kept where making them valid would change it (the malformed cases).
pub fn scenario_input(k: usize) -> Vec<u8> {
    let sc = &scenarios()[k];
    let mut inputs: Vec<(Duration, u8, Vec<u8>)> = Vec::new();
    for (n, name) in sc.ifaces.iter().enumerate() {
        for (ts, frame) in read_pcap(&pcaps_root().join(&sc.name).join("in").join(format!("{name}.pcap"))) {
            inputs.push((ts, n as u8, frame));
        }
    }
    inputs.sort_by_key(|(ts, n, _)| (*ts, *n));
    let mut data = vec![k as u8];
    let mut last = inputs.first().map(|(ts, _, _)| *ts).unwrap_or_default();
    for (ts, n, frame) in inputs {
        let mut fixed = frame.clone();
        fix_checksums(&mut fixed);
        let keep = if fixed == frame { 0 } else { 0x80 };
        encode(&mut data, n | keep, dt_of(ts.saturating_sub(last)), &frame);
        last = ts;
    }
    data
}

/// The packet-clock step closest to `d` (see the module header).
pub fn dt_of(d: Duration) -> u8 {
    if d.as_secs() >= 60 {
        (199 + d.as_secs() / 60).min(255) as u8
    } else {
        (d.as_millis() / 10).min(199) as u8
    }
}

/// Every frame of a classic pcap file, with its timestamp; nothing for a file that does not read.
pub fn read_pcap(path: &Path) -> Vec<(Duration, Vec<u8>)> {
    let Ok(f) = std::fs::File::open(path) else { return Vec::new() };
    let Ok(mut r) = pcap_file::pcap::PcapReader::new(f) else { return Vec::new() };
    let mut out = Vec::new();
    while let Some(Ok(p)) = r.next_packet() {
        out.push((p.timestamp, p.data.into_owned()));
    }
    out
}
