//! A network (SPEC §5): a frame from a VM port passes admin state and port security, its source
//! MAC is learned, ARP for known addresses is answered, and it is forwarded by destination MAC or
//! flooded — to local ports, to other hosts' ports through their tunnels, and to gateway devices.

use super::*;

impl Sim<'_> {
    /// A frame from a bound port enters its network (§5.2): admin state, port security, learning,
    /// the port's egress QoS.
    pub(super) fn port_in(&mut self, p: PortRef, f: Frame) {
        let port = self.topo.port(p);
        let net = port.network;
        note!(self, "port {} (network {})", port.id, self.topo.network(net).id);
        if !port.admin_up {
            return self.drop(DropReason::PortDown);
        }
        if port.port_security {
            if let Err(r) = port_security(port, &f) {
                return self.drop(r);
            }
        }
        let src = Mac(f.h.eth_src);
        if !self.topo.network(net).mac_to_port.contains_key(&src) && !src.is_multicast() {
            self.learn_mac(net, src, Location::Port(p));
        }
        // SPEC §8 QoS of traffic leaving the VM: its bucket, and DSCP marking of IPv4 (IPv6: §10.2).
        if self.generating == 0 {
            self.res.police_in = self.qos.bucket(p, crate::qos::Direction::Egress);
        }
        let mut f = f;
        if let (Some(dscp), L3::Ipv4(_) | L3::Ipv6(_)) = (self.topo.qos[p.idx()].dscp, f.h.l3) {
            note!(self, "QoS: DSCP {dscp}");
            f.set_dscp(dscp);
        }
        self.bridge(net, Attach::Port(p), f);
    }

    /// The target of a multicast Neighbor Solicitation and the MAC the network knows for it.
    fn nd_known(&self, net: NetRef, f: &Frame) -> Option<(std::net::Ipv6Addr, Mac)> {
        let L3::Ipv6(ip) = &f.h.l3 else { return None };
        let is_ns = matches!(ip.l4, L4::Icmp { typ: icmpv6::NEIGHBOR_SOLICIT, .. }) && ip.proto == wire::ipv6::IPPROTO_ICMPV6;
        if !is_ns || !ip.dst.is_multicast() {
            return None;
        }
        let target = icmpv6::nd_target(&f.buf, ip)?;
        Some((target, *self.topo.network(net).nd_answers.get(&target)?))
    }

    pub(super) fn learn_mac(&mut self, net: NetRef, mac: Mac, loc: Location) {
        // Known there already (the worker's copy says so while it holds): only its stamp moves.
        let tables = self.tables;
        let (d, found) = self.cache.mac(tables.gens(), || tables.learned(), net, mac);
        if let Some(seen) = found.filter(|(l, _)| *l == loc).map(|(_, seen)| seen.clone()) {
            self.depend(d);
            seen.stamp(self.now);
            if self.generating == 0 && self.res.mac_seen.is_none() {
                self.res.mac_seen = Some(seen);
            }
            return;
        }
        // Learned, and the generation its flow keeps read, under one lock.
        let (learn, dep) = {
            let mut l = self.tables.learned();
            let learn = l.learn_mac(net, mac, loc, self.now, &self.limits);
            let e = if learn == MacLearn::Refused { Entry::Room(net) } else { Entry::Mac(net, mac) };
            (learn, l.gens.read(e))
        };
        // Its flow keeps the source where it was learned: the entry moving elsewhere (and
        // back by this flow's next packet) takes a simulation. A refused one is learned once the
        // table has room: the flow lasts until an entry goes.
        self.depend(dep);
        let seen = match learn {
            MacLearn::News(seen) => {
                self.res.new_timer = true;
                note!(self, "learn MAC {mac} behind {loc}");
                seen
            }
            MacLearn::Known(seen) => seen,
            MacLearn::Refused => {
                note!(self, "MAC table of network {} full: {mac} not learned", self.topo.network(net).id);
                return;
            }
        };
        if self.generating == 0 && self.res.mac_seen.is_none() {
            self.res.mac_seen = Some(seen);
        }
    }

    // ---- networks --------------------------------------------------------------------------

    /// Forward a frame within network `net`, arriving from `from` (§5.3, §5.4).
    pub(super) fn bridge(&mut self, net: NetRef, from: Attach, f: Frame) {
        if !self.enter_device() {
            return;
        }
        let network = self.topo.network(net);
        note!(self, "network {}", network.id);
        if !network.admin_up {
            return self.drop(DropReason::NetworkDown);
        }
        // §10.1: bridges never forward to the 802.1D reserved group addresses (STP, LACP, LLDP…).
        if is_reserved_group(f.h.eth_dst) {
            return self.drop(DropReason::ReservedGroup);
        }
        // §5.4 ARP suppression: answer for addresses the network knows, on the ingress port.
        if let L3::Arp(a) = f.h.l3 {
            if a.op == wire::ARP_REQUEST && a.spa != a.tpa {
                if let Some(&mac) = network.arp_answers.get(&a.tpa) {
                    // A router port's own address is answered by the port itself, which learns
                    // the asker on the way (RFC 826): an upstream that asks for gw-ip is a
                    // neighbour the router sends to.
                    if let Some(&rp) = network.mac_to_port.get(&mac) {
                        if self.topo.port(rp).router.is_some() && Attach::Port(rp) != from {
                            return self.router_in(rp, f);
                        }
                    }
                    if mac != Mac(a.sha) {
                        note!(self, "ARP suppression: {} is at {mac}", a.tpa);
                        self.uncacheable();
                        self.res.handled = true;
                        if let Ok(reply) = Frame::parse(arp::reply(&a, mac.0, a.tpa)) {
                            self.generated(|s| s.deliver(net, from, reply));
                        }
                        return;
                    }
                }
            }
        }
        // §10.1 ND suppression: a multicast NS for an address the network knows is answered.
        if let Some((target, mac)) = self.nd_known(net, &f) {
            // A router port's own address is answered by the router, as for ARP.
            if let Some(&rp) = network.mac_to_port.get(&mac) {
                if self.topo.port(rp).router.is_some() && Attach::Port(rp) != from {
                    return self.router_in(rp, f);
                }
            }
            // Never for the sender's own address: a DAD probe for it must find no one.
            if mac.0 != f.h.eth_src {
                note!(self, "ND suppression: {target} is at {mac}");
                self.uncacheable();
                self.res.handled = true;
                if let L3::Ipv6(ip) = &f.h.l3 {
                    if let Some(Ok(answer)) = icmpv6::na_for(&f.buf, ip, target, mac.0, false).map(Frame::parse) {
                        self.generated(|s| s.deliver(net, from, answer));
                    }
                }
                return;
            }
        }
        let dst = Mac(f.h.eth_dst);
        if dst.is_multicast() {
            return self.flood(net, from, f);
        }
        // Ports of the snapshot, then remote MACs (§7.2, §7.4), then what was learned.
        let to = match network.mac_to_port.get(&dst) {
            Some(&p) => Some(Attach::Port(p)),
            None => match self.topo.vxlan.nets[net.idx()].remote_macs.get(&dst) {
                Some(group) => Some(Attach::Tunnel(group.pick(flow_hash(&f)))),
                None => match self.learned_mac(net, dst) {
                    Some(Location::Port(p)) => Some(Attach::Port(p)),
                    Some(Location::Tunnel(t)) => Some(Attach::Tunnel(t)),
                    None => None,
                },
            },
        };
        match to {
            Some(to) if to == from => self.drop(DropReason::NoDestination),
            Some(to) => self.deliver(net, to, f),
            None => {
                note!(self, "unknown unicast {dst}: flood");
                self.flood(net, from, f)
            }
        }
    }

    /// Broadcast, multicast and unknown unicast go to every other port of the network and to
    /// every other host with a port on it, never back where they came from (§5.3). Frames from
    /// a tunnel are not sent to tunnels again (split horizon).
    pub(super) fn flood(&mut self, net: NetRef, from: Attach, f: Frame) {
        let network = self.topo.network(net);
        let me = self.ifs.host;
        let mut sent = false;
        let from_tunnel = matches!(from, Attach::Tunnel(_));
        for &p in &network.ports {
            if Attach::Port(p) == from {
                continue;
            }
            let port = self.topo.port(p);
            if port.router.is_some() {
                // Routers take broadcast ARP only, and the Router Solicitations of local VMs
                // when they advertise (§10.3); they do not route broadcast or multicast IP.
                let rs = port.advert.is_some() && !from_tunnel && is_router_solicit(&f);
                if matches!(f.h.l3, L3::Arp(_)) || rs {
                    self.router_in(p, f.clone());
                    sent = true;
                }
                continue;
            }
            if port.host == Some(me) && self.ifs.of_port(p).is_some() {
                self.deliver(net, Attach::Port(p), f.clone());
                sent = true;
            }
        }
        if !from_tunnel {
            for &h in &network.hosts {
                if h == me {
                    continue;
                }
                self.tunnel_to_host(net, h, f.clone());
                sent = true;
            }
            // VTEPs that flood: hardware VTEPs, remote gateways with `flood` (§7); one member of
            // a peered pair, by flow hash.
            for group in &self.topo.vxlan.nets[net.idx()].flood {
                self.tunnel_out(group.pick(flow_hash(&f)), f.clone());
                sent = true;
            }
        }
        if !sent {
            self.drop(DropReason::NoDestination);
        }
    }

    /// Hand a frame to one attachment of network `net`.
    pub(super) fn deliver(&mut self, net: NetRef, to: Attach, f: Frame) {
        let p = match to {
            Attach::Tunnel(t) => return self.tunnel_out(t, f),
            Attach::Port(p) => p,
        };
        let port = self.topo.port(p);
        if port.router.is_some() {
            return self.router_in(p, f);
        }
        if !port.admin_up {
            return self.drop(DropReason::PortDown);
        }
        match port.host {
            Some(h) if h == self.ifs.host => match self.ifs.of_port(p) {
                Some(i) => {
                    let police = self.qos.bucket(p, crate::qos::Direction::Ingress);
                    self.output_policed(i, f, None, police)
                }
                None => self.drop(DropReason::PortUnbound),
            },
            Some(h) => {
                note!(self, "port {} is on host {}", port.id, self.topo.host(h).id);
                self.tunnel_to_host(net, h, f)
            }
            None => self.drop(DropReason::PortUnbound),
        }
    }

    // ---- VXLAN -----------------------------------------------------------------------------
}

fn is_router_solicit(f: &Frame) -> bool {
    matches!(f.h.l3, L3::Ipv6(ip) if ip.proto == wire::ipv6::IPPROTO_ICMPV6 && matches!(ip.l4, L4::Icmp { typ: icmpv6::ROUTER_SOLICIT, .. }))
}

/// Whether a MAC is one of the IEEE 802.1D reserved group addresses 01:80:c2:00:00:00–0f.
fn is_reserved_group(mac: [u8; 6]) -> bool {
    mac[..5] == [0x01, 0x80, 0xc2, 0, 0] && mac[5] <= 0x0f
}

/// Port security (SPEC §5.2, §10.1): the source MAC is the port's or an allowed pair's; an IPv4
/// source or ARP sender is one of the port's addresses or an allowed pair's; IPv6 has its own
/// rules; nothing else is admitted.
fn port_security(port: &rules::compile::Port, f: &Frame) -> Result<(), DropReason> {
    let src_mac = Mac(f.h.eth_src);
    let pair_mac = port.allowed_pairs.iter().map(|(_, m)| m).chain(port.allowed_pairs6.iter().map(|(_, m)| m)).any(|m| *m == Some(src_mac));
    if src_mac != port.mac && !pair_mac {
        return Err(DropReason::SpoofedMac);
    }
    let src_ip = match &f.h.l3 {
        L3::Ipv4(ip) => ip.src,
        L3::Arp(a) => a.spa,
        L3::Ipv6(ip) => return ipv6_security(port, src_mac, f, ip),
        L3::Other(_) => return Err(DropReason::EthertypeNotAllowed),
    };
    let own = (src_mac == port.mac && port.has_ip(src_ip))
        || port.allowed_pairs.iter().any(|(net, m)| net.contains(&src_ip) && m.unwrap_or(port.mac) == src_mac);
    if own {
        Ok(())
    } else {
        Err(DropReason::SpoofedIp)
    }
}

/// IPv6 port security (SPEC §10.1), for a frame whose source MAC already passed: the source is
/// one of the port's addresses (its link-local among them) or an allowed pair's, or `::` for
/// duplicate address detection (NS) and MLD reports; an NA advertises one of the port's own
/// addresses; a VM sends no router advertisement and no DHCPv6 server message.
fn ipv6_security(port: &rules::compile::Port, src_mac: Mac, f: &Frame, ip: &wire::Ipv6) -> Result<(), DropReason> {
    let icmp_type = match ip.l4 {
        L4::Icmp { typ, .. } if ip.proto == wire::ipv6::IPPROTO_ICMPV6 => Some(typ),
        _ => None,
    };
    let own = |a: &std::net::Ipv6Addr| {
        (src_mac == port.mac && port.has_ip6(*a))
            || port.allowed_pairs6.iter().any(|(net, m)| net.contains(a) && m.unwrap_or(port.mac) == src_mac)
    };
    let dad = ip.src.is_unspecified() && matches!(icmp_type, Some(icmpv6::NEIGHBOR_SOLICIT | icmpv6::MLD_REPORT | icmpv6::MLD2_REPORT));
    if !dad && !own(&ip.src) {
        return Err(DropReason::SpoofedIp);
    }
    match (icmp_type, ip.l4) {
        (Some(icmpv6::ROUTER_ADVERT), _) => Err(DropReason::RouterAdvertFromVm),
        (Some(icmpv6::NEIGHBOR_ADVERT), _) => match icmpv6::nd_target(&f.buf, ip) {
            Some(t) if own(&t) => Ok(()),
            _ => Err(DropReason::SpoofedNaTarget),
        },
        (None, L4::Udp { sport: icmpv6::DHCPV6_SERVER_PORT, dport: icmpv6::DHCPV6_CLIENT_PORT }) => Err(DropReason::Dhcpv6ServerFromVm),
        _ => Ok(()),
    }
}
