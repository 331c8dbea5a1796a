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

use std::net::Ipv4Addr;

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
    /// Enabled logging resources' logs of this firewall.
    pub logs: Vec<FwLogTarget>,
}

/// What a packet looks like to the firewall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwPacket {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// [`NO_PORT`] when the packet has none.
    pub sport: u32,
    pub dport: u32,
}

/// Protocol classes: the classifier's protocol field.
fn proto_class(p: u8) -> u32 {
    match p {
        6 => 0,
        17 => 1,
        1 => 2,
        _ => 3,
    }
}

impl Firewall {
    /// The index of the first enabled rule that matches, if any.
    #[inline]
    pub fn classify(&self, p: &FwPacket) -> Option<usize> {
        let w = self.words;
        let sets = [
            self.proto.set(proto_class(p.proto), w),
            self.src.set(u32::from(p.src), w),
            self.dst.set(u32::from(p.dst), w),
            self.sport.set(p.sport, w),
            self.dport.set(p.dport, w),
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
    let proto_ok = match r.protocol {
        None => true,
        Some(FirewallProtocol::Tcp) => p.proto == 6,
        Some(FirewallProtocol::Udp) => p.proto == 17,
        Some(FirewallProtocol::Icmp) => p.proto == 1,
    };
    let addr = |c: &Option<crate::model::AddrOrCidr>, a: Ipv4Addr| c.is_none_or(|c| c.v4().is_some_and(|n| n.contains(&a)));
    let port =
        |pr: &Option<crate::model::PortRange>, v: u32| pr.is_none_or(|pr| v != NO_PORT && (pr.lo as u32..=pr.hi as u32).contains(&v));
    !r.is_v6()
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
        let rules: Vec<&crate::model::FirewallRule> = policy
            .firewall_rules
            .iter()
            .filter_map(|id| s.firewall_rules.iter().find(|r| &r.id == id))
            .filter(|r| r.enabled && !r.is_v6())
            .collect();
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
            proto: field(&proto, 3),
            src: field(&|r| cidr(&r.source_ip_address), u32::MAX),
            dst: field(&|r| cidr(&r.destination_ip_address), u32::MAX),
            sport: field(&|r| port(&r.source_port), NO_PORT),
            dport: field(&|r| port(&r.destination_port), NO_PORT),
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

    /// The classifier agrees with a plain first-match scan on random rule sets and packets.
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
                let mut r = serde_json::json!({"id": format!("r{i}"), "action": action, "enabled": enabled});
                if proto != "null" {
                    r["protocol"] = proto.into();
                }
                if rnd() % 2 == 0 {
                    r["source_ip_address"] = format!("10.{}.0.0/{}", rnd() % 4, 14 + rnd() % 12).into();
                }
                if rnd() % 2 == 0 {
                    r["destination_ip_address"] = format!("10.{}.{}.{}", rnd() % 4, rnd() % 4, rnd() % 8).into();
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
                let proto = [6u8, 17, 1, 47][(rnd() % 4) as usize];
                let ports = proto == 6 || proto == 17;
                let p = FwPacket {
                    proto,
                    src: Ipv4Addr::new(10, (rnd() % 4) as u8, (rnd() % 4) as u8, (rnd() % 8) as u8),
                    dst: Ipv4Addr::new(10, (rnd() % 4) as u8, (rnd() % 4) as u8, (rnd() % 8) as u8),
                    sport: if ports { (rnd() % 120) as u32 } else { NO_PORT },
                    dport: if ports { (rnd() % 160) as u32 } else { NO_PORT },
                };
                assert_eq!(fw.classify(&p), fw.classify_linear(&p, &t.snapshot), "{p:?} with {n} rules");
            }
        }
    }
}
