//! The shape of the crate, kept by test (issue 11): no module depends on itself through others,
//! and no source file grows past what one reader holds in mind.
//!
//! Modules are the crate's top-level ones (`sim`, `ct`, `io` with everything under them); an
//! edge is a `crate::` path outside comments, the crate root's `pub use` re-exports resolved to
//! the module they come from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to (`None` for the crate root).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(stem) => Some(stem.to_string()),
        None => Some(first),
    }
}

/// Code without its comments (line comments and doc comments; the crate has no block comments).
fn code(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The names `crate::` paths in `code` start with, group imports (`crate::{a, b::c}`) included.
fn crate_refs(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            let mut first = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => first = true,
                    c if first && (c.is_alphanumeric() || c == '_') => item.push(c),
                    _ if first && !item.is_empty() => {
                        out.push(std::mem::take(&mut item));
                        first = false;
                    }
                    _ => {}
                }
            }
            if !item.is_empty() {
                out.push(item);
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.push(name);
        }
    }
    out
}

/// The crate root's re-exports: `pub use worker::Datapath;` makes `crate::Datapath` mean `worker`.
fn reexports() -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let mut map = BTreeMap::new();
    for l in lib.lines() {
        let Some(path) = l.trim().strip_prefix("pub use ").and_then(|p| p.strip_suffix(';')) else { continue };
        let Some((module, names)) = path.split_once("::") else { continue };
        for n in names.trim_matches(|c| c == '{' || c == '}').split(',') {
            map.insert(n.trim().to_string(), module.to_string());
        }
    }
    map
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let re = reexports();
    let mut g: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for f in &files {
        let Some(m) = module_of(f) else { continue };
        let text = std::fs::read_to_string(f).expect("source");
        for r in crate_refs(&code(&text)) {
            let to = re.get(&r).cloned().unwrap_or(r);
            if to != m && modules.contains(&to) {
                g.entry(m.clone()).or_default().insert(to);
            }
        }
    }
    g
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> T<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on.insert(v);
            for w in self.g.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let l = self.low[v].min(self.low[w]);
                    self.low.insert(v, l);
                } else if self.on.contains(w) {
                    let l = self.low[v].min(self.index[w]);
                    self.low.insert(v, l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    scc.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    self.out.push(scc);
                }
            }
        }
    }
    let mut t = T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn modules_form_no_cycle() {
    let g = graph();
    // The checker itself: a made-up cycle is found.
    let mut with_cycle = g.clone();
    with_cycle.entry("wire".into()).or_default().insert("worker".into());
    assert!(!cycles(&with_cycle).is_empty(), "the cycle finder misses wire → worker → … → wire");
    assert!(g["worker"].contains("shared"), "the graph misses worker → shared: {g:?}");
    let found = cycles(&g);
    let edges = |scc: &Vec<String>| {
        scc.iter().flat_map(|m| g[m].iter().filter(|t| scc.contains(t)).map(move |t| format!("{m} → {t}"))).collect::<Vec<_>>().join(", ")
    };
    let report: Vec<String> = found.iter().map(edges).collect();
    assert!(found.is_empty(), "modules that depend on themselves: {report:?}");
}

#[test]
fn no_file_is_longer_than_a_reader_holds() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).ok()?.lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.strip_prefix(src()).unwrap_or(f).display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}
