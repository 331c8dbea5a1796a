//! The header parser on any bytes: a view or a named drop, never a panic; and what it accepts
//! describes and re-parses the same; the express lane's reader (`wire::tcp_udp4`) takes only
//! what it takes, and reads it the same.
#![no_main]

use datapath::wire::{self, vxlan, L3};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The express lane's reader takes a subset of what the parser takes, and reads it the same.
    assert_eq!(wire::tcp_udp4(data), wire::tcp_udp4::by_parse(data), "tcp_udp4 and parse disagree");
    let Ok(h) = wire::parse(data) else { return };
    let _ = wire::describe::describe(data);
    assert_eq!(wire::parse(data).ok(), Some(h), "parsing is a function of the bytes");
    if let L3::Ipv4(ip) = &h.l3 {
        assert!(ip.end() <= data.len(), "the view stays inside the frame");
        assert!(ip.l4_off() <= ip.end());
        if let Some((_, off)) = vxlan::view(data, &h) {
            if let Some(inner) = data.get(off..ip.end()) {
                let _ = wire::parse(inner);
                let _ = wire::describe::describe(inner);
            }
        }
    }
});
