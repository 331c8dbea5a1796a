//! `pcapgen [ROOT]`: write the scenario suites under ROOT (default `pcaps`).

fn main() {
    let root = std::env::args().nth(1).unwrap_or_else(|| "pcaps".to_string());
    for (name, story) in pcapgen::write_all(std::path::Path::new(&root)) {
        println!("{name}: {story}");
    }
}
