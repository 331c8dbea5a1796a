//! Every reason the datapath drops a frame, and the counters indexed by it.
//!
//! One fieldless enum: the replay summary, `stats`, and the docs iterate [`DropReason::ALL`], so a
//! new drop site is one new variant with a stable snake_case name and a one-line description.

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// Why a frame was dropped.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $(#[doc = $doc] $variant,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// How many reasons there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The stable snake_case name used in summaries and metrics.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// One line for operators.
            pub fn description(self) -> &'static str {
                match self { $(DropReason::$variant => $doc,)* }
            }
        }
    };
}

drop_reasons! {
    TruncatedEthernet => "truncated_ethernet", "frame shorter than an Ethernet header";
    VlanTagged => "vlan_tagged", "802.1Q/802.1ad tagged frame on a port that carries untagged traffic only";
    UnsupportedEthertype => "unsupported_ethertype", "at a router port or the underlay, neither IPv4, ARP nor IPv6";
    EthertypeNotAllowed => "ethertype_not_allowed", "from a port with port security, neither IPv4, ARP nor IPv6";
    ReservedGroup => "reserved_group", "to an IEEE 802.1D reserved group address (01:80:c2:00:00:0x), never forwarded";
    TruncatedIpv6 => "truncated_ipv6", "IPv6 header or payload length runs past the captured frame";
    BadIpv6Version => "bad_ipv6_version", "IPv6 ethertype but the version field is not 6";
    BadIpv6Extension => "bad_ipv6_extension", "IPv6 extension header truncated, or a chain of more than 8";
    TruncatedIpv4 => "truncated_ipv4", "IPv4 header or total length runs past the captured frame";
    BadIpv4Version => "bad_ipv4_version", "IP version field is not 4";
    BadIhl => "bad_ihl", "IPv4 header length below 20 bytes or past the total length";
    BadIpv4Checksum => "bad_ipv4_checksum", "IPv4 header checksum does not verify";
    TruncatedL4 => "truncated_l4", "TCP, UDP, ICMP or ICMPv6 header runs past the IP payload";
    MalformedArp => "malformed_arp", "ARP that is not Ethernet/IPv4 or is truncated";
    PortDown => "port_down", "ingress or egress port has admin_state_up false";
    NetworkDown => "network_down", "network has admin_state_up false";
    SpoofedMac => "spoofed_mac", "source MAC is not the port's (port security)";
    SpoofedIp => "spoofed_ip", "source IPv4, IPv6 or ARP sender IP is not the port's (port security)";
    SpoofedNaTarget => "spoofed_na_target", "a neighbor advertisement for an address that is not the port's (port security)";
    RouterAdvertFromVm => "router_advert_from_vm", "a router advertisement from a VM port (port security)";
    Dhcpv6ServerFromVm => "dhcpv6_server_from_vm", "a DHCPv6 server message (UDP 547 → 546) from a VM port (port security)";
    NoDestination => "no_destination", "nothing to deliver to (flood with no other port, unbound port)";
    PortUnbound => "port_unbound", "destination port is bound to no host or to no interface";
    PortAbsent => "port_absent", "destination port's interface does not exist on this host now (a VM not yet plugged, or gone)";
    NoTunnelVni => "no_tunnel_vni", "destination on another host, but its network has no VNI";
    NotForRouter => "not_for_router", "frame at a router port not addressed to its MAC, or IPv6 a router does not forward (link-local, multicast)";
    ArpNotHandled => "arp_not_handled", "ARP at a router that is neither for its addresses nor a reply";
    NdNotHandled => "nd_not_handled", "a Neighbor Solicitation at a router port for an address that is not the port's";
    TtlExceeded => "ttl_exceeded", "TTL or hop limit expired at a router (ICMP or ICMPv6 time exceeded sent when allowed)";
    NoRoute => "no_route", "no route to the destination (ICMP net unreachable or ICMPv6 no route sent when allowed)";
    ToRouterUnhandled => "to_router_unhandled", "addressed to a router IP, not an echo request and no NAT mapping";
    LoopGuard => "loop_guard", "the walk through the topology passed 16 devices";
    ArpUnresolved => "arp_unresolved", "next hop did not answer 3 ARP requests or Neighbor Solicitations; waiting packets dropped";
    ArpQueueFull => "arp_queue_full", "already 3 packets waiting for this next hop's ARP or ND answer";
    ArpWaitingFull => "arp_waiting_full", "too many next hops wait for ARP already (the host's bound, `--max-arp-waiting`)";
    ConntrackFull => "conntrack_full", "connection table full (`--max-connections`, per router or in all) and every connection answered";
    ArpPendingAtExit => "arp_pending_at_exit", "still waiting for ARP when the replay ended";
    Unexplained => "unexplained", "the simulation neither sent, answered, queued nor dropped it with a reason (a defect: please report it)";
    SnatUntranslatable => "snat_untranslatable", "dynamic SNAT cannot translate it (other protocol, non-first fragment)";
    SnatPortsExhausted => "snat_ports_exhausted", "no free SNAT port for a new connection";
    VxlanNotForUs => "vxlan_not_for_us", "frame on the underlay that is not VXLAN to this host's tunnel IP";
    VxlanNoIFlag => "vxlan_no_i_flag", "VXLAN header without the I flag";
    VxlanUnknownSource => "vxlan_unknown_source", "VXLAN from an address that is no known tunnel endpoint";
    VxlanUnknownVni => "vxlan_unknown_vni", "VXLAN with a VNI that names no network";
    ArpNotForUnderlay => "arp_not_for_underlay", "ARP on the underlay that is not for this host's tunnel IP";
    FwDenied => "fw_denied", "a firewall rule with action deny matched";
    FwRejected => "fw_rejected", "a firewall rule with action reject matched (RST or ICMP port unreachable sent)";
    FwDefaultDrop => "fw_default_drop", "no firewall rule matched, or the firewall is administratively down";
    QosPoliced => "qos_policed", "over the port's bandwidth limit (token bucket empty)";
    SnapshotRemoved => "snapshot_removed", "waiting for ARP on a port a new snapshot removed";
    Fip64ExtensionHeader => "fip64_extension_header", "IPv6 to a fip64 with an extension header other than one fragment header";
    Fip64Protocol => "fip64_protocol", "IPv6 to a fip64, or IPv4 to a NAT64 pool address, that is not TCP, UDP or ICMP";
    Fip64IcmpUntranslatable => "fip64_icmp_untranslatable", "an ICMP or ICMPv6 message RFC 7915 does not translate";
    Fip64Unbound => "fip64_unbound", "IPv4 to a NAT64 pool address no client is bound to";
    Fip64NotFip64 => "fip64_not_fip64", "IPv4 to a NAT64 pool address from a fixed IP without a fip64";
    Fip64Truncated => "fip64_truncated", "IPv4 or IPv6 to translate whose headers run past the frame";
}

/// Counters indexed by [`DropReason`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::COUNT]);

impl Default for DropCounters {
    fn default() -> Self {
        DropCounters([0; DropReason::COUNT])
    }
}

impl DropCounters {
    #[inline]
    pub fn incr(&mut self, r: DropReason) {
        self.0[r as usize] += 1;
    }

    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Count `n` drops for one reason at once.
    pub fn add_n(&mut self, r: DropReason, n: u64) {
        self.0[r as usize] += n;
    }

    /// Add another set of counters (another worker's) to these.
    pub fn add(&mut self, other: &DropCounters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// Non-zero counters, in enum order.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r))).filter(|&(_, n)| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in DropReason::ALL {
            assert!(seen.insert(r.name()), "duplicate {}", r.name());
            assert!(r.name().chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()));
            assert!(!r.description().is_empty());
        }
        assert_eq!(DropReason::ALL[DropReason::ArpQueueFull as usize], DropReason::ArpQueueFull);
    }
}
