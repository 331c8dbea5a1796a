//! Criterion benches of the fast path. Group names say stage and action.
//!
//! - `parse/…`: the header view against etherparse's `SlicedPacket`;
//! - `fastpath/hit/fip-dnat-route`: a cached flow that enters from the uplink, is routed by the
//!   edge router and r1 and DNATed from a floating IP to vm1;
//! - `fastpath/hit/vxlan-encap`: a cached flow from vm1 to a VM on another host, encapsulated;
//! - `fastpath/hit/remote-mac-encap`: a cached flow to a remote gateway's remote MAC (issue 3);
//! - `fastpath/hit/vxlan-decap`: a cached flow decapsulating a hardware VTEP's VXLAN to vm3;
//! - `fastpath/hit/police-dscp-snat`: a cached flow policed, DSCP-marked and SNATed (issue 4);
//! - `fastpath/hit/routed-v4` and `routed-v6`: the same cached flow from vm1 to vm3 across r1,
//!   IPv4 and IPv6, on the dual-stack `ipv6-flows` scenario (issue 12: IPv6 costs no more);
//! - `firewall/classify/N-rules`: the firewall classifier alone, N = 10, 100, 1000, the last rule
//!   matching;
//! - `slowpath/miss/firewall-N-rules`: a new connection every packet through that firewall;
//! - `slowpath/miss/default-snat`: a new connection every packet, through the full simulation
//!   with default SNAT (connection created, port allocated, flow installed);
//! - `workers/snat-both-ways/N`: N worker threads on one shared state, each sending cached
//!   packets of 64 default-SNAT connections out and answers to another worker's connections back
//!   (both directions of a connection on different workers); throughput is for all of them. The
//!   packet clock moves once per 64 packets, as live mode reads it once per batch.
//!
//! After the timings, each hit bench counts heap allocations per packet with a counting global
//! allocator and prints them (STYLE.md item 12): the hit path must not allocate.

use std::hint::black_box;
use std::time::{Duration, Instant as StdInstant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datapath::{Datapath, IfIdx, Instant};
use edgepath_bench::*;

const VM1: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x03];
const VM3: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 0x03];
const VM4: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x05];
const VM2: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x04];
const R1_A: [u8; 6] = [0xfa, 0x16, 0x3e, 0xaa, 0, 1];
const R1_B: [u8; 6] = [0xfa, 0x16, 0x3e, 0xaa, 0, 2];
const EDGE_UP: [u8; 6] = [0xfa, 0x16, 0x3e, 0xbb, 0, 2];
const UPSTREAM: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const UL_A: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
const UL_B: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x01];
const UL_GW: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0xfe];
const RMAC_1: [u8; 6] = [0x02, 0xee, 0, 0, 0, 1];

/// Allocations per packet over `n` packets of a warm flow.
fn allocs_per_packet(dp: &mut Datapath, i: IfIdx, f: &[u8], n: u64) -> f64 {
    let before = allocations();
    for k in 0..n {
        dp.process(i, f, Instant(2 * SEC + k));
    }
    (allocations() - before) as f64 / n as f64
}

fn parse(c: &mut Criterion) {
    let f = udp(VM1, VM3, [10, 0, 0, 3], [10, 1, 0, 3], 4000, 5000);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("edgepath-view/eth-ipv4-udp", |b| b.iter(|| datapath::wire::parse(black_box(&f))));
    g.bench_function("etherparse-sliced/eth-ipv4-udp", |b| {
        b.iter(|| etherparse::SlicedPacket::from_ethernet(black_box(&f)).map(|p| p.transport.is_some()))
    });
    g.finish();
}

/// Bench a flow already cached in `dp`: the packet `f` arriving on `i`, every iteration.
fn bench_hit(c: &mut Criterion, name: &str, mut dp: Datapath, i: IfIdx, f: &[u8]) {
    let hits = dp.stats().flow_hits;
    must_forward(&mut dp, i, f, SEC + 1);
    assert_eq!(dp.stats().flow_hits, hits + 1, "{name}: the flow is cached");
    let mut g = c.benchmark_group("fastpath/hit");
    g.throughput(Throughput::Elements(1));
    let mut t = 2 * SEC;
    g.bench_function(name, |b| {
        b.iter(|| {
            t += 1;
            dp.process(i, black_box(f), Instant(t));
        })
    });
    g.finish();
    println!("fastpath/hit/{name}: {} allocations per packet", allocs_per_packet(&mut dp, i, f, 10_000));
}

fn fip_dnat(c: &mut Criterion) {
    let mut dp = datapath("fip-dnat-inbound", "host-a", &[]);
    let up = iface(&dp, "uplink0");
    let f = udp(UPSTREAM, EDGE_UP, [192, 0, 2, 50], [203, 0, 113, 10], 33000, 7000);
    must_forward(&mut dp, up, &f, SEC);
    bench_hit(c, "fip-dnat-route", dp, up, &f);
}

fn vxlan_encap(c: &mut Criterion) {
    let mut dp = datapath("vxlan-host-a", "host-a", &[("ul0", "02:00:00:00:0a:01")]);
    let (tap, ul) = (iface(&dp, "tap-vm1"), iface(&dp, "ul0"));
    // host-b answers ARP for its tunnel IP, so the underlay next hop is known.
    dp.process(ul, &arp(2, UL_B, [192, 168, 50, 2], UL_A, [192, 168, 50, 1], UL_A), Instant(SEC));
    let f = udp(VM1, VM4, [10, 0, 0, 3], [10, 0, 0, 5], 4000, 5000);
    must_forward(&mut dp, tap, &f, SEC);
    bench_hit(c, "vxlan-encap", dp, tap, &f);
}

/// The gateway scenario's underlay next hop announces itself, so host-a knows its MAC.
fn underlay_known(dp: &mut Datapath) -> IfIdx {
    let ul = iface(dp, "ul0");
    dp.process(ul, &arp(1, UL_GW, [192, 168, 50, 254], [0; 6], [192, 168, 50, 1], [0xff; 6]), Instant(SEC / 2));
    ul
}

fn remote_mac_encap(c: &mut Criterion) {
    let mut dp = datapath("remote-gateway", "host-a", &[("ul0", "02:00:00:00:0a:01")]);
    underlay_known(&mut dp);
    let tap = iface(&dp, "tap-vm1");
    let f = udp(VM1, RMAC_1, [10, 0, 0, 3], [10, 0, 0, 50], 4000, 80);
    must_forward(&mut dp, tap, &f, SEC);
    bench_hit(c, "remote-mac-encap", dp, tap, &f);
}

fn vxlan_decap(c: &mut Criterion) {
    let mut dp = datapath("hw-vtep", "host-a", &[("ul0", "02:00:00:00:0a:01")]);
    let ul = underlay_known(&mut dp);
    let inner = udp([0x02, 0xdd, 0, 0, 0, 1], VM3, [10, 1, 0, 70], [10, 1, 0, 3], 6000, 6001);
    let f = vxlan(UL_GW, UL_A, [192, 168, 60, 30], [192, 168, 50, 1], 6000, &inner);
    must_forward(&mut dp, ul, &f, SEC);
    bench_hit(c, "vxlan-decap", dp, ul, &f);
}

fn routed_v4_v6(c: &mut Criterion) {
    for v6 in [false, true] {
        let mut dp = datapath("ipv6-flows", "host-a", &[]);
        let tap = iface(&dp, "tap-vm1");
        let f = if v6 {
            let (a, b) =
                ([0x20, 1, 0x0d, 0xb8, 0, 0xa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3], [0x20, 1, 0x0d, 0xb8, 0, 0xb, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
            udp6(VM1, R1_A, a, b, 4000, 5000)
        } else {
            udp(VM1, R1_A, [10, 0, 0, 3], [10, 1, 0, 3], 4000, 5000)
        };
        must_forward(&mut dp, tap, &f, SEC);
        bench_hit(c, if v6 { "routed-v6" } else { "routed-v4" }, dp, tap, &f);
    }
}

/// fip64 (SPEC §11, issue 13): a cached flow each way, 6 → 4 from the client and 4 → 6 back.
fn fip64(c: &mut Criterion) {
    let (dp, up, query, _, _) = fip64_both_ways();
    bench_hit(c, "fip64-6to4", dp, up, &query);
    let (dp, _, _, tap, answer) = fip64_both_ways();
    bench_hit(c, "fip64-4to6", dp, tap, &answer);
}

/// Rule evaluation (SPEC §6.2, issue 4): the classifier alone, and a whole flow-cache miss
/// through a firewall, with 10, 100 and 1000 rules where only the last matches.
fn firewall(c: &mut Criterion) {
    let mut g = c.benchmark_group("firewall");
    g.throughput(Throughput::Elements(1));
    for n in [10usize, 100, 1000] {
        let dp = datapath_with("l2-local", |s| firewall_rules(s, n));
        let fw = dp.topology().firewalls[0].1.clone();
        let p = rules::compile::firewall::FwPacket {
            proto: 17,
            src: [10, 0, 0, 4].into(),
            dst: [10, 1, 0, 3].into(),
            sport: 4000,
            dport: 5001,
        };
        assert_eq!(fw.classify(&p), Some(n - 1));
        g.bench_function(format!("classify/{n}-rules"), |b| b.iter(|| fw.classify(black_box(&p))));
    }
    g.finish();
    let mut g = c.benchmark_group("slowpath/miss");
    g.throughput(Throughput::Elements(1));
    for n in [10usize, 100, 1000] {
        g.bench_function(format!("firewall-{n}-rules"), |b| {
            b.iter_custom(|iters| {
                let mut dp = datapath_with("l2-local", |s| firewall_rules(s, n));
                let tap = iface(&dp, "tap-vm2");
                let frames: Vec<Vec<u8>> =
                    (0..iters).map(|k| udp(VM2, R1_A, [10, 0, 0, 4], [10, 1, 0, 3], 1024 + (k % 60000) as u16, 5001)).collect();
                let start = StdInstant::now();
                for (k, f) in frames.iter().enumerate() {
                    dp.process(tap, black_box(f), Instant(SEC + k as u64));
                }
                let d = start.elapsed();
                assert_eq!(dp.stats().forwarded, iters);
                d
            })
        });
    }
    g.finish();
}

/// A cached flow with QoS (SPEC §8): vm3's egress policed (at a rate it stays under) and
/// DSCP-marked, through default SNAT, out of the uplink.
fn qos_hit(c: &mut Criterion) {
    let mut dp = datapath_with("qos", |s| s["qos_policies"][1]["rules"][0]["max_kbps"] = 100_000_000.into());
    let up = iface(&dp, "uplink0");
    dp.process(up, &arp(1, UPSTREAM, [198, 51, 100, 1], [0; 6], [198, 51, 100, 2], [0xff; 6]), Instant(SEC / 2));
    let tap = iface(&dp, "tap-vm3");
    let f = udp(VM3, R1_B, [10, 1, 0, 3], [192, 0, 2, 50], 5000, 53);
    must_forward(&mut dp, tap, &f, SEC);
    bench_hit(c, "police-dscp-snat", dp, tap, &f);
}

fn default_snat_miss(c: &mut Criterion) {
    let mut g = c.benchmark_group("slowpath/miss");
    g.throughput(Throughput::Elements(1));
    g.bench_function("default-snat", |b| {
        b.iter_custom(|iters| {
            // Setup is not timed: a fresh datapath that knows the upstream router, and one frame
            // per iteration, each a new connection (source and destination ports vary).
            let mut dp = datapath("default-snat", "host-a", &[]);
            let (up, tap) = (iface(&dp, "uplink0"), iface(&dp, "tap-vm3"));
            dp.process(up, &arp(1, UPSTREAM, [198, 51, 100, 1], [0; 6], [198, 51, 100, 2], [0xff; 6]), Instant(SEC));
            let frames: Vec<Vec<u8>> = (0..iters)
                .map(|k| udp(VM3, R1_B, [10, 1, 0, 3], [192, 0, 2, 50], 1024 + (k % 60000) as u16, 1 + (k / 60000) as u16))
                .collect();
            let start = StdInstant::now();
            for (k, f) in frames.iter().enumerate() {
                dp.process(tap, black_box(f), Instant(2 * SEC + k as u64));
            }
            let d = start.elapsed();
            assert_eq!(dp.stats().flow_misses, iters + 1);
            assert_eq!(dp.stats().forwarded, iters);
            d
        })
    });
    g.finish();
}

fn workers(c: &mut Criterion) {
    const CONNS: u16 = 64;
    let mut g = c.benchmark_group("workers/snat-both-ways");
    for n in [1usize, 2, 4] {
        // Connections opened by the first worker; the answers' frames from the mappings it made.
        let mut dp = datapath("default-snat", "host-a", &[]);
        let (up, tap) = (iface(&dp, "uplink0"), iface(&dp, "tap-vm3"));
        dp.process(up, &arp(1, UPSTREAM, [198, 51, 100, 1], [0; 6], [198, 51, 100, 2], [0xff; 6]), Instant(SEC));
        let mut outs = Vec::new();
        let mut answers = Vec::new();
        for k in 0..CONNS {
            let f = udp(VM3, R1_B, [10, 1, 0, 3], [192, 0, 2, 50], 20_000 + k, 53);
            must_forward(&mut dp, tap, &f, 2 * SEC);
            let (_, o) = dp.tx().iter().next().expect("out");
            let (mac, ip, port) =
                (o[6..12].try_into().expect("mac"), o[26..30].try_into().expect("ip"), u16::from_be_bytes([o[34], o[35]]));
            answers.push(udp(UPSTREAM, mac, [192, 0, 2, 50], ip, 53, port));
            outs.push(f);
        }
        // Worker w sends the connections k ≡ w (mod n) out and the answers of k ≡ w + 1 back.
        let mut ws: Vec<Datapath> = (0..n).map(|_| dp.worker()).collect();
        let jobs: Vec<Vec<(IfIdx, Vec<u8>)>> = (0..n)
            .map(|w| {
                let mine = (0..CONNS as usize).filter(|k| k % n == w).map(|k| (tap, outs[k].clone()));
                let theirs = (0..CONNS as usize).filter(|k| k % n == (w + 1) % n).map(|k| (up, answers[k].clone()));
                mine.chain(theirs).collect()
            })
            .collect();
        for (w, job) in ws.iter_mut().zip(&jobs) {
            for (i, f) in job {
                must_forward(w, *i, f, 3 * SEC);
            }
        }
        let warm: u64 = ws.iter().map(|w| w.stats().flow_misses).sum();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n}"), |b| {
            b.iter_custom(|iters| {
                let start = std::sync::Barrier::new(n + 1);
                let took = std::thread::scope(|s| {
                    for (w, job) in ws.iter_mut().zip(&jobs) {
                        let start = &start;
                        s.spawn(move || {
                            start.wait();
                            for k in 0..iters as usize {
                                let (i, f) = &job[k % job.len()];
                                // The clock moves once per batch of 64, as in live mode.
                                w.process(*i, black_box(f), Instant(4 * SEC + (k / 64) as u64));
                            }
                        });
                    }
                    start.wait();
                    StdInstant::now()
                });
                took.elapsed()
            })
        });
        let hits: u64 = ws.iter().map(|w| w.stats().flow_hits).sum();
        let misses: u64 = ws.iter().map(|w| w.stats().flow_misses).sum();
        assert_eq!(misses, warm, "every packet of the bench is a cache hit ({hits} hits)");
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = parse, fip_dnat, routed_v4_v6, fip64, vxlan_encap, remote_mac_encap, vxlan_decap, qos_hit, firewall, default_snat_miss, workers }
criterion_main!(benches);
