#!/usr/bin/env bash
# Throughput of the floating-IP path against the Linux kernel doing the same job (issue 5 item 6).
#
#   bench/throughput.sh [SECONDS]     as root; default 5 s per run
#
# On the lab of tools/netns-lab.sh, an external host blasts 64-byte UDP frames (64 flows) at vm1's
# floating IP 203.0.113.10 for SECONDS, and vm1 counts what arrives:
#   (a) edgepath (release build) bound to the lab's interfaces: uplink → edge router → r1 (float
#       DNAT) → vm1;
#   (b) the Linux kernel doing the same job: a router namespace with ip_forward, nftables DNAT and
#       SNAT for the floating IP, and conntrack;
#   (c) Open vSwitch's userspace datapath (datapath_type=netdev) with ct(nat) flows for the
#       floating IP, with AF_PACKET ports and, where its build has them, AF_XDP ports, when
#       openvswitch-switch is installed (skipped otherwise).
# edgepath runs with one worker and with one per core (or the counts in EDGEPATH_THREADS, e.g.
# EDGEPATH_THREADS="1 4 8"), receiving from TPACKET_V3 rings (or the modes in EDGEPATH_RX, e.g.
# EDGEPATH_RX="ring mmsg"), and through AF_XDP sockets (`edgepath-xdp`, `run --io xdp`; leave it
# out with EDGEPATH_XDP=0). It prints frames sent, delivered, packets per second delivered, loss,
# the CPU time the contender spent per delivered packet, and the ratios of the best edgepath run
# to the others. The generator offers what it can, the same in every run: on 2 vCPUs it caps
# the packets per second, so CPU per packet is the figure that separates the contenders there.
# CPU is the contender's process (all its threads: edgepath, ovs-vswitchd) over the blast; for
# the kernel it is the forwarding CPUs' user, system, irq and softirq time, so only with PIN=1
# (without it the generator's CPU is in there too, and it is left out).
#
# With PIN=1 (and two CPUs or more), the generator and the sink run on CPU 0 and the contender on
# the others: edgepath and ovs-vswitchd under taskset, the kernel's forwarding moved there by RPS
# on the router's ingress queue — the same CPUs for the forwarding work in every run.
set -euo pipefail
secs=${1:-5}
cpus=$(nproc)
pin=${PIN:-0}
[ "$cpus" -lt 2 ] && pin=0
gen=()
dp=()
if [ "$pin" = 1 ]; then
    gen=(taskset -c 0)
    dp=(taskset -c "1-$((cpus - 1))")
fi
here=$(cd "$(dirname "$0")/.." && pwd)
tag=tp$$
tag=${tag:0:8}
dir=$(mktemp -d)
lab="$here/tools/netns-lab.sh"
cd "$here"
# The kernel contender needs nftables (Debian's nftables package).
command -v nft >/dev/null || { apt-get update -qq && apt-get install -y -qq nftables; }
cargo build -q --release -p edgepath -p edgepath-bench --bin edgepath --bin blast
edgepath=$here/target/release/edgepath
blast=$here/target/release/blast

ovs() { ovs-vsctl --db="unix:$dir/ovs/db.sock" "$@"; }

cleanup() {
    [ -n "${ep:-}" ] && kill "$ep" 2>/dev/null || true
    [ -f "$dir/ovs/vswitchd.pid" ] && kill "$(cat "$dir/ovs/vswitchd.pid")" 2>/dev/null || true
    [ -f "$dir/ovs/ovsdb.pid" ] && kill "$(cat "$dir/ovs/ovsdb.pid")" 2>/dev/null || true
    ip netns del "$tag-rt" 2>/dev/null || true
    "$lab" down "$tag" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

hz=$(getconf CLK_TCK)
# cpu_ticks PID: the process's CPU time so far (user + system, all threads), in clock ticks;
# cpu_ticks kernel: the forwarding CPUs' (1 and up, PIN=1) user, system, irq and softirq time.
cpu_ticks() {
    if [ "$1" = kernel ]; then
        awk '/^cpu[0-9]/ { if (substr($1, 4) + 0 >= 1) s += $2 + $3 + $4 + $7 + $8 } END { print s + 0 }' /proc/stat
    else
        awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
    fi
}

# measure DST_MAC WHO: blast from the external host to the floating IP, WHO (a PID, or kernel)
# forwarding; prints "sent delivered cpu-ticks".
measure() {
    ip netns exec "$tag-vm1" "${gen[@]}" "$blast" sink eth0 "$((secs + 2))" >"$dir/sink" &
    local sink=$!
    sleep 0.5
    local sent t0 t1
    t0=$(cpu_ticks "$2")
    sent=$(ip netns exec "$tag-ext" "${gen[@]}" "$blast" send eth0 02:aa:00:00:00:01 "$1" 192.0.2.50 203.0.113.10 "$secs")
    t1=$(cpu_ticks "$2")
    wait "$sink"
    echo "$sent $(cat "$dir/sink") $((t1 - t0))"
}

# report NAME SENT DELIVERED CPU-TICKS (CPU "-": not measured)
report() {
    local name=$1 sent=$2 got=$3 cpu=${4:--}
    awk -v n="$name" -v s="$sent" -v g="$got" -v t="$secs" -v c="$cpu" -v hz="$hz" \
        'BEGIN { printf "%-18s sent %10d  delivered %10d  %8.3f Mpps delivered  loss %5.1f %%", n, s, g, g / t / 1e6, (s ? 100 * (s - g) / s : 0);
                 if (c != "-" && g > 0) printf "  CPU %7.1f ns per packet", c / hz * 1e9 / g; printf "\n" }'
}

# (a) edgepath
"$lab" up "$tag" "$dir" >/dev/null
# vm1 drops the blasted datagrams early (its sink has counted them on its packet tap first), so
# neither contender pays for vm1's stack answering each with an ICMP port unreachable.
ip netns exec "$tag-vm1" nft -f - <<'EOF'
table ip sink {
    chain pre {
        type filter hook prerouting priority raw;
        udp dport 9 drop
    }
}
EOF
ep_best=0
ep_lines=()
modes=${EDGEPATH_RX:-ring}
[ "${EDGEPATH_XDP:-1}" = 1 ] && modes="$modes xdp"
for rx in $modes; do
    most=$cpus
    [ "$pin" = 1 ] && most=$((cpus - 1))
    for n in ${EDGEPATH_THREADS:-$(printf '%s\n' 1 "$most" | sort -un)}; do
        io=(--rx "$rx")
        [ "$rx" = xdp ] && io=(--io xdp)
        "${dp[@]}" "$edgepath" run --snapshot "$dir/snapshot.json" --host host-a --control "$dir/a.sock" --threads "$n" "${io[@]}" \
            >"$dir/ep.out" 2>"$dir/ep.log" &
        ep=$!
        sleep 1
        read -r ep_sent ep_got ep_cpu < <(measure fa:16:3e:bb:00:02 "$ep")
        kill "$ep"
        wait "$ep" 2>/dev/null || true
        ep=
        grep -q "no TPACKET_V3 ring" "$dir/ep.log" && echo "edgepath: $(grep -m1 'no TPACKET_V3 ring' "$dir/ep.log")"
        grep -q "AF_XDP unavailable" "$dir/ep.log" && echo "edgepath: $(grep -m1 'AF_XDP unavailable' "$dir/ep.log")"
        ep_lines+=("$(report "edgepath-$rx-${n}w" "$ep_sent" "$ep_got" "$ep_cpu")")
        [ "$ep_got" -gt "$ep_best" ] && ep_best=$ep_got
    done
done

# (c) Open vSwitch userspace, on the same interfaces: ct(nat) for the floating IP both ways; one
# run per port type its build offers (AF_PACKET: "system"; AF_XDP: "afxdp").
ovs_lines=()
ovs_best=0
if command -v ovs-vswitchd >/dev/null 2>&1; then
    mkdir -p "$dir/ovs"
    export OVS_RUNDIR="$dir/ovs" OVS_DBDIR="$dir/ovs" OVS_LOGDIR="$dir/ovs"
    ovsdb-tool create "$dir/ovs/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    ovsdb-server "$dir/ovs/conf.db" --remote="punix:$dir/ovs/db.sock" --pidfile="$dir/ovs/ovsdb.pid" --detach --log-file="$dir/ovs/ovsdb.log"
    ovs --no-wait init
    "${dp[@]}" ovs-vswitchd "unix:$dir/ovs/db.sock" --pidfile="$dir/ovs/vswitchd.pid" --detach --log-file="$dir/ovs/vswitchd.log"
    types=system
    ovs get Open_vSwitch . iface_types | grep -q afxdp && types="system afxdp"
    ip -n "$tag-vm1" neigh replace 10.0.0.1 lladdr fa:16:3e:aa:00:01 dev eth0
    for type in $types; do
        ovs add-br "ep$$" -- set bridge "ep$$" datapath_type=netdev
        ovs add-port "ep$$" "${tag}up" -- set interface "${tag}up" type="$type" \
            -- add-port "ep$$" "${tag}v1" -- set interface "${tag}v1" type="$type"
        up=$(ovs get interface "${tag}up" ofport)
        v1=$(ovs get interface "${tag}v1" ofport)
        if [ "$up" -lt 1 ] || [ "$v1" -lt 1 ]; then
            ovs_lines+=("ovs-$type   ports could not be added: $(ovs get interface "${tag}up" error)")
            ovs del-br "ep$$"
            continue
        fi
        printf '%s\n' \
            "table=0,priority=10,in_port=$up,ip,nw_dst=203.0.113.10,actions=ct(commit,zone=1,nat(dst=10.0.0.3)),mod_dl_src:fa:16:3e:aa:00:01,mod_dl_dst:fa:16:3e:00:00:03,dec_ttl,output:$v1" \
            "table=0,priority=10,in_port=$v1,ip,nw_src=10.0.0.3,actions=ct(commit,zone=1,nat(src=203.0.113.10)),mod_dl_src:fa:16:3e:bb:00:02,mod_dl_dst:02:aa:00:00:00:01,dec_ttl,output:$up" \
            | ovs-ofctl add-flows "ep$$" -
        sleep 1
        read -r ovs_sent ovs_got ovs_cpu < <(measure fa:16:3e:bb:00:02 "$(cat "$dir/ovs/vswitchd.pid")")
        ovs_lines+=("$(report "ovs-$type" "$ovs_sent" "$ovs_got" "$ovs_cpu")")
        [ "$ovs_got" -gt "$ovs_best" ] && ovs_best=$ovs_got
        ovs del-br "ep$$"
        sleep 0.5
    done
    kill "$(cat "$dir/ovs/vswitchd.pid")" "$(cat "$dir/ovs/ovsdb.pid")" 2>/dev/null || true
    sleep 0.5
fi

# (b) the kernel: the same namespaces, the interfaces edgepath bound moved into a router namespace.
ip netns add "$tag-rt"
ip link set "${tag}v1" netns "$tag-rt"
ip link set "${tag}up" netns "$tag-rt"
ip -n "$tag-rt" link set lo up
ip -n "$tag-rt" addr add 10.0.0.1/24 dev "${tag}v1"
ip -n "$tag-rt" addr add 198.51.100.2/24 dev "${tag}up"
ip -n "$tag-rt" link set "${tag}v1" up
ip -n "$tag-rt" link set "${tag}up" up
ip netns exec "$tag-rt" sysctl -qw net.ipv4.ip_forward=1
if [ "$pin" = 1 ]; then
    # Forward on the contender's CPUs: RPS steers the router's ingress there.
    mask=$(printf '%x' $(( (1 << cpus) - 2 )))
    ip netns exec "$tag-rt" sh -c "echo $mask > /sys/class/net/${tag}up/queues/rx-0/rps_cpus"
fi
ip netns exec "$tag-rt" nft -f - <<'EOF'
table ip nat {
    chain prerouting {
        type nat hook prerouting priority dstnat;
        ip daddr 203.0.113.10 dnat to 10.0.0.3
    }
    chain postrouting {
        type nat hook postrouting priority srcnat;
        ip saddr 10.0.0.3 snat to 203.0.113.10
    }
}
EOF
ip -n "$tag-vm1" neigh replace 10.0.0.1 lladdr "$(ip -n "$tag-rt" -o link show "${tag}v1" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)" dev eth0
rt_mac=$(ip -n "$tag-rt" -o link show "${tag}up" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
ip -n "$tag-rt" neigh replace 10.0.0.3 lladdr fa:16:3e:00:00:03 dev "${tag}v1"
read -r k_sent k_got k_cpu < <(measure "$rt_mac" kernel)
[ "$pin" = 1 ] || k_cpu=-

echo "floating-IP path, 64-byte UDP, 64 flows, $secs s per run, $cpus CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))$([ "$pin" = 1 ] && echo ", generator and sink on CPU 0, contenders on CPUs 1-$((cpus - 1))")"
printf '%s\n' "${ep_lines[@]}"
report kernel "$k_sent" "$k_got" "$k_cpu"
if [ ${#ovs_lines[@]} -gt 0 ]; then
    printf '%s\n' "${ovs_lines[@]}"
else
    echo "ovs-netdev skipped: openvswitch-switch is not installed"
fi
awk -v a="$ep_best" -v b="$k_got" 'BEGIN { if (b) printf "edgepath (best) / kernel: %.2f\n", a / b }'
awk -v a="$ep_best" -v b="$ovs_best" 'BEGIN { if (b) printf "edgepath (best) / ovs (best): %.2f\n", a / b }'
