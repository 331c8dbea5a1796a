//! ARP frames the datapath builds (RFC 826): replies for suppression and router ports,
//! requests for next hops.

use std::net::Ipv4Addr;

use super::{Arp, ARP_REPLY, ARP_REQUEST, BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4};

/// Bytes of an Ethernet + ARP frame, before padding.
pub const FRAME_LEN: usize = 14 + 28;

impl Arp {
    /// An Ethernet frame carrying this ARP packet.
    pub fn to_frame(&self, eth_src: [u8; 6], eth_dst: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::with_capacity(FRAME_LEN);
        f.extend_from_slice(&eth_dst);
        f.extend_from_slice(&eth_src);
        f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        f.extend_from_slice(&1u16.to_be_bytes());
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f.push(6);
        f.push(4);
        f.extend_from_slice(&self.op.to_be_bytes());
        f.extend_from_slice(&self.sha);
        f.extend_from_slice(&self.spa.octets());
        f.extend_from_slice(&self.tha);
        f.extend_from_slice(&self.tpa.octets());
        f
    }
}

/// The reply to `req`, saying `ip` is at `mac`, sent to the requester.
pub fn reply(req: &Arp, mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    Arp { op: ARP_REPLY, sha: mac, spa: ip, tha: req.sha, tpa: req.spa }.to_frame(mac, req.sha)
}

/// A broadcast request for `target`, from `mac`/`ip`.
pub fn request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    Arp { op: ARP_REQUEST, sha: mac, spa: ip, tha: [0; 6], tpa: target }.to_frame(mac, BROADCAST)
}
