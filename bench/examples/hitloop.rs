//! A plain loop over the FIP-DNAT cached flow, for profilers (`perf record`, callgrind).
use datapath::Instant;
use edgepath_bench::*;

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let mut dp = datapath("fip-dnat-inbound", "host-a", &[]);
    let up = iface(&dp, "uplink0");
    let f = udp([0x02, 0xaa, 0, 0, 0, 1], [0xfa, 0x16, 0x3e, 0xbb, 0, 2], [192, 0, 2, 50], [203, 0, 113, 10], 33000, 7000);
    must_forward(&mut dp, up, &f, SEC);
    let t0 = std::time::Instant::now();
    for k in 0..n {
        dp.process(up, std::hint::black_box(&f), Instant(2 * SEC + k));
    }
    let el = t0.elapsed();
    println!("{n} packets, {:.1} ns/packet, hits {}", el.as_nanos() as f64 / n as f64, dp.stats().flow_hits);
}
