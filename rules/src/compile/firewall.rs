//! Firewalls (SPEC §6.2, FWaaS v1) compiled into a classifier, and their logs (§8).
//!
//! A policy's rules are evaluated in order, disabled rules skipped, first match wins. Rather than
//! scanning the list, each firewall is compiled into a bit-vector classifier (Lakshman and
//! Stiliadis, SIGCOMM 1998): for each field — protocol, source address, destination address,
//! source port, destination port — the field's range is cut into elementary intervals at every
//! rule boundary, and each interval holds the bitset of rules that cover it. A lookup is one
//! binary search per field, an AND of five bitsets, and the lowest set bit: the first rule that
//! matches every field. Cost grows with log(rules) and rules/64 words, not with rules.
//!
//! Ports: a rule with ports matches TCP and UDP only (the spec's rules name ports for those); a
//! packet without ports (ICMP, later fragments) carries the port value [`NO_PORT`], which only
//! rules without a port constraint cover.
//!
//! IPv6 rules (`ip_version` 6, SPEC §10.2) keep their place in the policy's order: the IPv4
//! classifier holds them under a protocol class no IPv4 packet has, so they never match there,
//! and IPv6 packets are matched by a first-match scan of the IPv6 rules alone. IPv6 is routed
//! untranslated and its firewall decides on a connection's first packet only (the slow path),
//! so the scan's cost is paid once per connection; `icmp` means ICMPv6 (protocol 58).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

use super::{RouterRef, Topology};
use crate::model::{FirewallAction, FirewallProtocol, FwEvent, Snapshot};

/// The port value of a packet that has none.
pub const NO_PORT: u32 = 65536;

/// One field's elementary intervals and the rules covering each.
#[derive(Debug, Clone, Default)]
struct Field {
    /// Interval `i` is `[starts[i], starts[i + 1])`; the first starts at 0.
    starts: Vec<u32>,
    /// `words` u64s per interval.
    sets: Vec<u64>,
}

impl Field {
    /// Build from each rule's inclusive range `[lo, hi]` over the domain `0..=max`.
    fn build(ranges: &[(u32, u32)], max: u32, words: usize) -> Field {
        let mut starts: Vec<u32> = vec![0];
        for &(lo, hi) in ranges {
            starts.push(lo);
            if hi < max {
                starts.push(hi + 1);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let mut sets = vec![0u64; starts.len() * words];
        for (r, &(lo, hi)) in ranges.iter().enumerate() {
            let first = starts.partition_point(|&s| s < lo);
            for (i, _) in starts.iter().enumerate().skip(first).take_while(|(_, &s)| s <= hi) {
                sets[i * words + r / 64] |= 1 << (r % 64);
            }
        }
        Field { starts, sets }
    }

    #[inline]
    fn set(&self, v: u32, words: usize) -> &[u64] {
        let i = self.starts.partition_point(|&s| s <= v) - 1;
        &self.sets[i * words..(i + 1) * words]
    }
}

/// A compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwRule {
    pub id: String,
    pub action: FirewallAction,
}

/// Where a firewall's events are logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwLogTarget {
    /// The firewall log id: the file is `fw-<id>.log`.
    pub log_id: String,
    pub event: FwEvent,
}

/// One firewall, compiled.
#[derive(Debug, Clone)]
pub struct Firewall {
    pub id: String,
    pub tenant_id: String,
    /// An administratively down firewall drops everything (as FWaaS applies only its default
    /// policy).
    pub admin_up: bool,
    /// Enabled rules, in policy order.
    pub rules: Vec<FwRule>,
    words: usize,
    proto: Field,
    src: Field,
    dst: Field,
    sport: Field,
    dport: Field,
    /// The IPv6 rules: their index in `rules` and what they match, in policy order.
    v6: Vec<(usize, Match6)>,
    /// Enabled logging resources' logs of this firewall.
    pub logs: Vec<FwLogTarget>,
}

/// An IPv6 rule's match: `None` is any.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Match6 {
    proto: Option<u8>,
    src: Option<Ipv6Net>,
    dst: Option<Ipv6Net>,
    sport: Option<(u32, u32)>,
    dport: Option<(u32, u32)>,
}

impl Match6 {
    fn of(r: &crate::model::FirewallRule) -> Match6 {
        let net = |c: &Option<crate::model::AddrOrCidr>| c.as_ref().and_then(|c| c.v6());
        let ports = |p: &Option<crate::model::PortRange>| p.map(|p| (p.lo as u32, p.hi as u32));
        Match6 {
            proto: r.protocol.map(|p| protocol_number(p, true)),
            src: net(&r.source_ip_address),
            dst: net(&r.destination_ip_address),
            sport: ports(&r.source_port),
            dport: ports(&r.destination_port),
        }
    }

    fn matches(&self, proto: u8, src: Ipv6Addr, dst: Ipv6Addr, sport: u32, dport: u32) -> bool {
        let port = |r: Option<(u32, u32)>, v: u32| r.is_none_or(|(lo, hi)| v != NO_PORT && (lo..=hi).contains(&v));
        self.proto.is_none_or(|p| p == proto)
            && self.src.is_none_or(|n| n.contains(&src))
            && self.dst.is_none_or(|n| n.contains(&dst))
            && port(self.sport, sport)
            && port(self.dport, dport)
    }
}

/// The IP protocol number a rule's protocol names; `icmp` is ICMPv6 in an IPv6 rule.
fn protocol_number(p: FirewallProtocol, v6: bool) -> u8 {
    match p {
        FirewallProtocol::Tcp => 6,
        FirewallProtocol::Udp => 17,
        FirewallProtocol::Icmp if v6 => 58,
        FirewallProtocol::Icmp => 1,
    }
}

/// What a packet looks like to the firewall: both addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwPacket {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// [`NO_PORT`] when the packet has none.
    pub sport: u32,
    pub dport: u32,
}

/// Protocol classes: the classifier's protocol field. [`V6_CLASS`] is no IPv4 packet's.
fn proto_class(p: u8) -> u32 {
    match p {
        6 => 0,
        17 => 1,
        1 => 2,
        _ => 3,
    }
}

/// The protocol class the IPv4 classifier files IPv6 rules under, so they never match there.
const V6_CLASS: u32 = 4;

impl Firewall {
    /// The index of the first enabled rule of the packet's family that matches, if any.
    #[inline]
    pub fn classify(&self, p: &FwPacket) -> Option<usize> {
        match (p.src, p.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => self.classify4(p.proto, src, dst, p.sport, p.dport),
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                self.v6.iter().find(|(_, m)| m.matches(p.proto, src, dst, p.sport, p.dport)).map(|&(i, _)| i)
            }
            _ => None,
        }
    }

    #[inline]
    fn classify4(&self, proto: u8, src: Ipv4Addr, dst: Ipv4Addr, sport: u32, dport: u32) -> Option<usize> {
        let w = self.words;
        let sets = [
            self.proto.set(proto_class(proto), w),
            self.src.set(u32::from(src), w),
            self.dst.set(u32::from(dst), w),
            self.sport.set(sport, w),
            self.dport.set(dport, w),
        ];
        let [a, b, c, d, e] = sets;
        for (i, ((((a, b), c), d), e)) in a.iter().zip(b).zip(c).zip(d).zip(e).enumerate() {
            let m = a & b & c & d & e;
            if m != 0 {
                return Some(i * 64 + m.trailing_zeros() as usize);
            }
        }
        None
    }

    /// The first matching rule by scanning the list (the reference the classifier is tested
    /// against).
    pub fn classify_linear(&self, p: &FwPacket, s: &Snapshot) -> Option<usize> {
        self.rules.iter().position(|r| s.firewall_rules.iter().find(|x| x.id == r.id).is_some_and(|x| rule_matches(x, p)))
    }
}

fn rule_matches(r: &crate::model::FirewallRule, p: &FwPacket) -> bool {
    let proto_ok = r.protocol.is_none_or(|pr| protocol_number(pr, r.is_v6()) == p.proto);
    let addr = |c: &Option<crate::model::AddrOrCidr>, a: IpAddr| c.as_ref().is_none_or(|c| c.0.contains(&a));
    let port =
        |pr: &Option<crate::model::PortRange>, v: u32| pr.is_none_or(|pr| v != NO_PORT && (pr.lo as u32..=pr.hi as u32).contains(&v));
    r.is_v6() == p.src.is_ipv6()
        && p.src.is_ipv6() == p.dst.is_ipv6()
        && proto_ok
        && addr(&r.source_ip_address, p.src)
        && addr(&r.destination_ip_address, p.dst)
        && port(&r.source_port, p.sport)
        && port(&r.destination_port, p.dport)
}

/// Compile every firewall, and which router each applies to.
pub(super) fn compile(t: &Topology, s: &Snapshot) -> Vec<(RouterRef, Firewall)> {
    let mut out = Vec::new();
    for fw in &s.firewalls {
        let Some(policy) = s.firewall_policies.iter().find(|p| p.id == fw.firewall_policy_id) else { continue };
        let rules: Vec<&crate::model::FirewallRule> =
            policy.firewall_rules.iter().filter_map(|id| s.firewall_rules.iter().find(|r| &r.id == id)).filter(|r| r.enabled).collect();
        let words = rules.len().div_ceil(64).max(1);
        let full = |max: u32| (0u32, max);
        let cidr = |c: &Option<crate::model::AddrOrCidr>| match c {
            None => full(u32::MAX),
            // Validation keeps IPv6 addresses out of IPv4 rules.
            Some(c) => c.v4().map_or(full(u32::MAX), |n| (u32::from(n.network()), u32::from(n.broadcast()))),
        };
        let port = |p: &Option<crate::model::PortRange>| match p {
            None => full(NO_PORT),
            Some(p) => (p.lo as u32, p.hi as u32),
        };
        let proto = |r: &crate::model::FirewallRule| match r.protocol {
            _ if r.is_v6() => (V6_CLASS, V6_CLASS),
            None => (0, 3),
            Some(FirewallProtocol::Tcp) => (0, 0),
            Some(FirewallProtocol::Udp) => (1, 1),
            Some(FirewallProtocol::Icmp) => (2, 2),
        };
        let field = |f: &dyn Fn(&crate::model::FirewallRule) -> (u32, u32), max: u32| {
            Field::build(&rules.iter().map(|r| f(r)).collect::<Vec<_>>(), max, words)
        };
        let logs = s
            .logging_resources
            .iter()
            .filter(|lr| lr.enabled)
            .flat_map(|lr| lr.firewall_logs.iter())
            .filter(|l| l.firewall_id == fw.id)
            .map(|l| FwLogTarget { log_id: l.id.clone(), event: l.fw_event })
            .collect();
        let compiled = Firewall {
            id: fw.id.clone(),
            tenant_id: fw.tenant_id.clone().unwrap_or_default(),
            admin_up: fw.admin_state_up,
            rules: rules.iter().map(|r| FwRule { id: r.id.clone(), action: r.action }).collect(),
            words,
            proto: field(&proto, V6_CLASS),
            src: field(&|r| cidr(&r.source_ip_address), u32::MAX),
            dst: field(&|r| cidr(&r.destination_ip_address), u32::MAX),
            sport: field(&|r| port(&r.source_port), NO_PORT),
            dport: field(&|r| port(&r.destination_port), NO_PORT),
            v6: rules.iter().enumerate().filter(|(_, r)| r.is_v6()).map(|(i, r)| (i, Match6::of(r))).collect(),
            logs,
        };
        for rid in &fw.router_ids {
            if let Some(i) = t.routers.iter().position(|r| &r.id == rid) {
                out.push((RouterRef(i as u32), compiled.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classifier agrees with a plain first-match scan on random rule sets of both families
    /// and packets of both.
    #[test]
    fn classifier_matches_linear_first_match() {
        let mut x: u64 = 0x2545f4914f6cdd1d;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..40 {
            let n = [1, 5, 63, 64, 65, 200][round % 6];
            let mut rules = Vec::new();
            for i in 0..n {
                let proto = ["tcp", "udp", "icmp", "null"][(rnd() % 4) as usize];
                let action = ["allow", "deny", "reject"][(rnd() % 3) as usize];
                let enabled = rnd() % 7 != 0;
                let v6 = rnd() % 3 == 0;
                let mut r = serde_json::json!({"id": format!("r{i}"), "action": action, "enabled": enabled});
                if v6 {
                    r["ip_version"] = 6.into();
                }
                if proto != "null" {
                    r["protocol"] = proto.into();
                }
                if rnd() % 2 == 0 {
                    r["source_ip_address"] = match v6 {
                        true => format!("fd00:{}::/{}", rnd() % 4, 14 + rnd() % 40),
                        false => format!("10.{}.0.0/{}", rnd() % 4, 14 + rnd() % 12),
                    }
                    .into();
                }
                if rnd() % 2 == 0 {
                    r["destination_ip_address"] = match v6 {
                        true => format!("fd00:{}:{}::{}", rnd() % 4, rnd() % 4, rnd() % 8),
                        false => format!("10.{}.{}.{}", rnd() % 4, rnd() % 4, rnd() % 8),
                    }
                    .into();
                }
                if proto == "tcp" || proto == "udp" {
                    if rnd() % 2 == 0 {
                        let lo = rnd() % 100;
                        r["destination_port"] = format!("{lo}:{}", lo + rnd() % 50).into();
                    }
                    if rnd() % 3 == 0 {
                        r["source_port"] = format!("{}", rnd() % 100).into();
                    }
                }
                rules.push(r);
            }
            let ids: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
            let snap = serde_json::json!({
                "version": 1,
                "routers": [{"id": "r"}],
                "firewall_rules": rules,
                "firewall_policies": [{"id": "p", "firewall_rules": ids}],
                "firewalls": [{"id": "f", "firewall_policy_id": "p", "router_ids": ["r"]}],
            });
            let s = crate::load_str(&snap.to_string()).expect("valid");
            let t = Topology::compile(s).expect("compiles");
            let fw = &t.firewalls[0].1;
            for _ in 0..500 {
                let v6 = rnd() % 2 == 0;
                let proto = [6u8, 17, if v6 { 58 } else { 1 }, 47][(rnd() % 4) as usize];
                let ports = proto == 6 || proto == 17;
                let mut addr = || -> IpAddr {
                    let (a, b, c) = ((rnd() % 4) as u16, (rnd() % 4) as u16, (rnd() % 8) as u16);
                    match v6 {
                        true => Ipv6Addr::new(0xfd00, a, b, 0, 0, 0, 0, c).into(),
                        false => Ipv4Addr::new(10, a as u8, b as u8, c as u8).into(),
                    }
                };
                let p = FwPacket {
                    proto,
                    src: addr(),
                    dst: addr(),
                    sport: if ports { (rnd() % 120) as u32 } else { NO_PORT },
                    dport: if ports { (rnd() % 160) as u32 } else { NO_PORT },
                };
                assert_eq!(fw.classify(&p), fw.classify_linear(&p, &t.snapshot), "{p:?} with {n} rules");
            }
        }
    }
}
