//! The flow table's tests (`table.rs`).
use super::*;

fn flow() -> Arc<Flow> {
    Arc::new(Flow {
        decap: false,
        police_in: None,
        rewrite: Default::default(),
        outputs: crate::flow::Outputs::None,
        drop: None,
        epoch: 0,
        conn: None,
        state: None,
        learned: Default::default(),
        mac_seen: None,
        hits: Default::default(),
    })
}

fn key(n: u64) -> FlowKey {
    FlowKey::Plain([n, n.wrapping_mul(7), 3, n >> 3, 0])
}

/// Random inserts, lookups and removals against a model: what the table holds it finds,
/// it holds no more than its limit, and what it let go it counted.
#[test]
fn the_table_finds_what_it_holds_within_its_bound() {
    let mut x: u64 = 88172645463325252;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for limit in [1usize, 2, 7, 100, 3000] {
        let mut t = FlowTable::with_limit(limit);
        let mut model: std::collections::HashMap<FlowKey, Arc<Flow>> = Default::default();
        for op in 0..20_000 {
            let k = key(rnd() % (limit as u64 * 3));
            match rnd() % 4 {
                0 | 1 => {
                    let f = flow();
                    t.insert(k, f.clone());
                    model.insert(k, f);
                }
                2 => {
                    t.remove(&k);
                    model.remove(&k);
                }
                _ => {
                    if let Some(f) = t.get(&k) {
                        assert!(Arc::ptr_eq(f, &model[&k]), "a key finds its own flow");
                    }
                }
            }
            assert!(t.len() <= limit, "{} flows in a table of {limit}", t.len());
            if op % 64 == 0 {
                // What the table let go, the model lets go too.
                model.retain(|k, _| t.find(t.hash(k), k).is_some());
                assert_eq!(t.len(), model.len());
                assert_eq!(t.iter().count(), t.len());
            }
        }
    }
}

/// A flow used since the hand last passed stays; the others go first.
#[test]
fn a_full_table_lets_an_unused_flow_go() {
    let mut t = FlowTable::with_limit(3);
    for n in 0..3 {
        t.insert(key(n), flow());
    }
    assert!(t.get(&key(0)).is_some() && t.get(&key(2)).is_some());
    t.insert(key(3), flow());
    assert!(t.get(&key(1)).is_none(), "the one flow not used went");
    assert!(t.get(&key(0)).is_some() && t.get(&key(2)).is_some() && t.get(&key(3)).is_some());
    assert_eq!(t.evicted, 1);
}
