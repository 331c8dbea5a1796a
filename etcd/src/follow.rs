//! Following the published snapshot (SPEC §9.1) on a thread of its own: read at the revision
//! where `P/version` last changed, then a watch on `P/version` from the next revision; each
//! version read whole at its own revision and handed over once, in order. The datapath's record
//! kept at `P/agents/<host>` under a lease.
//!
//! **Faults.** Any error — the servers unreachable, a request unanswered for 5 s, the watch
//! ended — drops the connection and tries again after a pause that doubles from 100 ms to 3 s;
//! the datapath meanwhile runs what it has. A reconnect resumes the watch from the revision
//! after the last version seen, so nothing is read again when nothing changed; a watch whose
//! revision was compacted away reads the prefix again as it stands. Every version is handed
//! over only if its revision is past the last one handed over, so nothing is applied twice.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use etcd_client::{Client, EventType, LeaseKeepAliveStream, LeaseKeeper, PutOptions, WatchOptions};
use serde_json::Value;
use tokio::sync::watch;

use crate::document::{document_of, VERSION};
use crate::{timed, Config, Error};

/// The agent record's lease, seconds: the key is gone this long after its datapath died.
pub const LEASE_TTL: i64 = 5;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// One published version, read whole at one revision.
#[derive(Debug)]
pub struct Published {
    /// Its revision: where `P/version` was written.
    pub revision: i64,
    /// The snapshot document, or why the keys make none (one line naming the key).
    pub document: Result<Value, Error>,
    /// Where it was read, for the datapath's lines: servers, prefix and revision.
    pub origin: String,
}

/// The follower: its thread runs until the follower is dropped, when it gives up the agent
/// record's lease (the key goes at once).
pub struct Follower {
    describe: String,
    versions: mpsc::Receiver<Published>,
    record: watch::Sender<String>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Follow what `cfg` names, as `host`.
    pub fn start(cfg: Config, host: &str) -> Result<Follower, Error> {
        let (tx, versions) = mpsc::channel();
        let (record, record_rx) = watch::channel(serde_json::json!({ "host": host }).to_string());
        let (stop, stop_rx) = watch::channel(false);
        let describe = cfg.describe();
        let rt = crate::runtime()?;
        let agent = cfg.key(&format!("{}/{host}", crate::document::AGENTS));
        let state = State { cfg, agent, tx, record: record_rx, stop: stop_rx, delivered: 0, watch_from: None, lease: None, down: false };
        let thread = std::thread::Builder::new()
            .name("etcd".into())
            .spawn(move || rt.block_on(state.run()))
            .map_err(|e| Error(format!("starting the etcd thread: {e}")))?;
        Ok(Follower { describe, versions, record, stop, thread: Some(thread) })
    }

    /// The servers and prefix followed.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The newest version handed over since the last call, the ones before it skipped.
    pub fn latest(&self) -> Option<Published> {
        self.versions.try_iter().last()
    }

    /// [`Follower::latest`], waiting up to `timeout` for one.
    pub fn wait(&self, timeout: Duration) -> Option<Published> {
        let first = self.versions.recv_timeout(timeout).ok()?;
        Some(self.latest().unwrap_or(first))
    }

    /// What the agent record holds from now on (written when it changes).
    pub fn report(&self, record: String) {
        self.record.send_if_modified(|r| {
            let changed = *r != record;
            *r = record;
            changed
        });
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread's state across connections.
struct State {
    cfg: Config,
    /// `P/agents/<host>`.
    agent: String,
    tx: mpsc::Sender<Published>,
    record: watch::Receiver<String>,
    stop: watch::Receiver<bool>,
    /// The revision of the last version handed over.
    delivered: i64,
    /// Where the watch resumes; `None`: read again first.
    watch_from: Option<i64>,
    lease: Option<i64>,
    /// The servers were found unreachable (said once, until they answer again).
    down: bool,
}

/// How a session ended: asked to stop, or by an error (try again).
enum End {
    Stop,
    Failed(Error),
}

impl From<Error> for End {
    fn from(e: Error) -> End {
        End::Failed(e)
    }
}

impl State {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            match self.session(&mut backoff).await {
                End::Stop => return,
                End::Failed(e) => {
                    if !self.down {
                        tracing::warn!("{e}; the running snapshot stays, trying again (every {} s at most)", BACKOFF_MAX.as_secs());
                        self.down = true;
                    } else {
                        tracing::debug!("{e}");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.changed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn session(&mut self, backoff: &mut Duration) -> End {
        let cfg = self.cfg.clone();
        let failed = |what: &str, e: etcd_client::Error| End::Failed(cfg.error(what, e));
        let mut client = match cfg.connect().await {
            Ok(c) => c,
            Err(e) => return End::Failed(e),
        };
        let (mut keeper, mut alive) = match self.lease(&mut client).await {
            Ok(k) => k,
            Err(e) => return End::Failed(e),
        };
        let mut tick = tokio::time::interval(Duration::from_millis(LEASE_TTL as u64 * 1000 / 3));
        'sync: loop {
            if self.watch_from.is_none() {
                if let Err(e) = self.read_latest(&mut client).await {
                    return End::Failed(e);
                }
            }
            let from = self.watch_from.unwrap_or(0);
            let opts = WatchOptions::new().with_start_revision(from);
            let mut stream = match timed(client.watch(cfg.key(VERSION), Some(opts))).await {
                Ok(s) => s,
                Err(e) => return failed("watching", e),
            };
            *backoff = BACKOFF_MIN;
            if std::mem::take(&mut self.down) {
                tracing::info!("{}: reachable again, watching from revision {from}", cfg.describe());
            }
            loop {
                tokio::select! {
                    _ = self.stop.changed() => {
                        if let Some(id) = self.lease.take() {
                            let _ = tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(id)).await;
                        }
                        return End::Stop;
                    }
                    m = stream.message() => {
                        let resp = match m {
                            Ok(Some(r)) => r,
                            Ok(None) => return End::Failed(cfg.error("watching", "the watch ended")),
                            Err(e) => return failed("watching", e),
                        };
                        if resp.compact_revision() > 0 || resp.canceled() {
                            tracing::info!(
                                "{}: the watch from revision {from} was compacted away (to {}); reading the prefix again",
                                cfg.describe(), resp.compact_revision()
                            );
                            self.watch_from = None;
                            continue 'sync;
                        }
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            match ev.event_type() {
                                EventType::Put => {
                                    if let Err(e) = self.read_at(&mut client, kv.mod_revision()).await {
                                        return End::Failed(e);
                                    }
                                    self.watch_from = Some(kv.mod_revision() + 1);
                                }
                                EventType::Delete => {
                                    tracing::warn!("{}: {} deleted; the running snapshot stays", cfg.describe(), cfg.key(VERSION));
                                    self.watch_from = Some(kv.mod_revision() + 1);
                                }
                            }
                        }
                    }
                    _ = tick.tick() => {
                        if let Err(e) = timed(keeper.keep_alive()).await {
                            return failed("keeping the agent lease", e);
                        }
                    }
                    r = alive.message() => match r {
                        Ok(Some(r)) if r.ttl() > 0 => {}
                        Ok(_) => {
                            // The lease ran out (etcd was away longer than its TTL): a new one.
                            self.lease = None;
                            return End::Failed(cfg.error("keeping the agent lease", "the lease expired"));
                        }
                        Err(e) => return failed("keeping the agent lease", e),
                    },
                    _ = self.record.changed() => {
                        if let Err(e) = self.put_record(&mut client).await {
                            return End::Failed(e);
                        }
                    }
                }
            }
        }
    }

    /// The agent lease: the one held, when it still lives (a reconnect within its TTL), or a
    /// new one; and the record written under it.
    async fn lease(&mut self, client: &mut Client) -> Result<(LeaseKeeper, LeaseKeepAliveStream), Error> {
        let cfg = self.cfg.clone();
        if let Some(id) = self.lease {
            if let Ok((mut k, mut s)) = timed(client.lease_keep_alive(id)).await {
                if timed(k.keep_alive()).await.is_ok() {
                    if let Ok(Ok(Some(r))) = tokio::time::timeout(crate::REQUEST, s.message()).await {
                        if r.ttl() > 0 {
                            self.put_record(client).await?;
                            return Ok((k, s));
                        }
                    }
                }
            }
        }
        let id = timed(client.lease_grant(LEASE_TTL, None)).await.map_err(|e| cfg.error("taking the agent lease", e))?.id();
        self.lease = Some(id);
        let keep = timed(client.lease_keep_alive(id)).await.map_err(|e| cfg.error("keeping the agent lease", e))?;
        self.put_record(client).await?;
        Ok(keep)
    }

    async fn put_record(&mut self, client: &mut Client) -> Result<(), Error> {
        let record = self.record.borrow_and_update().clone();
        let opts = self.lease.map(|id| PutOptions::new().with_lease(id));
        timed(client.put(self.agent.clone(), record, opts)).await.map_err(|e| self.cfg.error(&format!("writing {}", self.agent), e))?;
        Ok(())
    }

    /// Read the version published now: at the revision where `P/version` last changed, when
    /// that is past what was handed over; the watch resumes after the revision read.
    async fn read_latest(&mut self, client: &mut Client) -> Result<(), Error> {
        let cfg = self.cfg.clone();
        let resp = timed(client.get(cfg.key(VERSION), None)).await.map_err(|e| cfg.error("reading the version", e))?;
        let now = resp.header().map_or(0, |h| h.revision());
        match resp.kvs().first() {
            Some(kv) if kv.mod_revision() > self.delivered => self.read_at(client, kv.mod_revision()).await?,
            Some(_) => {}
            None => tracing::info!("{}: no snapshot published yet ({} absent); waiting for one", cfg.describe(), cfg.key(VERSION)),
        }
        self.watch_from = Some(now + 1);
        Ok(())
    }

    /// Read the prefix as it stood at `revision`, where `P/version` was written
    /// ([`Config::read_published`]), and hand it over.
    async fn read_at(&mut self, client: &mut Client, revision: i64) -> Result<(), Error> {
        let cfg = self.cfg.clone();
        let Some((kvs, revision)) = cfg.read_published(client, revision).await? else { return Ok(()) };
        if revision <= self.delivered {
            return Ok(());
        }
        let keys = kvs.iter().map(|kv| (std::str::from_utf8(kv.key()).unwrap_or_default(), kv.value()));
        let document = match document_of(&cfg.prefix, keys) {
            Ok(Some((_, doc))) => Ok(doc),
            Ok(None) => return Ok(()),
            Err(e) => Err(e),
        };
        self.delivered = revision;
        let origin = format!("{} at revision {revision}", cfg.describe());
        // The datapath gone: nothing to hand over to; the thread stops with the follower.
        let _ = self.tx.send(Published { revision, document, origin });
        Ok(())
    }
}
