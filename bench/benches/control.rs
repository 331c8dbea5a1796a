//! The control plane's cost against the snapshot's size (issue 15): a cloud of N ports
//! ([`edgepath_bench::cloud`]: N/10 routers, each with a network of eight VMs and a gateway with a floating IP, on 100 hosts)
//! validated and compiled (`control/compile/N`), and a running datapath given a new version of
//! it with one port changed (`control/reload/N`: compile and swap in, as a version from etcd or a
//! file reload is applied). Compile time should grow no faster than the snapshot.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::sync::Arc;

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("control");
    g.sample_size(10);
    for ports in [1_000usize, 2_000, 5_000, 10_000, 20_000] {
        let doc = edgepath_bench::cloud(1, ports / 10, 8, 100);
        g.bench_with_input(BenchmarkId::new("compile", ports), &doc, |b, doc| {
            b.iter(|| rules::topology_of(doc, "bench").expect("compiles"))
        });
    }
    for ports in [1_000usize, 10_000] {
        let doc = edgepath_bench::cloud(1, ports / 10, 8, 100);
        let topo = Arc::new(rules::topology_of(&doc, "bench").expect("compiles"));
        let dp = datapath::Datapath::new(topo, "host-0", &Default::default()).expect("datapath");
        let mut version = 1;
        g.bench_function(BenchmarkId::new("reload", ports), |b| {
            b.iter(|| {
                version += 1;
                let mut next = doc.clone();
                next["version"] = version.into();
                next["ports"][1]["name"] = format!("v{version}").into();
                let t = rules::topology_of(&next, "bench").expect("compiles");
                dp.shared().set_topology(Arc::new(t)).expect("applies")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, compile);
criterion_main!(benches);
