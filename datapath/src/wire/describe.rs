//! One line per frame, tshark-style, for diffs, traces and logs (slow path only).

use super::{parse, vxlan, L3, L4};

fn mac(m: [u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// Describe a frame: MACs, then ARP, or IPv4 with TTL, protocol and ports, or IPv6 with hop
/// limit, protocol and ports, or the ethertype, then length; a VXLAN frame also describes its
/// inner frame.
pub fn describe(frame: &[u8]) -> String {
    let h = match parse(frame) {
        Ok(h) => h,
        Err(r) => return format!("[{} bytes, malformed: {}]", frame.len(), r.name()),
    };
    let eth = format!("{} → {}", mac(h.eth_src), mac(h.eth_dst));
    match h.l3 {
        L3::Arp(a) => {
            let what = match a.op {
                1 => format!("who-has {} tell {}", a.tpa, a.spa),
                2 => format!("{} is-at {}", a.spa, mac(a.sha)),
                op => format!("op {op}"),
            };
            format!("{eth} ARP {what}")
        }
        L3::Ipv6(ip) => {
            format!("{eth} IPv6 {} → {} hlim {} {} len {}", ip.src, ip.dst, ip.hop_limit, l4(ip.l4, ip.proto, "ICMPv6"), frame.len())
        }
        L3::Other(t) => format!("{eth} ethertype {t:#06x} len {}", frame.len()),
        L3::Ipv4(ip) => {
            let l4 = l4(ip.l4, ip.proto, "ICMP");
            let csum = u16::from_be_bytes([frame[24], frame[25]]);
            let mut s = format!("{eth} IPv4 {} → {} ttl {} csum {csum:#06x} {l4} len {}", ip.src, ip.dst, ip.ttl, frame.len());
            if let Some((v, off)) = vxlan::view(frame, &h) {
                s.push_str(&format!(" VXLAN flags {:#04x} vni {} [{}]", v.flags, v.vni, describe(frame.get(off..).unwrap_or(&[]))));
            }
            s
        }
    }
}

fn l4(l4: L4, proto: u8, icmp: &str) -> String {
    match l4 {
        L4::Udp { sport, dport } => format!("UDP {sport} → {dport}"),
        L4::Tcp { sport, dport, flags } => format!("TCP {sport} → {dport} flags {flags:#04x}"),
        L4::Icmp { typ, code, rest } => format!("{icmp} type {typ} code {code} id {}", u16::from_be_bytes([rest[0], rest[1]])),
        L4::None => format!("proto {proto}"),
    }
}
