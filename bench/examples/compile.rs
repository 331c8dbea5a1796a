//! `compile PORTS [N]`: validate and compile a cloud of PORTS ports N times, for profilers
//! (issue 15: how compilation grows with the snapshot).
fn main() {
    let arg = |k: usize, d: usize| std::env::args().nth(k).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (ports, n) = (arg(1, 10_000), arg(2, 1));
    let doc = edgepath_bench::cloud(1, ports / 10, 8, 100);
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(rules::topology_of(&doc, "compile").expect("compiles"));
    }
    println!("{ports} ports: {:.1} ms per compile", t.elapsed().as_secs_f64() * 1000.0 / n as f64);
}
