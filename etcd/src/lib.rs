//! edgepath's etcd side (SPEC §9.1): the snapshot kept in etcd as one key per resource, read
//! whole at the revision where its version last changed, followed by a watch; the agent's
//! membership key under a lease; `snapshot push` and `pull`.
//!
//! **Layout.** Under a prefix `P`: `P/<collection>/<id>` holds one resource's JSON object, as the
//! snapshot file holds it in its collection's list; `P/version` the snapshot's version, written
//! last by a publisher; `P/agents/<host>` each running datapath's record (its version and ports),
//! under a lease. Nothing here knows the collections: a publication is whatever lists of
//! resources with ids a snapshot file holds, and the datapath validates what it reads.
//!
//! **Threads.** etcd's client is async (tonic over tokio); the datapath is not. Everything async
//! stays in this crate: a [`Follower`] runs a current-thread runtime on a thread of its own and
//! hands each version over as a JSON document; [`push`] and [`pull`] run one on the caller's
//! thread for their one task.

mod document;
mod follow;
mod publish;
pub mod server;

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, KeyValue};

pub use document::{document_of, keys_of};
pub use follow::{Follower, Published, LEASE_TTL};
pub use publish::{pull, push, push_with, Pushed};

/// Where the snapshot lives: the servers, the prefix, and TLS.
#[derive(Debug, Clone)]
pub struct Config {
    /// `http://host:port` or `https://…`, one or more.
    pub endpoints: Vec<String>,
    /// `P`, without a trailing `/`.
    pub prefix: String,
    pub tls: Tls,
}

/// TLS files (PEM): the CA that signs the servers, and this client's certificate and key
/// where the servers ask for one.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// What went wrong, as the one line an operator reads: where (the servers and prefix, or the
/// key) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// How long one request may take before the servers count as unreachable.
const REQUEST: Duration = Duration::from_secs(5);
/// Keys read per range request: a large snapshot is read in pages, all at one revision.
const PAGE: i64 = 1000;

impl Config {
    /// `endpoints` (comma-separated) and `prefix`, checked: one line naming the argument where
    /// either is unusable.
    pub fn new(endpoints: &str, prefix: &str, tls: Tls) -> Result<Config, Error> {
        let endpoints: Vec<String> = endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect();
        if endpoints.is_empty() {
            return Err(Error("--etcd: no endpoint given (http://host:port[,…])".into()));
        }
        if let Some(bad) = endpoints.iter().find(|e| !(e.starts_with("http://") || e.starts_with("https://"))) {
            return Err(Error(format!("--etcd {bad:?}: an endpoint is http://host:port or https://host:port")));
        }
        let trimmed = prefix.trim_end_matches('/');
        if trimmed.is_empty() || !trimmed.starts_with('/') {
            return Err(Error(format!("--prefix {prefix:?}: a prefix is a key path such as /edgepath")));
        }
        if tls.cert.is_some() != tls.key.is_some() {
            return Err(Error("--etcd-cert and --etcd-key go together".into()));
        }
        Ok(Config { endpoints, prefix: trimmed.to_string(), tls })
    }

    /// The servers and prefix, as error lines and `status` name them.
    pub fn describe(&self) -> String {
        format!("etcd {} prefix {}", self.endpoints.join(","), self.prefix)
    }

    /// The full key of `rest` under the prefix.
    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// A line naming where, for an error `e` while doing `what`.
    fn error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error(format!("{}: {what}: {}", self.describe(), one_line(&e.to_string())))
    }

    /// A client (connections are made as requests need them).
    async fn connect(&self) -> Result<Client, Error> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        if self.tls.ca.is_some() || self.tls.cert.is_some() {
            let read = |p: &PathBuf, what: &str| std::fs::read(p).map_err(|e| Error(format!("--etcd-{what} {}: {e}", p.display())));
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &self.tls.ca {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca, "cacert")?));
            }
            if let (Some(c), Some(k)) = (&self.tls.cert, &self.tls.key) {
                tls = tls.identity(etcd_client::Identity::from_pem(read(c, "cert")?, read(k, "key")?));
            }
            opts = opts.with_tls(tls);
        }
        timed(Client::connect(&self.endpoints, Some(opts))).await.map_err(|e| self.error("connecting", e))
    }

    /// Every key under the prefix at `revision` (0: the latest), in key order, read in pages at
    /// one revision; and the revision read.
    async fn read_all(&self, client: &mut Client, revision: i64) -> Result<(Vec<KeyValue>, i64), etcd_client::Error> {
        let start = format!("{}/", self.prefix);
        let end = prefix_end(&start);
        let mut from = start.into_bytes();
        let mut at = revision;
        let mut kvs = Vec::new();
        loop {
            let opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE).with_revision(at);
            let resp = timed(client.get(from.clone(), Some(opts))).await?;
            if at == 0 {
                at = resp.header().map_or(0, |h| h.revision());
            }
            let page = resp.kvs();
            kvs.extend_from_slice(page);
            match (resp.more(), page.last()) {
                (true, Some(last)) => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok((kvs, at)),
            }
        }
    }
}

impl Config {
    /// The prefix as it stood at `revision`, where `P/version` was written, and that revision.
    /// When it was compacted away, the prefix as it stands instead, if no resource changed
    /// after its version; `None` if one did (a publication is under way: its version will
    /// come).
    async fn read_published(&self, client: &mut Client, revision: i64) -> Result<Option<(Vec<KeyValue>, i64)>, Error> {
        match self.read_all(client, revision).await {
            Ok((kvs, _)) => Ok(Some((kvs, revision))),
            Err(e) if compacted(&e) => {
                let (kvs, _) = self.read_all(client, 0).await.map_err(|e| self.error("reading the snapshot", e))?;
                let version = self.key(document::VERSION);
                let at = kvs.iter().find(|kv| kv.key() == version.as_bytes()).map_or(0, |kv| kv.mod_revision());
                let agents = self.key(document::AGENTS);
                if kvs.iter().any(|kv| kv.mod_revision() > at && !kv.key().starts_with(agents.as_bytes())) {
                    tracing::info!("{}: resources changed after revision {at} of the version: a publication is under way", self.describe());
                    return Ok(None);
                }
                Ok(Some((kvs, at)))
            }
            Err(e) => Err(self.error("reading the snapshot", e)),
        }
    }
}

/// The first key after every key that begins with `p`.
fn prefix_end(p: &str) -> Vec<u8> {
    let mut end = p.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A request given [`REQUEST`] to finish.
async fn timed<T>(f: impl std::future::Future<Output = Result<T, etcd_client::Error>>) -> Result<T, etcd_client::Error> {
    match tokio::time::timeout(REQUEST, f).await {
        Ok(r) => r,
        Err(_) => Err(etcd_client::Error::IoError(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 5 s"))),
    }
}

/// Whether `e` says the revision asked for was compacted away.
fn compacted(e: &etcd_client::Error) -> bool {
    e.to_string().contains("compacted")
}

/// `s` on one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A current-thread runtime for one task on the caller's thread.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error(format!("starting the etcd client: {e}")))
}
