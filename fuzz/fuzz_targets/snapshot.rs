//! The snapshot loader on any text: a snapshot or one error line, never a panic; an accepted
//! snapshot compiles (or is refused with a line) and every host's datapath starts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    edgepath_fuzz::run_snapshot(data);
});
