#!/usr/bin/env bash
# A lab to try edgepath by hand (and what its live tests run on): network namespaces with real
# Linux stacks, joined to edgepath by veth pairs whose other ends edgepath binds.
#
#   tools/netns-lab.sh up   [TAG] [DIR]   build it; write DIR/snapshot.json (default ./netns-lab-TAG)
#   tools/netns-lab.sh down [TAG]         remove it
#   tools/netns-lab.sh unplug TAG VM      delete a VM's tap, as Nova does when the VM goes
#   tools/netns-lab.sh plug TAG VM        create it again (its namespace too, for vm3)
#
# TAG (default "lab", at most 8 characters) prefixes every name. The topology is the scenarios'
# (pcaps/gen/src/lib.rs): host-a is an edge and compute host, host-b a second compute host.
#
#   TAG-ext  external host 192.0.2.50 behind the upstream router 198.51.100.1 — on TAGup, the
#            edge router's uplink (host-a)
#   TAG-vm1  vm1 10.0.0.3 with floating IP 203.0.113.10 — on TAGv1 (host-a)
#   TAG-vm2  vm2 10.0.0.4, reaches out through default SNAT as 203.0.113.2 — on TAGv2 (host-a)
#   TAG-vm4  vm4 10.0.0.5 on host-b — on TAGv4 (host-b)
#   TAG-vm3  vm3 10.1.0.3 on net-b: not bound by the snapshot, and not plugged until `plug TAG vm3`
#            (its tap would be TAGv3) — a VM to add by a reload
#   TAGua <-> TAGub   the underlay between host-a (192.168.50.1) and host-b (192.168.50.2)
#
# net-a and net-b are dual-stack: 2001:db8:a::/64 and 2001:db8:b::/64, advertised by r1 (slaac);
# the VMs configure their EUI-64 addresses (vm1 2001:db8:a::f816:3eff:fe00:3, vm2 …fe00:4, vm4
# …fe00:5, vm3 2001:db8:b::f816:3eff:fe00:103) from the RAs.
#
# Then, as root, in two terminals:
#   edgepath run --snapshot DIR/snapshot.json --host host-a --control DIR/host-a.sock
#   edgepath run --snapshot DIR/snapshot.json --host host-b --control DIR/host-b.sock
# and for example:
#   ip netns exec TAG-ext ping -I 192.0.2.50 203.0.113.10     # to vm1 by its floating IP
#   ip netns exec TAG-vm2 ping 192.0.2.50                     # default SNAT
#   ip netns exec TAG-vm1 ping 10.0.0.5                       # VXLAN to host-b
#   edgepath flows --control DIR/host-a.sock
#
# Segmentation offload stays on, as on a real host: TCP super-frames from the namespaces are cut
# into segments by edgepath at ingress.
set -euo pipefail

cmd=${1:-}
tag=${2:-lab}
dir=${3:-./netns-lab-$tag}
here=$(cd "$(dirname "$0")/.." && pwd)

if [ ${#tag} -gt 8 ]; then
    echo "netns-lab: TAG $tag is longer than 8 characters" >&2
    exit 2
fi

# host NS ROOT-IFACE MAC ADDRESS ROUTE... : a namespace (made if missing) with eth0, its other
# end left here.
host() {
    local ns=$1 root=$2 mac=$3 addr=$4
    shift 4
    [ -e "/run/netns/$ns" ] || ip netns add "$ns"
    ip link add "$root" type veth peer name "${root}p"
    ip link set "${root}p" netns "$ns" name eth0
    if [ "$ns" = "$tag-ext" ]; then
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    else
        # VMs speak IPv6 as guests do: SLAAC from edgepath's RAs, with EUI-64 addresses (what
        # the snapshot's fixed IPs say), no temporary addresses.
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.use_tempaddr=0 \
            net.ipv6.conf.default.addr_gen_mode=0 net.ipv6.conf.default.accept_ra=1
    fi
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 address "$mac"
    ip -n "$ns" addr add "$addr" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add "$@"
    sysctl -qw "net.ipv6.conf.$root.disable_ipv6=1" || true
    ip link set "$root" up
}

# plug VM: the VM's namespace and tap.
plug() {
    case "$1" in
        vm1) host "$tag-vm1" "${tag}v1" fa:16:3e:00:00:03 10.0.0.3/24 default via 10.0.0.1 ;;
        vm2) host "$tag-vm2" "${tag}v2" fa:16:3e:00:00:04 10.0.0.4/24 default via 10.0.0.1 ;;
        vm3) host "$tag-vm3" "${tag}v3" fa:16:3e:00:01:03 10.1.0.3/24 default via 10.1.0.1 ;;
        vm4) host "$tag-vm4" "${tag}v4" fa:16:3e:00:00:05 10.0.0.5/24 default via 10.0.0.1 ;;
        *)
            echo "netns-lab: no VM $1 (vm1, vm2, vm3, vm4)" >&2
            exit 2
            ;;
    esac
}

up() {
    plug vm1
    plug vm2
    plug vm4
    host "$tag-ext" "${tag}up" 02:aa:00:00:00:01 198.51.100.1/24 203.0.113.0/24 via 198.51.100.2
    ip -n "$tag-ext" addr add 192.0.2.50/32 dev lo
    ip link add "${tag}ua" type veth peer name "${tag}ub"
    for l in "${tag}ua" "${tag}ub"; do
        sysctl -qw "net.ipv6.conf.$l.disable_ipv6=1" || true
        ip link set "$l" up
    done
    mkdir -p "$dir"
    python3 - "$here/pcaps/vxlan-host-a/snapshot.json" "$dir/snapshot.json" "$tag" <<'EOF'
import json, sys
src, dst, tag = sys.argv[1:4]
s = json.load(open(src))
s["hosts"][0]["underlay_interface"] = tag + "ua"
s["hosts"][1]["underlay_interface"] = tag + "ub"
bind = {"vm1": ("host-a", tag + "v1"), "vm2": ("host-a", tag + "v2"), "edge-up": ("host-a", tag + "up"), "vm4": ("host-b", tag + "v4")}
# Dual stack (SPEC §10): IPv6 subnets with SLAAC on net-a and net-b, r1 at ::1 on both, and
# each VM's EUI-64 address, as Neutron gives a slaac subnet's ports.
def eui64(prefix, mac):
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 2
    return "%s%02x%02x:%02xff:fe%02x:%02x%02x" % (prefix, b[0], b[1], b[2], b[3], b[4], b[5])
v6 = {"net-a": ("sub-a6", "2001:db8:a::"), "net-b": ("sub-b6", "2001:db8:b::")}
for net, (sid, prefix) in v6.items():
    s["subnets"].append({"id": sid, "network_id": net, "cidr": prefix + "/64", "ip_version": 6,
                         "gateway_ip": prefix + "1", "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"})
for p in s["ports"]:
    if p["network_id"] in v6:
        sid, prefix = v6[p["network_id"]]
        addr = prefix + "1" if p["device_owner"] == "network:router_interface" else eui64(prefix, p["mac_address"])
        p["fixed_ips"].append({"subnet_id": sid, "ip_address": addr})
for p in s["ports"]:
    if p["id"] in bind:
        p["binding:host_id"], name = bind[p["id"]]
        p["binding:profile"] = {"interface_name": name}
    else:
        p.pop("binding:profile", None)
json.dump(s, open(dst, "w"), indent=2)
EOF
    echo "netns-lab $tag is up; snapshot: $dir/snapshot.json"
}

down() {
    for l in "${tag}v1" "${tag}v2" "${tag}v3" "${tag}v4" "${tag}up" "${tag}ua"; do
        ip link del "$l" 2>/dev/null || true
    done
    for n in vm1 vm2 vm3 vm4 ext; do
        ip netns del "$tag-$n" 2>/dev/null || true
    done
}

case "$cmd" in
    up) up ;;
    down) down ;;
    plug) plug "${3:?VM}" ;;
    unplug) ip link del "${tag}v${3#vm}" ;;
    *)
        echo "usage: $0 up [TAG] [DIR] | down [TAG] | plug|unplug TAG VM" >&2
        exit 2
        ;;
esac
