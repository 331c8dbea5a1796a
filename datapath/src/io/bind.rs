//! Which interfaces are bound (SPEC §2): the supervisor follows the machine's links
//! ([`super::links`], netlink) and binds each interface of the snapshot when it appears — a
//! socket per worker in the interface's fanout group, with its receive ring, handed to each
//! worker between batches — and releases it when it is deleted, re-created under another index,
//! or no longer in the snapshot; an interface that does not exist leaves its port absent.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::afpacket::{LiveError, RxMode};
use super::control::PortStatus;
use super::live_worker::{ask_all, mtu, Ask, Asker, Port, TICK};
use super::rawsock::RawSocket;
use super::ring::RxRing;
use super::xsk::Xsk;
use crate::iface::IfIdx;
use crate::shared::Shared;

/// Bytes per ring block: any frame fits, a 64 KiB TCP super-frame included.
pub const RING_BLOCK: usize = 1 << 18;
/// Blocks per ring (4 MiB per socket).
pub const RING_BLOCKS: usize = 16;
/// How long a block the kernel has started filling waits for more frames before it is handed over
/// (the ring's added latency at low rates).
const RING_RETIRE: Duration = Duration::from_millis(1);

/// A bound interface's state, as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkState {
    /// Sockets on it, in `slot`, on the link with this index.
    Bound { slot: IfIdx, index: u32, up: bool },
    /// The snapshot binds it, the machine does not have it.
    Absent,
}

/// The supervisor's view of the interfaces the snapshot binds, and of the machine's links.
pub(super) struct Links {
    pub(super) monitor: super::links::LinkMonitor,
    /// The machine's links, by name, as netlink last said.
    pub(super) kernel: HashMap<String, super::links::Link>,
    /// Each interface of the snapshot (and each still bound), with since when it is in its state.
    pub(super) ours: HashMap<String, (LinkState, SystemTime)>,
    pub(super) rx: RxMode,
    /// AF_XDP sockets where the interface takes them.
    pub(super) xdp: bool,
    pub(super) workers: usize,
}

impl Links {
    pub(super) fn slot(&self, name: &str) -> Option<IfIdx> {
        match self.ours.get(name) {
            Some((LinkState::Bound { slot, .. }, _)) => Some(*slot),
            _ => None,
        }
    }

    /// Release `name`: its port becomes absent, every worker closes its socket.
    pub(super) fn release(&mut self, shared: &Shared, asks: &[Asker], name: &str, why: &str) {
        let Some(slot) = self.slot(name) else { return };
        shared.set_link(name, false, None);
        ask_all(asks, |tx| Ask::Unbind(slot, tx));
        self.ours.insert(name.to_string(), (LinkState::Absent, SystemTime::now()));
        tracing::info!(interface = %name, "{why}: released");
    }

    /// Bring `name` in line with the kernel and the running snapshot: bind it if it exists and is
    /// not bound, release it if it went, was re-created, or the snapshot no longer binds it, and
    /// follow it up and down.
    pub(super) fn reconcile(&mut self, shared: &Shared, asks: &[Asker], name: &str) -> Result<(), LiveError> {
        let snap = shared.snapshot();
        let wanted = snap.ifs.by_name(name);
        let link = self.kernel.get(name).cloned();
        let now = SystemTime::now();
        let state = self.ours.get(name).map(|(s, _)| *s);
        if let Some(LinkState::Bound { slot, index, up }) = state {
            let gone = match (&link, wanted) {
                (None, _) => Some("interface deleted"),
                (Some(l), _) if l.index != index => Some("interface re-created"),
                (_, None) => Some("no longer in the snapshot"),
                (_, Some(w)) if w != slot => Some("moved to another slot"),
                _ => None,
            };
            match (gone, &link) {
                (Some(why), _) => self.release(shared, asks, name, why),
                (None, Some(l)) => {
                    if l.up != up {
                        tracing::info!(interface = %name, up = l.up, "link {}", if l.up { "up" } else { "down" });
                        self.ours.insert(name.to_string(), (LinkState::Bound { slot, index, up: l.up }, now));
                    }
                    shared.set_link(name, true, l.mac);
                    return Ok(());
                }
                (None, None) => {}
            }
        }
        let Some(slot) = wanted else {
            self.ours.remove(name);
            return Ok(());
        };
        match link {
            None => {
                if state.is_none() {
                    tracing::info!(interface = %name, "interface absent: its port waits for it");
                    self.ours.insert(name.to_string(), (LinkState::Absent, now));
                }
                shared.set_link(name, false, None);
            }
            Some(l) => {
                let group = open_group(name, l.index, self.workers, self.rx, self.xdp)?;
                let mtu = l.mtu.map_or_else(|| mtu(name), |m| m as usize);
                let mut group = group.into_iter();
                // Every worker takes its socket before the port is marked present.
                let acks = ask_all(asks, |tx| {
                    let (sock, ring, xsk) = group.next().expect("one socket per worker");
                    Ask::Bind(slot, Box::new(Port { sock, ring, xsk, mtu }), tx)
                });
                if acks.len() != asks.len() {
                    tracing::warn!(interface = %name, "a worker did not take its socket");
                }
                shared.set_link(name, true, l.mac);
                self.ours.insert(name.to_string(), (LinkState::Bound { slot, index: l.index, up: l.up }, now));
                tracing::info!(interface = %name, ifindex = l.index, up = l.up, "interface bound");
            }
        }
        Ok(())
    }

    /// Reconcile every interface the snapshot binds or that is still bound: the ones to release
    /// first, so that a slot a new snapshot gave to another interface is free before it is bound.
    pub(super) fn reconcile_all(&mut self, shared: &Shared, asks: &[Asker]) -> Result<(), LiveError> {
        let snap = shared.snapshot();
        let mut names: Vec<String> = self.ours.keys().cloned().collect();
        names.extend(snap.ifs.bound().map(|(_, i)| i.name.clone()).filter(|n| !self.ours.contains_key(n)));
        names.sort();
        let (go, stay): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|n| self.slot(n).is_some_and(|s| snap.ifs.by_name(n) != Some(s) || !self.kernel.contains_key(n)));
        for n in go.iter().chain(&stay) {
            self.reconcile(shared, asks, n)?;
        }
        Ok(())
    }

    /// Read what netlink says and act on it; a lost notification reads the whole list again.
    /// Waits up to `wait` for news, or until `also` is readable.
    pub(super) fn follow(&mut self, shared: &Shared, asks: &[Asker], wait: Duration, also: Option<std::os::fd::RawFd>) {
        let changes = match self.monitor.wait(wait, also) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "reading link notifications");
                std::thread::sleep(wait);
                return;
            }
        };
        let mut touched = Vec::new();
        for c in changes {
            match c {
                super::links::Change::New(name, link) => {
                    self.kernel.insert(name.clone(), link);
                    touched.push(name);
                }
                super::links::Change::Del(name, index) => {
                    if self.kernel.get(&name).is_some_and(|l| l.index == index) {
                        self.kernel.remove(&name);
                    }
                    touched.push(name);
                }
                super::links::Change::Lost => {
                    tracing::warn!("link notifications were lost: listing the links again");
                    match self.monitor.list() {
                        Ok(all) => self.kernel = all,
                        Err(e) => tracing::error!(error = %e, "listing links"),
                    }
                    touched.extend(self.kernel.keys().cloned());
                    touched.extend(self.ours.keys().cloned());
                }
            }
        }
        touched.sort();
        touched.dedup();
        for name in touched {
            if self.ours.contains_key(&name) || shared.snapshot().ifs.by_name(&name).is_some() {
                if let Err(e) = self.reconcile(shared, asks, &name) {
                    tracing::error!("binding {name}: {e}");
                }
            }
        }
    }

    /// `status`: every interface of the snapshot, by port, in slot order.
    pub(super) fn ports(&self, shared: &Shared) -> Vec<PortStatus> {
        let snap = shared.snapshot();
        snap.ifs
            .bound()
            .map(|(_, i)| {
                let port = match i.binding {
                    crate::iface::Binding::Port(p) | crate::iface::Binding::RouterPort(p) => snap.topo.port(p).id.clone(),
                    _ => "underlay".to_string(),
                };
                let (state, since) = self.ours.get(&i.name).copied().unwrap_or((LinkState::Absent, SystemTime::now()));
                let (ifindex, state) = match state {
                    LinkState::Bound { index, up, .. } => (Some(index), if up { "up" } else { "down" }),
                    LinkState::Absent => (None, "absent"),
                };
                PortStatus { port, interface: i.name.clone(), ifindex, state, since }
            })
            .collect()
    }
}

fn open(name: &str, ifindex: u32) -> Result<RawSocket, LiveError> {
    match RawSocket::open_index(ifindex, TICK) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(LiveError::Permission(name.to_string())),
        Err(e) => Err(LiveError::Io(name.to_string(), e.to_string())),
    }
}

/// A worker's sockets on one interface: AF_PACKET (with its ring), and AF_XDP on its queue.
type Group = Vec<(RawSocket, Option<RxRing>, Option<Xsk>)>;

/// One socket per worker on interface `name` (with its receive ring, in ring mode), all in one
/// fanout group when there are several; with `xdp`, an AF_XDP socket too for each worker the
/// interface has a queue for (worker k on queue k).
pub(super) fn open_group(name: &str, ifindex: u32, workers: usize, mode: RxMode, xdp: bool) -> Result<Group, LiveError> {
    let socks = (0..workers).map(|_| open(name, ifindex)).collect::<Result<Vec<_>, _>>()?;
    let mut rings: Vec<Option<RxRing>> = socks
        .iter()
        .map(|s| match mode {
            RxMode::Mmsg => None,
            RxMode::Ring => RxRing::new(s, RING_BLOCK, RING_BLOCKS, RING_RETIRE)
                .map_err(|e| tracing::warn!(interface = %name, error = %e, "no TPACKET_V3 ring; receiving with recvmmsg"))
                .ok(),
        })
        .collect();
    if workers > 1 {
        // A group id is per network namespace: start from one derived from the process and the
        // interface, and move on if another process holds it for another device.
        let base = (std::process::id() as u16) ^ name.bytes().fold(0u16, |h, b| h.rotate_left(5) ^ b as u16);
        let mut joined = Err(std::io::Error::from(std::io::ErrorKind::AddrInUse));
        for k in 0..64u16 {
            joined = socks[0].join_fanout(base.wrapping_add(k)).map(|()| base.wrapping_add(k));
            if joined.is_ok() {
                break;
            }
        }
        let group = joined.map_err(|e| LiveError::Io(name.to_string(), format!("PACKET_FANOUT: {e}")))?;
        for s in &socks[1..] {
            s.join_fanout(group).map_err(|e| LiveError::Io(name.to_string(), format!("PACKET_FANOUT: {e}")))?;
        }
        // What a socket received before it joined, every other one received too: let it go.
        for (s, ring) in socks.iter().zip(rings.iter_mut()) {
            s.drain();
            if let Some(r) = ring {
                r.read(RING_BLOCKS, crate::time::Instant(0), |_| {});
            }
        }
    }
    let xsks = match xdp {
        true => open_xsks(name, ifindex, workers),
        false => Vec::new(),
    };
    let mut xsks = xsks.into_iter();
    Ok(socks.into_iter().zip(rings).map(|(s, r)| (s, r, xsks.next().flatten())).collect())
}

/// AF_XDP sockets on the first `workers` queues of `name` (as many as it has), with one log
/// line: which queues, copy or zero-copy — or why not, receiving by AF_PACKET instead.
fn open_xsks(name: &str, ifindex: u32, workers: usize) -> Vec<Option<Xsk>> {
    // This process holds no socket on it yet: a program there was left by one that died.
    if Xsk::clear_stale(ifindex) {
        tracing::info!(interface = %name, "took off an AF_XDP redirect program a stopped run left");
    }
    let queues = std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count())
        .unwrap_or(1)
        .max(1);
    let mut out = Vec::with_capacity(workers);
    for q in 0..workers.min(queues) {
        match Xsk::open(name, q as u32) {
            Ok(x) => out.push(Some(x)),
            Err(e) => {
                tracing::warn!(interface = %name, queue = q, error = %e, "AF_XDP unavailable; receiving with AF_PACKET");
                return Vec::new();
            }
        }
    }
    let zero_copy = out.iter().flatten().all(Xsk::zero_copy);
    tracing::info!(interface = %name, queues = out.len(), workers, mode = if zero_copy { "zero-copy" } else { "copy" }, "AF_XDP");
    out
}
