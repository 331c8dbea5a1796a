//! Following the published snapshot (SPEC §9.1) on a thread of its own: the prefix read whole
//! once, then watched from the next revision, every change applied to a mirror of the keys
//! ([`Resources`], each resource parsed once, when written); when `P/version` is written, the
//! mirror is the prefix as it stood at that revision (the watch delivers changes in revision
//! order), and its document is handed over — so a version costs what changed in it, not a read
//! and parse of the whole snapshot. Each version is handed over once, in order. The datapath's
//! record kept at `P/agents/<host>` under a lease.
//!
//! **Faults.** Any error — the servers unreachable, a request unanswered for 5 s, the watch
//! ended — drops the connection and tries again after a pause that doubles from 100 ms to 3 s;
//! the datapath meanwhile runs what it has. A reconnect resumes the watch from the revision
//! after the last change seen, so nothing is read again when nothing changed; a watch whose
//! revision was compacted away reads the prefix again as it stands. Every version is handed
//! over only if its revision is past the last one handed over, so nothing is applied twice.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use etcd_client::{Client, Event, EventType, LeaseKeepAliveStream, LeaseKeeper, PutOptions, WatchOptions};
use serde_json::Value;
use tokio::sync::watch;

use crate::document::{kind, Kind, Resources, VERSION};
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
    /// Readable while a version waits ([`Follower::wake_fd`]).
    wake: Wake,
    record: watch::Sender<String>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Follow what `cfg` names, as `host`.
    pub fn start(cfg: Config, host: &str) -> Result<Follower, Error> {
        let (tx, versions) = mpsc::channel();
        let (reader, writer) = std::io::pipe().map_err(|e| Error(format!("starting the etcd thread: {e}")))?;
        let pending = Arc::new(AtomicBool::new(false));
        let wake = Wake { reader, pending: pending.clone() };
        let (record, record_rx) = watch::channel(serde_json::json!({ "host": host }).to_string());
        let (stop, stop_rx) = watch::channel(false);
        let describe = cfg.describe();
        let rt = crate::runtime()?;
        let agent = cfg.key(&format!("{}/{host}", crate::document::AGENTS));
        let state = State {
            cfg,
            agent,
            tx,
            woken: (writer, pending),
            record: record_rx,
            stop: stop_rx,
            delivered: 0,
            watch_from: None,
            mirror: Resources::default(),
            lease: None,
            down: false,
        };
        let thread = std::thread::Builder::new()
            .name("etcd".into())
            .spawn(move || rt.block_on(state.run()))
            .map_err(|e| Error(format!("starting the etcd thread: {e}")))?;
        Ok(Follower { describe, versions, wake, record, stop, thread: Some(thread) })
    }

    /// The servers and prefix followed.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The newest version handed over since the last call, the ones before it skipped.
    pub fn latest(&self) -> Option<Published> {
        if self.wake.pending.swap(false, Ordering::AcqRel) {
            let _ = (&self.wake.reader).read(&mut [0u8]);
        }
        self.versions.try_iter().last()
    }

    /// A descriptor that is readable while a version waits to be taken, for a caller that
    /// sleeps in `poll()` to wake for it at once.
    pub fn wake_fd(&self) -> std::os::fd::RawFd {
        self.wake.reader.as_raw_fd()
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

/// A pipe with one byte in it while a version waits (written once however many wait).
struct Wake {
    reader: std::io::PipeReader,
    pending: Arc<AtomicBool>,
}

/// The thread's state across connections.
struct State {
    cfg: Config,
    /// `P/agents/<host>`.
    agent: String,
    tx: mpsc::Sender<Published>,
    /// The wake pipe's writing end, and whether a byte is in it.
    woken: (std::io::PipeWriter, Arc<AtomicBool>),
    record: watch::Receiver<String>,
    stop: watch::Receiver<bool>,
    /// The revision of the last version handed over.
    delivered: i64,
    /// Where the watch resumes; `None`: read again first.
    watch_from: Option<i64>,
    /// The keys as of the revision before `watch_from`.
    mirror: Resources,
    lease: Option<i64>,
    /// The servers were found unreachable (said once, until they answer again).
    down: bool,
}

impl State {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            match self.session(&mut backoff).await {
                // Asked to stop.
                Ok(()) => return,
                Err(e) if !self.down => {
                    tracing::warn!("{e}; the running snapshot stays, trying again (every {} s at most)", BACKOFF_MAX.as_secs());
                    self.down = true;
                }
                Err(e) => tracing::debug!("{e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.changed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection, until asked to stop (`Ok`) or an error (try again).
    async fn session(&mut self, backoff: &mut Duration) -> Result<(), Error> {
        let cfg = self.cfg.clone();
        let mut client = cfg.connect().await?;
        let (mut keeper, mut alive) = self.lease(&mut client).await?;
        let mut tick = tokio::time::interval(Duration::from_millis(LEASE_TTL as u64 * 1000 / 3));
        'sync: loop {
            if self.watch_from.is_none() {
                self.read_all(&mut client).await?;
            }
            let from = self.watch_from.unwrap_or(0);
            let opts = WatchOptions::new().with_prefix().with_start_revision(from);
            let mut stream = timed(client.watch(format!("{}/", cfg.prefix), Some(opts))).await.map_err(|e| cfg.error("watching", e))?;
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
                        return Ok(());
                    }
                    m = stream.message() => {
                        let resp = m.map_err(|e| cfg.error("watching", e))?.ok_or_else(|| cfg.error("watching", "the watch ended"))?;
                        if resp.compact_revision() > 0 || resp.canceled() {
                            tracing::info!(
                                "{}: the watch from revision {from} was compacted away (to {}); reading the prefix again",
                                cfg.describe(), resp.compact_revision()
                            );
                            self.watch_from = None;
                            continue 'sync;
                        }
                        self.apply(resp.events());
                    }
                    _ = tick.tick() => {
                        timed(keeper.keep_alive()).await.map_err(|e| cfg.error("keeping the agent lease", e))?;
                    }
                    r = alive.message() => match r.map_err(|e| cfg.error("keeping the agent lease", e))? {
                        Some(r) if r.ttl() > 0 => {}
                        _ => {
                            // The lease ran out (etcd was away longer than its TTL): a new one.
                            self.lease = None;
                            return Err(cfg.error("keeping the agent lease", "the lease expired"));
                        }
                    },
                    _ = self.record.changed() => self.put_record(&mut client).await?,
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

    /// Read the whole prefix as it stands into the mirror, and hand over its version if it is
    /// new; the watch resumes after the revision read.
    async fn read_all(&mut self, client: &mut Client) -> Result<(), Error> {
        let cfg = self.cfg.clone();
        let started = std::time::Instant::now();
        let (kvs, now) = cfg.read_all(client, 0).await.map_err(|e| cfg.error("reading the snapshot", e))?;
        self.mirror = Resources::default();
        for kv in &kvs {
            self.mirror.put(&cfg.prefix, std::str::from_utf8(kv.key()).unwrap_or_default(), kv.value());
        }
        self.watch_from = Some(now + 1);
        tracing::debug!(keys = kvs.len(), revision = now, ms = started.elapsed().as_secs_f64() * 1e3, "prefix read");
        let version = cfg.key(VERSION);
        let Some(at) = kvs.iter().find(|kv| kv.key() == version.as_bytes()).map(|kv| kv.mod_revision()) else {
            tracing::info!("{}: no snapshot published yet ({version} absent); waiting for one", cfg.describe());
            return Ok(());
        };
        if at <= self.delivered {
            return Ok(());
        }
        // Resources written after the version: a publication is under way (its version will
        // come); the version itself is read as it stood at its revision.
        let resource = |kv: &&etcd_client::KeyValue| {
            matches!(kind(&cfg.prefix, std::str::from_utf8(kv.key()).unwrap_or_default()), Kind::Resource(..) | Kind::Stray)
        };
        if kvs.iter().filter(resource).all(|kv| kv.mod_revision() <= at) {
            let document = self.mirror.document();
            self.hand_over(at, document);
        } else if let Some((kvs, at)) = cfg.read_published(client, at).await? {
            let mut then = Resources::default();
            for kv in &kvs {
                then.put(&cfg.prefix, std::str::from_utf8(kv.key()).unwrap_or_default(), kv.value());
            }
            self.hand_over(at, then.document());
        }
        Ok(())
    }

    /// Changes from the watch, in revision order, into the mirror; at each revision that wrote
    /// `P/version`, once every change of that revision is in, the version handed over.
    fn apply(&mut self, events: &[Event]) {
        let cfg = self.cfg.clone();
        let mut version_at = None;
        for ev in events {
            let Some(kv) = ev.kv() else { continue };
            let rev = kv.mod_revision();
            if let Some(at) = version_at.filter(|&at| at != rev) {
                let document = self.mirror.document();
                self.hand_over(at, document);
                version_at = None;
            }
            let key = std::str::from_utf8(kv.key()).unwrap_or_default();
            match ev.event_type() {
                EventType::Put => {
                    self.mirror.put(&cfg.prefix, key, kv.value());
                    if matches!(kind(&cfg.prefix, key), Kind::Version) {
                        version_at = Some(rev);
                    }
                }
                EventType::Delete => {
                    self.mirror.delete(&cfg.prefix, key);
                    if matches!(kind(&cfg.prefix, key), Kind::Version) {
                        tracing::warn!("{}: {key} deleted; the running snapshot stays", cfg.describe());
                    }
                }
            }
            self.watch_from = Some(rev + 1);
        }
        if let Some(at) = version_at {
            let document = self.mirror.document();
            self.hand_over(at, document);
        }
    }

    /// Hand over the version written at `revision`, unless one as new was.
    fn hand_over(&mut self, revision: i64, document: Result<Option<(u64, Value)>, Error>) {
        if revision <= self.delivered {
            return;
        }
        let document = match document {
            Ok(Some((_, doc))) => Ok(doc),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        self.delivered = revision;
        let origin = format!("{} at revision {revision}", self.cfg.describe());
        // The datapath gone: nothing to hand over to; the thread stops with the follower.
        let _ = self.tx.send(Published { revision, document, origin });
        if !self.woken.1.swap(true, Ordering::AcqRel) {
            let _ = (&self.woken.0).write(&[1]);
        }
    }
}
