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
    /// The control-plane snapshot (a fresh datapath on it; not with --live).
    #[arg(long, required_unless_present = "live", conflicts_with = "live")]
    snapshot: Option<PathBuf>,
    /// The host the datapath runs as.
    #[arg(long, required_unless_present = "live", conflicts_with = "live")]
    host: Option<String>,
    /// Trace the next packets of the running datapath (--control) that match --in, --proto,
    /// --src, --dst, --sport and --dport, cached hits included: each with the cached flow it took
    /// and its actions, or the simulation's walk.
    #[arg(long, requires = "control")]
    live: bool,
    /// With --live, how many packets.
    #[arg(long, default_value_t = 1, requires = "live")]
    count: usize,
    /// With --live, give up after this many seconds.
    #[arg(long, default_value_t = 60, requires = "live")]
    timeout: u64,
    /// The interface the packet arrives on.
    #[arg(long = "in")]
    iface: String,
    /// Source address, IPv4 or IPv6 (with --live, a filter).
    #[arg(long, required_unless_present = "live")]
    src: Option<IpAddr>,
    /// Destination address, of the source's family (with --live, a filter).
    #[arg(long, required_unless_present = "live")]
    dst: Option<IpAddr>,
    /// The packet's protocol (default udp; with --live, a filter).
    #[arg(long, value_enum)]
    proto: Option<Proto>,
    /// Source port (TCP/UDP) or echo identifier (ICMP, ICMPv6 for IPv6); default 40000; with
    /// --live, a TCP or UDP port to filter on.
    #[arg(long)]
    sport: Option<u16>,
    /// Destination port; default 80.
    #[arg(long)]
    dport: Option<u16>,
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
    if a.live {
        return live(&a);
    }
    let (Some(snapshot), Some(host), Some(src), Some(dst)) = (&a.snapshot, &a.host, a.src, a.dst) else {
        return Err("trace needs --snapshot, --host, --src and --dst (or --live)".into());
    };
    let (proto, sport, dport) = (a.proto.unwrap_or(Proto::Udp), a.sport.unwrap_or(40000), a.dport.unwrap_or(80));
    let topo = Arc::new(rules::load_topology(snapshot).map_err(|e| e.to_string())?);
    let macs: HashMap<String, Mac> = a.macs.iter().cloned().collect();
    let dp = Datapath::new(topo.clone(), host, &macs).map_err(|e| format!("{}: {e}", snapshot.display()))?;
    let Some(i) = dp.interfaces().by_name(&a.iface) else {
        return Err(format!("--in {}: interface not bound by any port of host {host}", a.iface));
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
        let on_subnet = |s: &&rules::model::Subnet| s.network_id == net.id && s.cidr.contains(&src);
        let gateway = topo.snapshot.subnets.iter().find(on_subnet).and_then(|s| s.gateway_ip);
        let known = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => net.arp_answers.get(&v4),
            IpAddr::V6(v6) => net.nd_answers.get(&v6),
        };
        known(dst).or_else(|| gateway.and_then(known)).copied()
    });
    let dst_mac = dst_mac.ok_or("--dst-mac: no default for this interface; give one")?;
    let eth = PacketBuilder::ethernet2(src_mac.0, dst_mac.0);
    let (b, v6) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (eth.ipv4(s.octets(), d.octets(), a.ttl), false),
        (IpAddr::V6(s), IpAddr::V6(d)) => (eth.ipv6(s.octets(), d.octets(), a.ttl), true),
        _ => return Err(format!("--src {src} and --dst {dst}: one family, IPv4 or IPv6")),
    };
    let mut frame = Vec::new();
    let built = match proto {
        Proto::Udp => b.udp(sport, dport).write(&mut frame, b"edgepath trace"),
        Proto::Tcp => b.tcp(sport, dport, 1, 64240).syn().write(&mut frame, b""),
        Proto::Icmp if v6 => b.icmpv6_echo_request(sport, 1).write(&mut frame, b"edgepath trace"),
        Proto::Icmp => b.icmpv4_echo_request(sport, 1).write(&mut frame, b"edgepath trace"),
    };
    built.map_err(|e| format!("building the packet: {e}"))?;

    if let Some(ctl) = &a.control {
        let hex = datapath::io::control::to_hex(&frame);
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

/// `trace --live`: the next packets of the running datapath that match, each printed as it
/// comes (JSON: one object a line).
fn live(a: &TraceArgs) -> Result<(), String> {
    let Some(control) = &a.control else { return Err("trace --live needs --control".into()) };
    let mut arm = format!("tap trace {} in={}", a.count, a.iface);
    let proto = a.proto.map(|p| match p {
        Proto::Udp => "udp",
        Proto::Tcp => "tcp",
        Proto::Icmp if a.src.or(a.dst).is_some_and(|x| x.is_ipv6()) => "icmpv6",
        Proto::Icmp => "icmp",
    });
    let (src, dst) = (a.src.map(|x| x.to_string()), a.dst.map(|x| x.to_string()));
    let (sport, dport) = (a.sport.map(|x| x.to_string()), a.dport.map(|x| x.to_string()));
    for (k, v) in [("proto", proto.map(str::to_string)), ("src", src), ("dst", dst), ("sport", sport), ("dport", dport)] {
        if let Some(v) = v {
            arm.push_str(&format!(" {k}={v}"));
        }
    }
    let json = a.format == super::control::Format::Json;
    let (got, lost) = super::tap::follow(control, &arm, a.count, std::time::Duration::from_secs(a.timeout), |e| {
        if json {
            super::out(e);
        } else {
            e["lines"].as_array().into_iter().flatten().filter_map(|l| l.as_str()).for_each(super::out);
        }
        Ok(())
    })?;
    if got < a.count {
        return Err(format!(
            "{got} of {} packets traced before the timeout{}",
            a.count,
            if lost > 0 { format!(", {lost} lost") } else { String::new() }
        ));
    }
    Ok(())
}
