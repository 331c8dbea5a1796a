#!/usr/bin/env bash
# From `snapshot push` to the first frame forwarded with it, through a real etcd (issue 15, SPEC
# §9.1), for clouds of growing size:
#
#   bench/etcd-scale.sh [PORTS...]      as root; default 1000 10000
#
# For each size, a cloud of PORTS ports (bench/src/bin/cloud.rs: PORTS/10 routers, each with a
# network of eight VMs and a gateway with a floating IP, on 100 hosts) is pushed to a fresh etcd
# server and `edgepath run --etcd` follows it as host-0, bound to one VM's veth (vm-0-0, in the
# namespace scale-a). Then a second version adds one port — a new VM on net-0 bound to host-0,
# its veth in the namespace scale-b, which pings vm-0-0 every 2 ms from before the push — and
# the script reports how long `snapshot push` took and when the first answer came, both from
# the moment the push began. The neighbours are static on both sides, so the time is the
# datapath's: the push, etcd's watch, the read of the whole prefix at the version's revision,
# validation, compilation, the swap, the new interface bound, the first frames simulated.
# The validation and compilation alone: `cargo bench -p edgepath-bench --bench control`.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "etcd-scale: needs root (namespaces, veth, raw sockets)" >&2; exit 2; }
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
here=$(cd "$(dirname "$0")/.." && pwd)
command -v etcd >/dev/null || { apt-get update -qq && apt-get install -y -qq etcd-server; }
command -v ping >/dev/null || { apt-get update -qq && apt-get install -y -qq iputils-ping; }
(cd "$here" && cargo build --release -q -p edgepath && cargo build --release -q -p edgepath-bench --bin cloud)
ep=$here/target/release/edgepath
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
peer=$((port + 1))
url=http://127.0.0.1:$port
cleanup() {
    [ -n "${run_pid:-}" ] && kill "$run_pid" 2>/dev/null || true
    [ -n "${etcd_pid:-}" ] && kill "$etcd_pid" 2>/dev/null || true
    ip netns del scale-a 2>/dev/null || true
    ip netns del scale-b 2>/dev/null || true
    ip link del c0-0 2>/dev/null || true
    ip link del scnew 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
etcd --name s --data-dir "$work/etcd" --listen-client-urls "$url" --advertise-client-urls "$url" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "s=http://127.0.0.1:$peer" >"$work/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

# vm-0-0 (10.0.0.16) in scale-a on veth c0-0; the new VM (10.0.0.200) in scale-b on veth scnew.
vm() {
    local ns=$1 root=$2 mac=$3 addr=$4 other=$5 other_mac=$6
    ip netns add "$ns"
    ip link add "$root" type veth peer name "${root}p"
    ip link set "${root}p" netns "$ns" name eth0
    ip netns exec "$ns" ip link set eth0 address "$mac"
    ip netns exec "$ns" ip addr add "$addr/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" ip neigh replace "$other" lladdr "$other_mac" dev eth0 nud permanent
    ip link set "$root" up
}
vm scale-a c0-0 fa:16:3e:00:00:10 10.0.0.16 10.0.0.200 fa:16:3e:00:00:c8
vm scale-b scnew fa:16:3e:00:00:c8 10.0.0.200 10.0.0.16 fa:16:3e:00:00:10

echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
v=0
for n in "${sizes[@]}"; do
    prefix=/scale-$n
    v=$((v + 1))
    "$here/target/release/cloud" "$v" $((n / 10)) 8 100 >"$work/v1.json"
    "$ep" snapshot push "$work/v1.json" --etcd "$url" --prefix "$prefix" >/dev/null
    RUST_LOG=${RUST_LOG:-warn} "$ep" run --etcd "$url" --prefix "$prefix" --host host-0 --control "$work/ctl" --threads 1 >/dev/null 2>"$work/run.log" &
    run_pid=$!
    for _ in $(seq 200); do "$ep" status --control "$work/ctl" 2>/dev/null | grep -q "version $v since" && break; sleep 0.05; done
    # The second version: one port more.
    v=$((v + 1))
    python3 - "$work/v1.json" "$work/v2.json" "$v" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["version"] = int(sys.argv[3])
d["ports"].append({"id": "vm-new", "network_id": "net-0", "device_owner": "compute:nova", "device_id": "instance-new",
                   "mac_address": "fa:16:3e:00:00:c8", "fixed_ips": [{"ip_address": "10.0.0.200"}],
                   "binding:host_id": "host-0", "binding:profile": {"interface_name": "scnew"}})
json.dump(d, open(sys.argv[2], "w"))
EOF
    ip netns exec scale-b ping -D -n -i 0.002 -w 4 10.0.0.16 >"$work/ping.txt" 2>&1 &
    ping_pid=$!
    sleep 0.3
    t0=$(date +%s.%N)
    "$ep" snapshot push "$work/v2.json" --etcd "$url" --prefix "$prefix" >/dev/null
    t1=$(date +%s.%N)
    wait "$ping_pid" || true
    first=$(grep -m1 -o '^\[[0-9.]*\] [0-9]* bytes from' "$work/ping.txt" | sed 's/^\[\([0-9.]*\)\].*/\1/' || true)
    kill "$run_pid" && wait "$run_pid" >/dev/null 2>&1 || true
    run_pid=
    if [ -z "$first" ]; then
        echo "$n ports: no answer within 4 s of the push"
        continue
    fi
    awk -v n="$n" -v t0="$t0" -v t1="$t1" -v f="$first" 'BEGIN {
        printf "%6d ports: snapshot push %5.0f ms; first frame forwarded %5.0f ms after the push began\n", n, (t1 - t0) * 1000, (f - t0) * 1000 }'
    grep -E "activated|version read|bound interface=scnew" "$work/run.log" | tail -3 | cut -c1-220 || true
done
