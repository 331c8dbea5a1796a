//! QoS per port (SPEC §8, Neutron QoS API): the port's policy, else its network's.
//!
//! `bandwidth_limit` becomes a token bucket: rate `max_kbps` × 1000 bit/s, depth `max_burst_kbps`
//! × 1000 bits, or 80 % of one second at the rate when the burst is 0 or absent. `egress` polices
//! traffic leaving the VM (entering the datapath from the port), `ingress` traffic delivered to it.
//! `dscp_marking` marks IPv4 packets leaving the VM.

use super::Topology;
use crate::model::{QosDirection, QosRule, Snapshot};

/// A token bucket's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    pub rate_bps: u64,
    pub depth_bits: u64,
}

/// One port's QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortQos {
    /// Traffic from the VM.
    pub egress: Option<BucketSpec>,
    /// Traffic to the VM.
    pub ingress: Option<BucketSpec>,
    pub dscp: Option<u8>,
}

pub(super) fn compile(t: &Topology, s: &Snapshot) -> Vec<PortQos> {
    s.ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let net = &s.networks[t.ports[i].network.idx()];
            let policy = p.qos_policy_id.as_ref().or(net.qos_policy_id.as_ref()).and_then(|id| s.qos_policies.iter().find(|q| &q.id == id));
            let mut q = PortQos::default();
            for rule in policy.map(|p| p.rules.as_slice()).unwrap_or_default() {
                match *rule {
                    QosRule::BandwidthLimit { max_kbps, max_burst_kbps, direction } => {
                        let rate_bps = max_kbps.saturating_mul(1000);
                        let depth_bits = match max_burst_kbps {
                            Some(b) if b > 0 => b.saturating_mul(1000),
                            _ => rate_bps * 8 / 10,
                        };
                        let spec = Some(BucketSpec { rate_bps, depth_bits });
                        match direction {
                            QosDirection::Egress => q.egress = spec,
                            QosDirection::Ingress => q.ingress = spec,
                        }
                    }
                    QosRule::DscpMarking { dscp_mark } => q.dscp = Some(dscp_mark.0),
                }
            }
            q
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_takes_its_policy_else_its_networks() {
        let snap = serde_json::json!({
            "version": 1,
            "networks": [{"id": "n", "qos_policy_id": "net"}],
            "subnets": [{"id": "s", "network_id": "n", "cidr": "10.0.0.0/24"}],
            "qos_policies": [
                {"id": "net", "rules": [{"type": "bandwidth_limit", "max_kbps": 1000, "direction": "ingress"}]},
                {"id": "own", "rules": [{"type": "bandwidth_limit", "max_kbps": 10, "max_burst_kbps": 5}, {"type": "dscp_marking", "dscp_mark": 46}]},
            ],
            "ports": [
                {"id": "a", "network_id": "n", "mac_address": "02:00:00:00:00:0a"},
                {"id": "b", "network_id": "n", "mac_address": "02:00:00:00:00:0b", "qos_policy_id": "own"},
            ],
        });
        let t = Topology::compile(crate::load_str(&snap.to_string()).expect("valid")).expect("compiles");
        // The network's policy, with the default burst of 80 % of a second.
        assert_eq!(t.qos[0], PortQos { egress: None, ingress: Some(BucketSpec { rate_bps: 1_000_000, depth_bits: 800_000 }), dscp: None });
        assert_eq!(t.qos[1], PortQos { egress: Some(BucketSpec { rate_bps: 10_000, depth_bits: 5_000 }), ingress: None, dscp: Some(46) });
    }
}
