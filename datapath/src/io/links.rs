//! The machine's links, followed through rtnetlink (SPEC §2): interfaces appear, go down, come
//! up, are deleted and re-created while the datapath runs, as Nova plugs and unplugs VMs.
//!
//! [`LinkMonitor`] holds two `NETLINK_ROUTE` sockets: one subscribed to the link group
//! (`RTMGRP_LINK`), which the kernel writes an `RTM_NEWLINK` or `RTM_DELLINK` to for every change,
//! and one to ask for the whole list (`RTM_GETLINK` dump). Notifications are read without
//! blocking by the thread that supervises the workers; when the kernel had to drop some
//! (`ENOBUFS`: the socket's buffer was full), the list is dumped again, so the datapath's view
//! never drifts from the kernel's — as Open vSwitch's `if-notifier` and the MidoNet agent's
//! interface scanner do. Messages are built and parsed by netlink-packet-route.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use rules::model::Mac;

/// The rtnetlink multicast group of link changes (`RTMGRP_LINK`).
const RTMGRP_LINK: u32 = 1;

/// One link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    /// Administratively up with its carrier (`IFF_UP` and `IFF_LOWER_UP`).
    pub up: bool,
    pub mac: Option<Mac>,
    pub mtu: Option<u32>,
}

/// What changed, as the kernel said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A link appeared or changed (`RTM_NEWLINK`).
    New(String, Link),
    /// A link was deleted (`RTM_DELLINK`).
    Del(String, u32),
    /// Notifications were lost: what is known must be compared with a new dump.
    Lost,
}

/// The machine's links: a subscription to their changes, and a way to list them.
pub struct LinkMonitor {
    events: Socket,
    dump: Socket,
    buf: Vec<u8>,
    seq: u32,
}

fn link_of(m: &LinkMessage) -> Option<(String, Link)> {
    let mut name = None;
    let mut mac = None;
    let mut mtu = None;
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(b) => mac = <[u8; 6]>::try_from(b.as_slice()).ok().map(Mac),
            LinkAttribute::Mtu(v) => mtu = Some(*v),
            _ => {}
        }
    }
    let f = m.header.flags;
    let up = f.contains(LinkFlags::Up) && f.contains(LinkFlags::LowerUp);
    Some((name?, Link { index: m.header.index, up, mac, mtu }))
}

impl LinkMonitor {
    /// Subscribe to link changes; no privilege is needed.
    pub fn open() -> io::Result<LinkMonitor> {
        let mut events = Socket::new(NETLINK_ROUTE)?;
        events.bind(&SocketAddr::new(0, RTMGRP_LINK))?;
        events.set_non_blocking(true)?;
        let mut dump = Socket::new(NETLINK_ROUTE)?;
        dump.bind_auto()?;
        dump.connect(&SocketAddr::new(0, 0))?;
        Ok(LinkMonitor { events, dump, buf: vec![0; 1 << 16], seq: 0 })
    }

    /// Make the notification socket's receive buffer `bytes` (tests make it small to lose
    /// notifications on purpose).
    pub fn set_receive_buffer(&self, bytes: usize) -> io::Result<()> {
        self.events.set_rx_buf_sz(bytes)
    }

    /// Every link of the machine now, by name.
    pub fn list(&mut self) -> io::Result<HashMap<String, Link>> {
        self.seq = self.seq.wrapping_add(1);
        let mut req =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(RouteNetlinkMessage::GetLink(LinkMessage::default())));
        req.header.flags = NLM_F_DUMP | NLM_F_REQUEST;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        self.dump.send(&out, 0)?;
        let mut links = HashMap::new();
        loop {
            let n = self.dump.recv(&mut &mut self.buf[..], 0)?;
            let mut done = false;
            for_each_message(&self.buf[..n], |m| match m.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) if m.header.sequence_number == self.seq => {
                    if let Some((name, link)) = link_of(&l) {
                        links.insert(name, link);
                    }
                }
                NetlinkPayload::Done(_) => done = true,
                NetlinkPayload::Error(e) => {
                    tracing::warn!(error = ?e, "listing links failed");
                    done = true;
                }
                _ => {}
            });
            if done {
                return Ok(links);
            }
        }
    }

    /// Wait up to `timeout` for the notification socket (or `also`, when it becomes readable),
    /// then read what the socket holds.
    pub fn wait(&mut self, timeout: Duration, also: Option<std::os::fd::RawFd>) -> io::Result<Vec<Change>> {
        let mut pfd = [
            libc::pollfd { fd: self.events.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: also.unwrap_or(-1), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: two pollfds that live across the call (a negative fd is ignored); poll writes
        // only their revents.
        let n = unsafe { libc::poll(pfd.as_mut_ptr(), 2, timeout.as_millis() as libc::c_int) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(Vec::new()) } else { Err(e) };
        }
        self.changes()
    }

    /// The notifications waiting now, in order.
    pub fn changes(&mut self) -> io::Result<Vec<Change>> {
        let mut out = Vec::new();
        loop {
            match self.events.recv(&mut &mut self.buf[..], 0) {
                Ok(0) => return Ok(out),
                Ok(n) => for_each_message(&self.buf[..n], |m| match m.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                        if let Some((name, link)) = link_of(&l) {
                            out.push(Change::New(name, link));
                        }
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                        if let Some((name, link)) = link_of(&l) {
                            out.push(Change::Del(name, link.index));
                        }
                    }
                    _ => {}
                }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The kernel dropped notifications; what was read before still happened.
                    out.push(Change::Lost);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Each rtnetlink message in one datagram; a part that does not parse ends it.
fn for_each_message(mut bytes: &[u8], mut f: impl FnMut(NetlinkMessage<RouteNetlinkMessage>)) {
    while !bytes.is_empty() {
        let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) else { return };
        let len = (m.header.length as usize).next_multiple_of(4);
        f(m);
        if len == 0 || len > bytes.len() {
            return;
        }
        bytes = &bytes[len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loopback link is always there, up, with index 1.
    #[test]
    fn lists_the_loopback_link() {
        let mut m = LinkMonitor::open().expect("netlink");
        let links = m.list().expect("dump");
        let lo = links.get("lo").expect("lo");
        assert_eq!(lo.index, 1);
        assert!(m.changes().expect("read").iter().all(|c| !matches!(c, Change::Del(n, _) if n == "lo")));
    }

    /// More changes than a small socket buffer holds: the kernel drops notifications and says so
    /// (ENOBUFS), which is reported as [`Change::Lost`]; the list read then has every link. Needs
    /// root (CI runs as root).
    #[test]
    fn lost_notifications_are_reported_and_the_list_has_everything() {
        let root = std::fs::read_to_string("/proc/self/status")
            .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")));
        if !root {
            eprintln!("skipped: creating links needs root (CI runs as root)");
            return;
        }
        let mut m = LinkMonitor::open().expect("netlink");
        m.set_receive_buffer(1024).expect("small buffer");
        let tag = format!("nb{}", std::process::id() % 100000);
        let names: Vec<String> = (0..40).map(|k| format!("{tag}x{k}")).collect();
        let batch: String = names.iter().map(|n| format!("link add {n} type veth peer name {n}p\n")).collect();
        let add = std::process::Command::new("ip").args(["-batch", "-"]).stdin(std::process::Stdio::piped()).spawn();
        let mut add = add.expect("ip");
        std::io::Write::write_all(add.stdin.as_mut().expect("stdin"), batch.as_bytes()).expect("batch");
        drop(add.stdin.take());
        add.wait().expect("ip -batch");
        let changes = m.changes().expect("read");
        let listed = m.list().expect("dump");
        for n in &names {
            let _ = std::process::Command::new("ip").args(["link", "del", n]).status();
        }
        assert!(changes.contains(&Change::Lost), "the kernel dropped notifications: {} read", changes.len());
        assert!(names.iter().all(|n| listed.contains_key(n)), "the list has every link");
    }
}
