//! ARP at router ports and the underlay (SPEC §6.4): answer for the port's addresses, learn
//! senders (RFC 826's merge rule), park frames for a next hop that has not answered yet, and the
//! timers that ask again and give up.

use super::*;
use crate::learn::ARP_TRIES;

impl Sim<'_> {
    /// ARP at a router port (§6.1): answer for its IPs and the floating IPs it owns; learn
    /// senders on its subnets, which releases packets waiting for them.
    pub(super) fn router_arp(&mut self, p: PortRef, a: Arp) {
        self.uncacheable();
        let port = self.topo.port(p);
        let on_link = port.ips.iter().any(|ip| ip.subnet.contains(&a.spa));
        // Its own IPs, the floating IPs it owns, and the router's VTEP addresses on its subnets.
        let vtep =
            port.router.is_some_and(|r| self.topo.vxlan.is_router_vtep(r, a.tpa)) && port.ips.iter().any(|i| i.subnet.contains(&a.tpa));
        let for_me = port.has_ip(a.tpa) || port.owned_fips.iter().any(|&fi| self.topo.fip(fi).addr == a.tpa) || vtep;
        // RFC 826's merge rule: a sender already in the table is updated by whatever it sends —
        // a gratuitous request or reply (sender IP = target IP) announcing a new MAC after a
        // failover included; a request for this port's addresses and a reply create the entry.
        let known = self.tables.learned().arp(ArpScope::RouterPort(p), a.spa.into()).is_some();
        let learns = on_link && (for_me || a.op == wire::ARP_REPLY || known);
        if learns {
            self.learn_arp(ArpScope::RouterPort(p), a.spa, Mac(a.sha));
        }
        if a.op == wire::ARP_REQUEST && for_me {
            note!(self, "ARP reply: {} is at {}", a.tpa, port.mac);
            self.res.handled = true;
            if let Ok(reply) = Frame::parse(arp::reply(&a, port.mac.0, a.tpa)) {
                self.generated(|s| s.router_send(p, reply));
            }
        } else if learns {
            self.res.handled = true;
        } else {
            self.drop(DropReason::ArpNotHandled);
        }
    }

    /// Learn an ARP entry and send whatever waited for it.
    pub(super) fn learn_arp(&mut self, scope: ArpScope, ip: impl Into<std::net::IpAddr>, mac: Mac) {
        let ip = ip.into();
        let owner = match scope {
            ArpScope::RouterPort(p) => self.topo.port(p).router.map_or(ArpOwner::Underlay, ArpOwner::Router),
            ArpScope::Underlay => ArpOwner::Underlay,
        };
        let tables = self.tables;
        let (news, pending) = {
            let mut l = tables.learned();
            (l.learn_arp(scope, owner, ip, mac, &self.limits), l.pending.remove(&(scope, ip)))
        };
        if news {
            note!(self, "learn {} {ip} is at {mac}", if ip.is_ipv6() { "ND" } else { "ARP" });
        }
        if let Some(pending) = pending {
            note!(self, "release {} packets waiting for {ip}", pending.frames.len());
            for w in pending.frames {
                if tables.learned().leaves(&w) {
                    self.res.released += 1;
                }
                self.generated(|s| s.send_resolved(pending.egress, w.frame, mac));
            }
        }
    }

    /// Send a frame that waited for (or would have waited for) `mac`, its next hop's.
    fn send_resolved(&mut self, egress: Egress, mut frame: Vec<u8>, mac: Mac) {
        // A parked frame is a whole Ethernet frame: its destination MAC is there.
        let _ = wire::ipv4::put(&mut frame, wire::ETH_DST, &mac.0);
        let Ok(f) = Frame::parse(frame) else { return };
        match egress {
            Egress::Iface(i) => self.output(i, f, None),
            Egress::RouterPort(rp) => self.bridge(self.topo.port(rp).network, Attach::Port(rp), f),
        }
    }

    /// Park a frame until `ip` answers ARP in `scope`; the first packet sends the request.
    pub(super) fn queue(&mut self, scope: ArpScope, ip: impl Into<std::net::IpAddr>, frame: Vec<u8>, egress: Egress, request: Vec<u8>) {
        let ip = ip.into();
        self.uncacheable();
        let now = self.now;
        let tables = self.tables;
        let mut l = tables.learned();
        if let Some(mac) = l.arp(scope, ip) {
            // Another worker learned it since this simulation looked.
            drop(l);
            return self.send_resolved(egress, frame, mac);
        }
        let first = !l.pending.contains_key(&(scope, ip));
        self.res.new_timer |= first;
        if first && l.pending.len() >= self.limits.arp_waiting {
            let waiting = l.pending.len();
            drop(l);
            note!(self, "{waiting} next hops wait for ARP already");
            return self.drop(DropReason::ArpWaitingFull);
        }
        let pending = l.pending.entry((scope, ip)).or_insert_with(|| Pending {
            frames: Vec::new(),
            egress,
            request: request.clone(),
            tries: 1,
            next_try: now.saturating_add(ARP_RETRY),
        });
        if pending.frames.len() >= PENDING_MAX {
            drop(l);
            return self.drop(DropReason::ArpQueueFull);
        }
        let waiting = pending.frames.len() + 1;
        // A frame the packet caused (an ICMP error, a reply) is not the packet: the packet's
        // own fate counts it, and the waiting frame counts nothing.
        let input = match (self.generating, self.res.input) {
            (0, Some(i)) => Some(i),
            (0, None) => Some(*self.res.input.insert(l.new_input())),
            _ => None,
        };
        l.park((scope, ip), frame, input);
        drop(l);
        note!(self, "wait for {} of {ip} ({waiting} waiting)", if ip.is_ipv6() { "ND" } else { "ARP" });
        self.res.queued |= input.is_some();
        if first {
            self.send_arp_request(egress, request);
        }
    }

    /// Send an ARP request the way a waiting frame will go.
    pub fn send_arp_request(&mut self, egress: Egress, request: Vec<u8>) {
        let Ok(f) = Frame::parse(request) else { return };
        self.generated(|s| match egress {
            Egress::Iface(i) => s.output(i, f, None),
            Egress::RouterPort(p) => s.bridge(s.topo.port(p).network, Attach::Port(p), f),
        });
    }

    /// Ask again for the next hops whose retry is due at [`Sim::now`], and give up on those asked
    /// [`ARP_TRIES`] times: their frames are let go. Returns how many inputs were given up
    /// (`arp_unresolved`).
    pub fn arp_timers(&mut self) -> u64 {
        let now = self.now;
        let tables = self.tables;
        let due: Vec<_> = tables.learned().pending.iter().filter(|(_, p)| p.next_try <= now).map(|(k, _)| *k).collect();
        let mut unresolved = 0;
        for k in due {
            let again = {
                let mut l = tables.learned();
                let Some(p) = l.pending.get_mut(&k) else {
                    continue;
                };
                if p.tries >= ARP_TRIES {
                    if let Some(p) = l.pending.remove(&k) {
                        unresolved += l.let_go(&p.frames);
                    }
                    continue;
                }
                p.tries += 1;
                p.next_try = p.next_try.saturating_add(ARP_RETRY);
                (p.egress, p.request.clone())
            };
            self.send_arp_request(again.0, again.1);
        }
        unresolved
    }
}
