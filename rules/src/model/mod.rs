//! The control-plane snapshot of SPEC §3, as serde reads it.
//!
//! Attribute names are Neutron's (and MidoNet's where Neutron has none). Every collection is
//! optional and unknown attributes are ignored. Values are typed at parse time (addresses, CIDRs,
//! MACs, VNIs), so a malformed value is reported with the path of the attribute that holds it;
//! cross-references and the other rules of §3 are checked by [`crate::validate`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;

mod values;
pub use values::{AddrOrCidr, Dscp, Mac, PortRange, Vni};

/// The whole snapshot document.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Snapshot {
    /// Grows with every change; the datapath reports the version it runs.
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub hosts: Vec<Host>,
    #[serde(default)]
    pub networks: Vec<Network>,
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub routers: Vec<Router>,
    #[serde(default)]
    pub floatingips: Vec<FloatingIp>,
    #[serde(default)]
    pub qos_policies: Vec<QosPolicy>,
    #[serde(default)]
    pub firewall_rules: Vec<FirewallRule>,
    #[serde(default)]
    pub firewall_policies: Vec<FirewallPolicy>,
    #[serde(default)]
    pub firewalls: Vec<Firewall>,
    #[serde(default)]
    pub logging_resources: Vec<LoggingResource>,
    #[serde(default)]
    pub gateway_devices: Vec<GatewayDevice>,
    #[serde(default)]
    pub gateway_device_peerings: Vec<GatewayDevicePeering>,
    #[serde(default)]
    pub l2_gateways: Vec<L2Gateway>,
    #[serde(default)]
    pub l2_gateway_connections: Vec<L2GatewayConnection>,
    #[serde(default)]
    pub remote_gateways: Vec<RemoteGateway>,
    #[serde(default)]
    pub remote_gateway_connections: Vec<RemoteGatewayConnection>,
    #[serde(default)]
    pub remote_macs: Vec<RemoteMac>,
}

impl Snapshot {
    /// Each network's subnets, in the snapshot's order: what validation and compilation look up
    /// per port and per router (a scan of every subnet there made both quadratic in the
    /// snapshot's size).
    pub fn subnets_on(&self) -> std::collections::HashMap<&str, Vec<&Subnet>> {
        let mut on: std::collections::HashMap<&str, Vec<&Subnet>> = std::collections::HashMap::new();
        for sn in &self.subnets {
            on.entry(sn.network_id.as_str()).or_default().push(sn);
        }
        on
    }
}

fn yes() -> bool {
    true
}

/// A host running an agent (MidoNet tunnel-zone membership).
#[derive(Debug, Clone, Deserialize)]
pub struct Host {
    pub id: String,
    pub tunnel_ip: Ipv4Addr,
    #[serde(default)]
    pub underlay_interface: Option<String>,
    /// Next hop for every tunnel destination; absent: destinations are on the underlay link.
    #[serde(default)]
    pub underlay_gateway: Option<Ipv4Addr>,
}

/// `provider:network_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkType {
    /// An overlay network, carried between hosts with VXLAN.
    #[default]
    Vxlan,
    /// An uplink: a provider network on a host interface, no segmentation id.
    Local,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Network {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(rename = "router:external", default)]
    pub router_external: bool,
    #[serde(rename = "provider:network_type", default)]
    pub network_type: NetworkType,
    #[serde(rename = "provider:segmentation_id", default)]
    pub segmentation_id: Option<Vni>,
    #[serde(default = "yes")]
    pub port_security_enabled: bool,
    #[serde(default)]
    pub qos_policy_id: Option<String>,
    #[serde(default = "yes")]
    pub admin_state_up: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub network_id: String,
    /// IPv4 or IPv6 (SPEC §10.2); validation checks it against `ip_version`.
    pub cidr: IpNet,
    #[serde(default)]
    pub gateway_ip: Option<IpAddr>,
    /// 4 (the default) or 6.
    #[serde(default)]
    pub ip_version: Option<u8>,
    /// How router advertisements advertise an IPv6 subnet (SPEC §10.3); none: not advertised.
    #[serde(default)]
    pub ipv6_ra_mode: Option<Ipv6Mode>,
    #[serde(default)]
    pub ipv6_address_mode: Option<Ipv6Mode>,
}

impl Subnet {
    /// The CIDR of an IPv4 subnet, host bits cleared.
    pub fn cidr4(&self) -> Option<Ipv4Net> {
        match self.cidr {
            IpNet::V4(n) => Some(n.trunc()),
            IpNet::V6(_) => None,
        }
    }

    /// The gateway of an IPv4 subnet.
    pub fn gateway4(&self) -> Option<Ipv4Addr> {
        match self.gateway_ip {
            Some(IpAddr::V4(g)) => Some(g),
            _ => None,
        }
    }

    /// The CIDR of an IPv6 subnet, host bits cleared.
    pub fn cidr6(&self) -> Option<Ipv6Net> {
        match self.cidr {
            IpNet::V6(n) => Some(n.trunc()),
            IpNet::V4(_) => None,
        }
    }
}

/// Neutron's `ipv6_ra_mode` and `ipv6_address_mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Ipv6Mode {
    #[serde(rename = "slaac")]
    Slaac,
    #[serde(rename = "dhcpv6-stateful")]
    Dhcpv6Stateful,
    #[serde(rename = "dhcpv6-stateless")]
    Dhcpv6Stateless,
}

impl fmt::Display for Ipv6Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ipv6Mode::Slaac => "slaac",
            Ipv6Mode::Dhcpv6Stateful => "dhcpv6-stateful",
            Ipv6Mode::Dhcpv6Stateless => "dhcpv6-stateless",
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct FixedIp {
    #[serde(default)]
    pub subnet_id: Option<String>,
    pub ip_address: IpAddr,
}

impl FixedIp {
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        match self.ip_address {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        match self.ip_address {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
}

/// `binding:profile`: the interface a port is bound to. Both spellings appear in the seeds.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BindingProfile {
    #[serde(default)]
    pub interface_name: Option<String>,
    #[serde(default)]
    pub if_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AllowedAddressPair {
    pub ip_address: AddrOrCidr,
    #[serde(default)]
    pub mac_address: Option<Mac>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Port {
    pub id: String,
    pub network_id: String,
    pub mac_address: Mac,
    #[serde(default)]
    pub fixed_ips: Vec<FixedIp>,
    #[serde(default)]
    pub device_owner: String,
    #[serde(default)]
    pub device_id: String,
    #[serde(rename = "binding:host_id", default)]
    pub binding_host_id: Option<String>,
    #[serde(rename = "binding:profile", default)]
    pub binding_profile: Option<BindingProfile>,
    /// Absent: the network's setting.
    #[serde(default)]
    pub port_security_enabled: Option<bool>,
    #[serde(default)]
    pub allowed_address_pairs: Vec<AllowedAddressPair>,
    #[serde(default)]
    pub qos_policy_id: Option<String>,
    #[serde(default = "yes")]
    pub admin_state_up: bool,
}

impl Port {
    /// `network:router_interface` or `network:router_gateway`.
    pub fn is_router_port(&self) -> bool {
        self.device_owner == DEVICE_OWNER_ROUTER_INTERFACE || self.device_owner == DEVICE_OWNER_ROUTER_GATEWAY
    }
}

pub const DEVICE_OWNER_ROUTER_INTERFACE: &str = "network:router_interface";
pub const DEVICE_OWNER_ROUTER_GATEWAY: &str = "network:router_gateway";

#[derive(Debug, Clone, Deserialize)]
pub struct ExternalGatewayInfo {
    pub network_id: String,
    #[serde(default = "yes")]
    pub enable_snat: bool,
}

/// An extra route, with MidoNet's `source` (004 §8.1.6).
#[derive(Debug, Clone, Deserialize)]
pub struct ExtraRoute {
    /// IPv4 or IPv6; the next hop and the source are of the same family (validation).
    pub destination: IpNet,
    pub nexthop: IpAddr,
    #[serde(default)]
    pub source: Option<IpNet>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Router {
    pub id: String,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub external_gateway_info: Option<ExternalGatewayInfo>,
    #[serde(default)]
    pub routes: Vec<ExtraRoute>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FloatingIp {
    pub id: String,
    /// IPv4, or IPv6 for a fip64 (SPEC §11).
    pub floating_ip_address: IpAddr,
    pub floating_network_id: String,
    #[serde(default)]
    pub port_id: Option<String>,
    #[serde(default)]
    pub fixed_ip_address: Option<Ipv4Addr>,
    #[serde(default)]
    pub router_id: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QosPolicy {
    pub id: String,
    #[serde(default)]
    pub rules: Vec<QosRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QosDirection {
    /// Traffic leaving the VM (entering the datapath from the port).
    #[default]
    Egress,
    /// Traffic delivered to the VM.
    Ingress,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "QosRuleFields")]
pub enum QosRule {
    BandwidthLimit {
        max_kbps: u64,
        #[serde(default)]
        max_burst_kbps: Option<u64>,
        #[serde(default)]
        direction: QosDirection,
    },
    DscpMarking {
        dscp_mark: Dscp,
    },
}

/// A QoS rule as Neutron writes it: its `type` and the attributes of that type. Read field by
/// field (not as an internally tagged enum), so an error names the attribute it is about.
#[derive(Deserialize)]
struct QosRuleFields {
    #[serde(rename = "type")]
    kind: QosRuleType,
    #[serde(default)]
    max_kbps: Option<u64>,
    #[serde(default)]
    max_burst_kbps: Option<u64>,
    #[serde(default)]
    direction: Option<QosDirection>,
    #[serde(default)]
    dscp_mark: Option<Dscp>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum QosRuleType {
    BandwidthLimit,
    DscpMarking,
}

impl TryFrom<QosRuleFields> for QosRule {
    type Error = String;
    fn try_from(f: QosRuleFields) -> Result<QosRule, String> {
        match f.kind {
            QosRuleType::BandwidthLimit => {
                if f.dscp_mark.is_some() {
                    return Err("dscp_mark: not an attribute of a bandwidth_limit rule".into());
                }
                let max_kbps = f.max_kbps.ok_or("max_kbps: missing; a bandwidth_limit rule needs it")?;
                Ok(QosRule::BandwidthLimit { max_kbps, max_burst_kbps: f.max_burst_kbps, direction: f.direction.unwrap_or_default() })
            }
            QosRuleType::DscpMarking => {
                for (name, set) in [
                    ("max_kbps", f.max_kbps.is_some()),
                    ("max_burst_kbps", f.max_burst_kbps.is_some()),
                    ("direction", f.direction.is_some()),
                ] {
                    if set {
                        return Err(format!("{name}: not an attribute of a dscp_marking rule"));
                    }
                }
                let dscp_mark = f.dscp_mark.ok_or("dscp_mark: missing; a dscp_marking rule needs it")?;
                Ok(QosRule::DscpMarking { dscp_mark })
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallProtocol {
    Tcp,
    Udp,
    Icmp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallAction {
    Allow,
    Deny,
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FirewallRule {
    pub id: String,
    /// 4 (the default) or 6 (SPEC §10.2): which packets the rule is for.
    #[serde(default)]
    pub ip_version: Option<u8>,
    /// Absent or null: any protocol.
    #[serde(default)]
    pub protocol: Option<FirewallProtocol>,
    #[serde(default)]
    pub source_ip_address: Option<AddrOrCidr>,
    #[serde(default)]
    pub destination_ip_address: Option<AddrOrCidr>,
    #[serde(default)]
    pub source_port: Option<PortRange>,
    #[serde(default)]
    pub destination_port: Option<PortRange>,
    pub action: FirewallAction,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub tenant_id: Option<String>,
}

impl FirewallRule {
    /// Whether the rule is for IPv6 packets (`ip_version` 6); rules without it are IPv4 rules.
    pub fn is_v6(&self) -> bool {
        self.ip_version == Some(6)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct FirewallPolicy {
    pub id: String,
    /// Rule ids, in evaluation order.
    #[serde(default)]
    pub firewall_rules: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Firewall {
    pub id: String,
    pub firewall_policy_id: String,
    #[serde(default)]
    pub router_ids: Vec<String>,
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    #[serde(default)]
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FwEvent {
    Accept,
    Drop,
    #[default]
    All,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FirewallLog {
    pub id: String,
    pub firewall_id: String,
    #[serde(default)]
    pub fw_event: FwEvent,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LoggingResource {
    pub id: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub firewall_logs: Vec<FirewallLog>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayDeviceType {
    #[default]
    HwVtep,
    RouterVtep,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RemoteMacEntry {
    pub id: String,
    pub mac_address: Mac,
    pub vtep_address: Ipv4Addr,
    pub segmentation_id: Vni,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GatewayDevice {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub device_type: GatewayDeviceType,
    #[serde(default)]
    pub management_ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub management_port: Option<u16>,
    #[serde(default)]
    pub management_protocol: Option<String>,
    /// The router, for `router_vtep`.
    #[serde(default)]
    pub resource_id: Option<String>,
    #[serde(default)]
    pub tunnel_ips: Vec<Ipv4Addr>,
    #[serde(default)]
    pub remote_mac_entries: Vec<RemoteMacEntry>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GatewayDevicePeering {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub device1_id: String,
    pub device2_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct L2GatewayDevice {
    pub device_id: String,
    #[serde(default)]
    pub segmentation_id: Option<Vni>,
    /// Switch interfaces (hardware VTEPs); not needed for the Border GW use case (seed 001).
    #[serde(default)]
    pub interfaces: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct L2Gateway {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub devices: Vec<L2GatewayDevice>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct L2GatewayConnection {
    pub id: String,
    pub l2_gateway_id: String,
    pub network_id: String,
    #[serde(default)]
    pub segmentation_id: Option<Vni>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RemoteGateway {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub ipaddr: Ipv4Addr,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RemoteGatewayConnection {
    pub id: String,
    pub l2_gateway_id: String,
    pub network_id: String,
    pub remote_gateway_id: String,
    /// Absent: the network's segmentation id.
    #[serde(default)]
    pub segmentation_id: Option<Vni>,
    #[serde(default)]
    pub flood: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RemoteMac {
    pub id: String,
    pub mac: Mac,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    pub rgw_connection: String,
}
