//! `cloud VERSION ROUTERS VMS HOSTS > FILE`: a cloud's snapshot for scale benches
//! ([`edgepath_bench::cloud`]): ROUTERS × (VMS + 2) ports.
fn main() {
    let arg = |k: usize, d: usize| std::env::args().nth(k).and_then(|a| a.parse().ok()).unwrap_or(d);
    let doc = edgepath_bench::cloud(arg(1, 1) as u64, arg(2, 1000), arg(3, 8), arg(4, 100));
    println!("{doc}");
}
