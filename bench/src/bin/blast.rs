//! A small traffic generator and sink for `bench/throughput.sh`, on AF_PACKET.
//!
//! `blast send IFACE SRC_MAC DST_MAC SRC_IP DST_IP SECONDS` sends 64-byte UDP frames (to port
//! 9, from a rotating source port) as fast as it can for SECONDS and prints how many it sent.
//! `blast sink IFACE SECONDS` counts the UDP frames to port 9 that arrive in SECONDS and prints
//! the count. Run each inside its namespace with `ip netns exec`.

use std::time::{Duration, Instant};

use datapath::io::rawsock::RawSocket;
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
            let frames: Vec<Vec<u8>> = (0..64u16)
                .map(|k| {
                    let mut f = Vec::new();
                    PacketBuilder::ethernet2(smac, dmac).ipv4(src, dst, 64).udp(20000 + k, 9).write(&mut f, &[0u8; 18]).expect("build");
                    f
                })
                .collect();
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut sent: u64 = 0;
            while Instant::now() < end {
                for f in &frames {
                    if sock.send(f).is_ok() {
                        sent += 1;
                    }
                }
            }
            println!("{sent}");
        }
        "sink" => {
            let secs: f64 = arg(3).parse().unwrap_or(5.0);
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut buf = vec![0u8; 2048];
            let mut got: u64 = 0;
            while Instant::now() < end {
                if let Ok(Some(r)) = sock.recv(&mut buf) {
                    let f = &buf[..r.len];
                    // IPv4/UDP to port 9.
                    if !r.outgoing && f.len() >= 38 && f[12..14] == [8, 0] && f[23] == 17 && f[36..38] == [0, 9] {
                        got += 1;
                    }
                }
            }
            println!("{got}");
        }
        _ => {
            eprintln!("usage: blast send ... | blast sink ...");
            std::process::exit(2)
        }
    }
}
