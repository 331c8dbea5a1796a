//! `edgepath trace`: describe one packet arriving on an interface and print what the simulation
//! does with it — every port, network, router, firewall and NAT step — and the frames that leave
//! (as OVS's `ofproto/trace` does). Offline against a snapshot file; the datapath is fresh, so
//! next hops not in the snapshot show as waiting for ARP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use datapath::{Datapath, Instant};
use etherparse::PacketBuilder;
use rules::model::Mac;

#[derive(Clone, Copy, ValueEnum)]
enum Proto {
    Udp,
    Tcp,
    Icmp,
}

#[derive(Args)]
pub struct TraceArgs {
    /// The control-plane snapshot.
    #[arg(long)]
    snapshot: PathBuf,
    /// The host the datapath runs as.
    #[arg(long)]
    host: String,
    /// The interface the packet arrives on.
    #[arg(long = "in")]
    iface: String,
    /// Source address, IPv4 or IPv6.
    #[arg(long)]
    src: IpAddr,
    /// Destination address, of the source's family.
    #[arg(long)]
    dst: IpAddr,
    #[arg(long, value_enum, default_value = "udp")]
    proto: Proto,
    /// Source port (TCP/UDP) or echo identifier (ICMP, ICMPv6 for IPv6).
    #[arg(long, default_value_t = 40000)]
    sport: u16,
    #[arg(long, default_value_t = 80)]
    dport: u16,
    /// TTL, or the hop limit of IPv6.
    #[arg(long, default_value_t = 64)]
    ttl: u8,
    /// Source MAC; default: the MAC of the port bound to the interface.
    #[arg(long)]
    src_mac: Option<Mac>,
    /// Destination MAC; default: the owner of the destination on the port's network, else its
    /// subnet's gateway, else the router port bound to the interface.
    #[arg(long)]
    dst_mac: Option<Mac>,
    /// An interface's own MAC, `IFNAME=MAC` (repeatable).
    #[arg(long = "mac", value_parser = super::parse_mac_arg)]
    macs: Vec<(String, Mac)>,
    /// Ask the datapath running behind this control socket (its learned state and connections,
    /// on a copy: nothing changes) instead of a fresh one.
    #[arg(long)]
    control: Option<PathBuf>,
    /// Text for people, or JSON for programs.
    #[arg(long, value_enum, default_value_t = super::control::Format::Text)]
    format: super::control::Format,
}

pub fn run(a: TraceArgs) -> Result<(), String> {
    let topo = Arc::new(rules::load_topology(&a.snapshot).map_err(|e| e.to_string())?);
    let macs: HashMap<String, Mac> = a.macs.into_iter().collect();
    let dp = Datapath::new(topo.clone(), &a.host, &macs).map_err(|e| format!("{}: {e}", a.snapshot.display()))?;
    let Some(i) = dp.interfaces().by_name(&a.iface) else {
        return Err(format!("--in {}: interface not bound by any port of host {}", a.iface, a.host));
    };
    let port = match dp.interfaces().get(i).binding {
        datapath::iface::Binding::Port(p) | datapath::iface::Binding::RouterPort(p) => Some(p),
        datapath::iface::Binding::Underlay | datapath::iface::Binding::Released => None,
    };
    let src_mac = a.src_mac.or(port.map(|p| topo.port(p).mac)).unwrap_or(Mac([0x02, 0, 0, 0, 0, 0x99]));
    let dst_mac = a.dst_mac.or_else(|| {
        let p = topo.port(port?);
        if p.router.is_some() {
            return Some(p.mac);
        }
        let net = topo.network(p.network);
        let on_subnet = |s: &&rules::model::Subnet| s.network_id == net.id && s.cidr.contains(&a.src);
        let gateway = topo.snapshot.subnets.iter().find(on_subnet).and_then(|s| s.gateway_ip);
        let known = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => net.arp_answers.get(&v4),
            IpAddr::V6(v6) => net.nd_answers.get(&v6),
        };
        known(a.dst).or_else(|| gateway.and_then(known)).copied()
    });
    let dst_mac = dst_mac.ok_or("--dst-mac: no default for this interface; give one")?;
    let eth = PacketBuilder::ethernet2(src_mac.0, dst_mac.0);
    let (b, v6) = match (a.src, a.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (eth.ipv4(s.octets(), d.octets(), a.ttl), false),
        (IpAddr::V6(s), IpAddr::V6(d)) => (eth.ipv6(s.octets(), d.octets(), a.ttl), true),
        _ => return Err(format!("--src {} and --dst {}: one family, IPv4 or IPv6", a.src, a.dst)),
    };
    let mut frame = Vec::new();
    let built = match a.proto {
        Proto::Udp => b.udp(a.sport, a.dport).write(&mut frame, b"edgepath trace"),
        Proto::Tcp => b.tcp(a.sport, a.dport, 1, 64240).syn().write(&mut frame, b""),
        Proto::Icmp if v6 => b.icmpv6_echo_request(a.sport, 1).write(&mut frame, b"edgepath trace"),
        Proto::Icmp => b.icmpv4_echo_request(a.sport, 1).write(&mut frame, b"edgepath trace"),
    };
    built.map_err(|e| format!("building the packet: {e}"))?;

    if let Some(ctl) = &a.control {
        let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        let json = if a.format == super::control::Format::Json { " json" } else { "" };
        let answer = datapath::io::control::ask(ctl, &format!("trace {} {hex}{json}", a.iface))
            .map_err(|e| format!("{}: cannot reach a running edgepath: {e}", ctl.display()))?;
        if answer.starts_with("error:") {
            return Err(answer.trim_end().to_string());
        }
        super::out(answer.trim_end());
        return Ok(());
    }
    let t = dp.trace_packet(i, &frame, Instant(0));
    match a.format {
        super::control::Format::Json => super::out(serde_json::to_string(&t).map_err(|e| e.to_string())?),
        super::control::Format::Text => t.lines().into_iter().for_each(super::out),
    }
    Ok(())
}
