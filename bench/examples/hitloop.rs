//! A plain loop over one cached flow, for profilers (`perf record`, callgrind):
//! `hitloop [N] [fip|routed-v4|routed-v6|fip64-6to4|fip64-4to6|encap|decap] [batch]` — the FIP-DNAT
//! flow from the uplink (the default), vm1 → vm3 across r1 on the dual-stack `ipv6-flows` scenario,
//! IPv4 or IPv6, a fip64 flow either way, or a VXLAN encapsulation or decapsulation; frame by frame, or with `batch` in 64-frame batches through
//! the vector path (each batch refilled with copies of the frame, as a receive call would).
use datapath::batch::{RxBatch, BATCH};
use datapath::Instant;
use edgepath_bench::*;

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let which = std::env::args().nth(2).unwrap_or_else(|| "fip".into());
    let (vm1, r1_a) = ([0xfa, 0x16, 0x3e, 0, 0, 3], [0xfa, 0x16, 0x3e, 0xaa, 0, 1]);
    let (mut dp, i, f) = match which.as_str() {
        "routed-v4" | "routed-v6" => {
            let dp = datapath("ipv6-flows", "host-a", &[]);
            let i = iface(&dp, "tap-vm1");
            let f = if which == "routed-v6" {
                let a = [0x20, 1, 0x0d, 0xb8, 0, 0xa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
                let b = [0x20, 1, 0x0d, 0xb8, 0, 0xb, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
                udp6(vm1, r1_a, a, b, 4000, 5000)
            } else {
                udp(vm1, r1_a, [10, 0, 0, 3], [10, 1, 0, 3], 4000, 5000)
            };
            (dp, i, f)
        }
        "fip64-6to4" => {
            let (dp, up, query, _, _) = fip64_both_ways();
            (dp, up, query)
        }
        "fip64-4to6" => {
            let (dp, _, _, tap, answer) = fip64_both_ways();
            (dp, tap, answer)
        }
        // vm1 to vm4 on host-b, encapsulated (`fastpath/batch/vxlan-encap`'s flow).
        "encap" => {
            let mut dp = datapath("vxlan-host-a", "host-a", &[("ul0", "02:00:00:00:0a:01")]);
            let (tap, ul) = (iface(&dp, "tap-vm1"), iface(&dp, "ul0"));
            let (ul_a, ul_b) = ([0x02, 0, 0, 0, 0x0a, 0x01], [0x02, 0, 0, 0, 0x0b, 0x01]);
            dp.process(ul, &arp(2, ul_b, [192, 168, 50, 2], ul_a, [192, 168, 50, 1], ul_a), Instant(SEC / 2));
            (dp, tap, udp(vm1, [0xfa, 0x16, 0x3e, 0, 0, 0x05], [10, 0, 0, 3], [10, 0, 0, 5], 1024, 1))
        }
        // A hardware VTEP's VXLAN to vm3, decapsulated (`fastpath/batch/vxlan-decap`'s flow).
        "decap" => {
            let mut dp = datapath("hw-vtep", "host-a", &[("ul0", "02:00:00:00:0a:01")]);
            let ul = iface(&dp, "ul0");
            let (ul_a, ul_gw) = ([0x02, 0, 0, 0, 0x0a, 0x01], [0x02, 0, 0, 0, 0xfe, 0xfe]);
            dp.process(ul, &arp(1, ul_gw, [192, 168, 50, 254], [0; 6], [192, 168, 50, 1], [0xff; 6]), Instant(SEC / 2));
            let inner = udp([0x02, 0xdd, 0, 0, 0, 1], [0xfa, 0x16, 0x3e, 0, 1, 0x03], [10, 1, 0, 70], [10, 1, 0, 3], 1024, 1);
            (dp, ul, vxlan(ul_gw, ul_a, [192, 168, 60, 30], [192, 168, 50, 1], 6000, &inner))
        }
        _ => {
            let dp = datapath("fip-dnat-inbound", "host-a", &[]);
            let i = iface(&dp, "uplink0");
            (dp, i, udp([0x02, 0xaa, 0, 0, 0, 1], [0xfa, 0x16, 0x3e, 0xbb, 0, 2], [192, 0, 2, 50], [203, 0, 113, 10], 33000, 7000))
        }
    };
    must_forward(&mut dp, i, &f, SEC);
    let batched = std::env::args().nth(3).is_some_and(|a| a == "batch");
    let mut rx = RxBatch::new(f.len());
    let t0 = std::time::Instant::now();
    if batched {
        for b in 0..n / BATCH as u64 {
            rx.clear();
            for _ in 0..BATCH {
                rx.push(&f, Instant(2 * SEC + b));
            }
            dp.process_batch(i, std::hint::black_box(&mut rx));
            dp.sent();
        }
    } else {
        for k in 0..n {
            dp.process(i, std::hint::black_box(&f), Instant(2 * SEC + k));
        }
    }
    let el = t0.elapsed();
    println!("{which}: {n} packets, {:.1} ns/packet, hits {}", el.as_nanos() as f64 / n as f64, dp.stats().flow_hits);
}
