//! The snapshot loader on any text: a snapshot or one error line, never a panic; an accepted
//! snapshot compiles (or is refused with a line) and every host's datapath starts.
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let snap = match rules::load_str(text) {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "one line: {e}");
            return;
        }
    };
    let hosts: Vec<String> = snap.hosts.iter().map(|h| h.id.clone()).collect();
    let topo = match rules::Topology::compile(snap) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "one line: {e}");
            return;
        }
    };
    for h in hosts {
        let _ = datapath::Datapath::new(topo.clone(), &h, &HashMap::new());
    }
});
