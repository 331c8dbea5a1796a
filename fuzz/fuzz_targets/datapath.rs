//! The whole datapath fed frames against one of the scenario snapshots (`edgepath_fuzz::Input`),
//! twice — flow cache on and off — checking after every frame that both sent the same bytes and
//! that every IPv4 frame sent carries valid checksums, and at the end that every input was
//! forwarded, handled or dropped exactly once.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    edgepath_fuzz::run_datapath(data);
});
