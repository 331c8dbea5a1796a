//! Where a live datapath's snapshot comes from (SPEC §9.1): a file, read again on SIGHUP or when
//! it changes; or a feed of versions published elsewhere — etcd, followed by the
//! `edgepath-etcd` crate on a thread of its own, so nothing async reaches the datapath — each
//! handed over as a document. Either way a version is validated and compiled here, by the same
//! rules, and applied as one reload.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rules::compile::Topology;

/// The snapshot's source.
pub enum Source {
    File(PathBuf),
    Feed(Box<dyn Feed>),
}

/// One version a feed hands over: its document, or the one line saying why its keys make none;
/// and where it was read (the servers, prefix and revision), which error lines name.
pub struct Version {
    pub document: Result<serde_json::Value, String>,
    pub origin: String,
}

/// Versions published elsewhere.
pub trait Feed: Send {
    /// Where they come from, as `status` names it.
    fn describe(&self) -> String;
    /// The newest version published since the last call, if any (older ones skipped).
    fn latest(&mut self) -> Option<Version>;
    /// What the datapath runs now — `status` as JSON: version, refusal, ports — for the feed to
    /// publish where other hosts and operators see it (etcd's agent records).
    fn report(&mut self, status: &serde_json::Value);
    /// A descriptor readable while a version waits, so the supervisor wakes for it at once
    /// rather than at its next look.
    fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

impl Source {
    /// The file, or the servers and prefix.
    pub fn describe(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Feed(f) => f.describe(),
        }
    }
}

/// A new version to apply, or the one line refusing it (with its version where it has one).
pub type Next = Result<Topology, String>;

/// A source as the supervisor follows it: a file's modification time is looked at once a
/// second.
pub struct Followed {
    pub source: Source,
    mtime: Option<SystemTime>,
    checked: SystemTime,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// `version N: ` for a refusal line, where the document says N.
fn version_of(doc: &serde_json::Value) -> String {
    doc.get("version").and_then(serde_json::Value::as_u64).map_or(String::new(), |v| format!("version {v}: "))
}

impl Followed {
    pub fn new(source: Source) -> Followed {
        let m = match &source {
            Source::File(p) => mtime(p),
            Source::Feed(_) => None,
        };
        Followed { source, mtime: m, checked: SystemTime::now() }
    }

    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// A version to apply, if there is one: a file's when `asked` (SIGHUP) or when it changed,
    /// a feed's when it handed one over.
    pub fn next(&mut self, asked: bool) -> Option<Next> {
        match &mut self.source {
            Source::File(path) => {
                let now = SystemTime::now();
                let mut changed = false;
                if now.duration_since(self.checked).unwrap_or_default() >= Duration::from_secs(1) {
                    self.checked = now;
                    let m = mtime(path);
                    changed = m != self.mtime;
                    self.mtime = m;
                }
                if !asked && !changed {
                    return None;
                }
                let name = path.display().to_string();
                Some(
                    rules::read_document(path)
                        .map_err(|e| e.to_string())
                        .and_then(|doc| rules::topology_of(&doc, &name).map_err(|e| format!("{}{e}", version_of(&doc)))),
                )
            }
            Source::Feed(feed) => {
                let v = feed.latest()?;
                Some(match v.document {
                    Ok(doc) => rules::topology_of(&doc, &v.origin).map_err(|e| format!("{}{e}", version_of(&doc))),
                    Err(e) => Err(format!("{}: {e}", v.origin)),
                })
            }
        }
    }

    /// The feed's descriptor to wake for ([`Feed::wake_fd`]).
    pub fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        match &self.source {
            Source::File(_) => None,
            Source::Feed(f) => f.wake_fd(),
        }
    }

    /// Tell a feed what runs now.
    pub fn report(&mut self, status: &serde_json::Value) {
        if let Source::Feed(f) = &mut self.source {
            f.report(status);
        }
    }
}
