//! `snapshot push` and `snapshot pull` (SPEC §9.1): a snapshot file's resources written as keys
//! (removed ones deleted, unchanged ones left alone) in transactions of at most 128 operations
//! (etcd's default cap), then `P/version`, last; and the published snapshot read back as the
//! datapath reads it.

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde_json::Value;

use crate::document::{document_of, keys_of, AGENTS, VERSION};
use crate::{timed, Config, Error};

/// Operations per transaction: etcd's default `--max-txn-ops`.
const MAX_OPS: usize = 128;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub version: u64,
    /// Resources written (new or changed), deleted, and left as they were.
    pub written: usize,
    pub deleted: usize,
    pub unchanged: usize,
    /// The revision of `P/version`, or `None` when nothing changed and nothing was written.
    pub revision: Option<i64>,
}

/// Publish `doc` (a snapshot file's document) under `cfg`'s prefix. Its version must be past
/// the published one; `P/version` is written only if no other publisher wrote it since this
/// push read it.
pub fn push(cfg: &Config, doc: &Value) -> Result<Pushed, Error> {
    push_with(cfg, || keys_of(doc))
}

/// [`push`] of the keys `prepare` makes ([`keys_of`] a document it reads, parses and validates,
/// say): run on a thread of its own while the published keys are read, and waited for before
/// anything is written — a failed `prepare` writes nothing.
pub fn push_with(cfg: &Config, prepare: impl FnOnce() -> Result<(u64, Vec<(String, String)>), Error> + Send) -> Result<Pushed, Error> {
    let rt = crate::runtime()?;
    std::thread::scope(|s| {
        let prepared = s.spawn(prepare);
        rt.block_on(async {
            let started = std::time::Instant::now();
            let ms = |t: std::time::Instant| t.elapsed().as_secs_f64() * 1e3;
            let mut client = cfg.connect().await?;
            let (now, _) = cfg.read_all(&mut client, 0).await.map_err(|e| cfg.error("reading the published keys", e))?;
            tracing::debug!(keys = now.len(), ms = ms(started), "published keys read");
            let version_key = cfg.key(VERSION);
            let (mut published, mut version_rev) = (None, 0);
            let mut old = std::collections::BTreeMap::new();
            for kv in &now {
                let key = std::str::from_utf8(kv.key()).unwrap_or_default();
                if key == version_key {
                    published = std::str::from_utf8(kv.value()).ok().and_then(|v| v.trim().parse::<u64>().ok());
                    version_rev = kv.mod_revision();
                } else if let Some(rest) = key.strip_prefix(&format!("{}/", cfg.prefix)).filter(|r| !r.starts_with(&format!("{AGENTS}/"))) {
                    old.insert(rest, kv.value());
                }
            }
            let (version, keys) = prepared.join().unwrap_or_else(|_| Err(Error("preparing the snapshot failed".into())))?;
            tracing::debug!(ms = ms(started), "prepared");
            let mut ops = Vec::new();
            let mut unchanged = 0;
            // The same bytes, or else the same JSON value (reformatted): left alone.
            let same = |old: &[u8], new: &str| {
                old == new.as_bytes() || serde_json::from_slice::<Value>(old).ok() == serde_json::from_str::<Value>(new).ok()
            };
            for (rest, value) in &keys {
                match old.remove(rest.as_str()) {
                    Some(v) if same(v, value) => unchanged += 1,
                    _ => ops.push(TxnOp::put(cfg.key(rest), value.as_str(), None)),
                }
            }
            let written = ops.len();
            let deleted = old.len();
            ops.extend(old.keys().map(|rest| TxnOp::delete(cfg.key(rest), None)));
            if ops.is_empty() && published == Some(version) {
                return Ok(Pushed { version, written, deleted, unchanged, revision: None });
            }
            if let Some(p) = published.filter(|&p| p >= version) {
                return Err(Error(format!("{}: publishes version {p}; the file's version {version} must be greater", cfg.describe())));
            }
            let mut rest = ops;
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(MAX_OPS));
                timed(client.txn(Txn::new().and_then(rest))).await.map_err(|e| cfg.error("writing resources", e))?;
                rest = tail;
            }
            let last = Txn::new()
                .when([Compare::mod_revision(version_key.as_str(), CompareOp::Equal, version_rev)])
                .and_then([TxnOp::put(version_key.as_str(), version.to_string(), None)]);
            let resp = timed(client.txn(last)).await.map_err(|e| cfg.error("writing the version", e))?;
            if !resp.succeeded() {
                return Err(Error(format!("{}: another publisher wrote {version_key} during this push; push again", cfg.describe())));
            }
            let revision = resp.header().map(|h| h.revision());
            tracing::debug!(written, deleted, ms = ms(started), "pushed");
            Ok(Pushed { version, written, deleted, unchanged, revision })
        })
    })
}

/// The published snapshot, read as the datapath reads it: its document (version included) and
/// the revision of its version.
pub fn pull(cfg: &Config) -> Result<(Value, i64), Error> {
    crate::runtime()?.block_on(async {
        let mut client = cfg.connect().await?;
        let none = || Error(format!("{}: no snapshot published ({} absent)", cfg.describe(), cfg.key(VERSION)));
        let resp = timed(client.get(cfg.key(VERSION), None)).await.map_err(|e| cfg.error("reading the version", e))?;
        let at = resp.kvs().first().ok_or_else(none)?.mod_revision();
        let (kvs, at) = cfg
            .read_published(&mut client, at)
            .await?
            .ok_or_else(|| Error(format!("{}: a publication is under way; pull again", cfg.describe())))?;
        let keys = kvs.iter().map(|kv| (std::str::from_utf8(kv.key()).unwrap_or_default(), kv.value()));
        let (_, doc) = document_of(&cfg.prefix, keys)?.ok_or_else(none)?;
        Ok((doc, at))
    })
}
