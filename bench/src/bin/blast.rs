//! A small traffic generator and sink for `bench/throughput.sh`, on AF_PACKET.
//!
//! `blast send IFACE SRC_MAC DST_MAC SRC_IP DST_IP SECONDS` sends 64-byte UDP frames (to port
//! 9, from a rotating source port) as fast as it can for SECONDS — 64 per `sendmmsg()` — and
//! prints how many it sent. `blast sink IFACE SECONDS` counts the UDP frames to port 9 that arrive
//! in SECONDS, read from a TPACKET_V3 ring, and prints the count. Run each inside its namespace
//! with `ip netns exec`. Both batch, so the harness costs little CPU next to what it measures.

use std::time::{Duration, Instant};

use datapath::batch::RxFrames;
use datapath::io::rawsock::{PollSet, RawSocket};
use datapath::io::ring::RxRing;
use etherparse::PacketBuilder;

fn arg(n: usize) -> String {
    std::env::args().nth(n).unwrap_or_else(|| {
        eprintln!("usage: blast send IFACE SRC_MAC DST_MAC SRC_IP DST_IP SECONDS | blast sink IFACE SECONDS");
        std::process::exit(2)
    })
}

fn mac(s: &str) -> [u8; 6] {
    let m: rules::model::Mac = s.parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    m.0
}

fn ip(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().map(|a| a.octets()).unwrap_or_else(|e| {
        eprintln!("{s}: {e}");
        std::process::exit(2)
    })
}

fn main() {
    let mode = arg(1);
    let sock = RawSocket::open(&arg(2), Duration::from_millis(50)).unwrap_or_else(|e| {
        eprintln!("{}: {e}", arg(2));
        std::process::exit(2)
    });
    match mode.as_str() {
        "send" => {
            let (smac, dmac, src, dst) = (mac(&arg(3)), mac(&arg(4)), ip(&arg(5)), ip(&arg(6)));
            let secs: f64 = arg(7).parse().unwrap_or(5.0);
            // Frames of 64 flows (source ports), so a flow cache and conntrack see many flows.
            let mut data = Vec::new();
            let mut frames = Vec::new();
            for k in 0..64u16 {
                let start = data.len();
                PacketBuilder::ethernet2(smac, dmac).ipv4(src, dst, 64).udp(20000 + k, 9).write(&mut data, &[0u8; 18]).expect("build");
                frames.push(start..data.len());
            }
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut sent: u64 = 0;
            while Instant::now() < end {
                sent += (frames.len() - sock.send_many(frames.iter().filter_map(|r| data.get(r.clone())))) as u64;
            }
            println!("{sent}");
        }
        "sink" => {
            let secs: f64 = arg(3).parse().unwrap_or(5.0);
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut ring = RxRing::new(&sock, 1 << 20, 16, Duration::from_millis(10)).unwrap_or_else(|e| {
                eprintln!("{}: ring: {e}", arg(2));
                std::process::exit(2)
            });
            let mut poll = PollSet::new(std::slice::from_ref(&sock), None);
            let mut got: u64 = 0;
            while Instant::now() < end {
                let _ = poll.wait(Duration::from_millis(50));
                ring.read(16, datapath::Instant(0), |rx| {
                    for k in 0..rx.count() {
                        // IPv4/UDP to port 9.
                        let f = rx.frame(k);
                        if !rx.received(k).outgoing && f.len() >= 38 && f[12..14] == [8, 0] && f[23] == 17 && f[36..38] == [0, 9] {
                            got += 1;
                        }
                    }
                });
            }
            println!("{got}");
        }
        _ => {
            eprintln!("usage: blast send ... | blast sink ...");
            std::process::exit(2)
        }
    }
}
