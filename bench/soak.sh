#!/usr/bin/env bash
# bench/soak.sh [SECONDS] [OUT_DIR] — a soak test (issue 10; not in CI): edgepath on the namespace
# lab of tools/netns-lab.sh for SECONDS (default 600) under
#   - steady traffic: vm2 pings the external host through default SNAT, 20 a second;
#   - a connection flood: vm2 sends UDP to new remote ports, about 2000 a second (new mappings);
#   - a MAC flood: VXLAN from host-b's side of the underlay with new inner MACs, about 2000 a second;
#   - a reload every 5 s (the snapshot's version bumped);
#   - vm1's tap deleted and created again every 7 s, as Nova does;
# with table bounds that the floods reach (--max-connections 50000, --max-macs-per-network
# 20000). Every second it records edgepath's RSS and open descriptors in OUT_DIR/soak.csv, and at
# the end says whether they stayed flat once the tables filled: the last minute against the
# minute at half time (at these rates the flow caches, the last to fill, are full by minute 5 of
# 10), RSS within 5 % + 4 MiB and descriptors within 2. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
out=${2:-$(mktemp -d)}
mkdir -p "$out"
[ "$(id -u)" = 0 ] || { echo "soak: needs root (network namespaces, veth, raw sockets)" >&2; exit 2; }
for c in ip ping python3; do
    command -v "$c" >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2 iputils-ping python3; break; }
done
cargo build --release -q -p edgepath
exe=$PWD/target/release/edgepath
tag=soak$$
tag=${tag:0:8}
lab=$out/lab
tools/netns-lab.sh up "$tag" "$lab" >/dev/null
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "${dp:-}" ] && kill "$dp" 2>/dev/null || true
    tools/netns-lab.sh down "$tag" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$exe" run --snapshot "$lab/snapshot.json" --host host-a --control "$lab/a.sock" --threads 2 \
    --max-connections 50000 --max-macs-per-network 20000 >"$out/run.stdout" 2>"$out/run.log" &
dp=$!
for _ in $(seq 50); do "$exe" status --control "$lab/a.sock" >/dev/null 2>&1 && break; sleep 0.1; done

ip netns exec "$tag-vm2" ping -q -i 0.05 -w "$secs" 192.0.2.50 >"$out/ping.txt" 2>&1 &
pids+=($!)
ip netns exec "$tag-vm2" python3 - "$secs" >/dev/null 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end, n = time.time() + float(sys.argv[1]), 0
while time.time() < end:
    for _ in range(100):
        n += 1
        s.sendto(b"f", ("192.0.2.50", 1024 + n % 60000))
    time.sleep(0.05)
PY
pids+=($!)
ua_mac=$(cat "/sys/class/net/${tag}ua/address")
python3 - "${tag}ub" "$ua_mac" "$secs" >/dev/null 2>&1 <<'PY' &
import socket, struct, sys, time
ifname, dst, secs = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((ifname, 0))
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t & 0xffff) + (t >> 16); return ~((t & 0xffff) + (t >> 16)) & 0xffff
def ip4(src, dst, proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, bytes(src), bytes(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
end, n = time.time() + secs, 0
while time.time() < end:
    for _ in range(100):
        n += 1
        inner_mac = b"\x02\x0b" + struct.pack("!I", n)
        inner = b"\xff" * 6 + inner_mac + b"\x08\x00" + ip4([10, 0, 0, 50], [10, 0, 0, 255], 17, struct.pack("!HHHH", 9, 9, 9, 0) + b"x")
        vx = struct.pack("!BxxxI", 8, 100 << 8) + inner
        udp = struct.pack("!HHHH", 40000 + n % 1000, 4789, 8 + len(vx), 0) + vx
        s.send(dst + b"\x02\x00\x00\x00\x0b\x01\x08\x00" + ip4([192, 168, 50, 2], [192, 168, 50, 1], 17, udp))
    time.sleep(0.05)
PY
pids+=($!)
(
    v=1
    while sleep 5; do
        v=$((v + 1))
        python3 -c 'import json,sys; p=sys.argv[1]; s=json.load(open(p)); s["version"]=int(sys.argv[2]); json.dump(s, open(p + ".tmp","w")); import os; os.rename(p + ".tmp", p)' "$lab/snapshot.json" "$v"
    done
) &
pids+=($!)
(
    while sleep 7; do
        tools/netns-lab.sh unplug "$tag" vm1 >/dev/null 2>&1 || true
        sleep 1
        tools/netns-lab.sh plug "$tag" vm1 >/dev/null 2>&1 || true
    done
) &
pids+=($!)

echo "t,rss_kib,fds" >"$out/soak.csv"
for t in $(seq 1 "$secs"); do
    sleep 1
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$dp/status" 2>/dev/null || echo 0)
    fds=$(ls "/proc/$dp/fd" 2>/dev/null | wc -l)
    echo "$t,$rss,$fds" >>"$out/soak.csv"
done
"$exe" stats --control "$lab/a.sock" >"$out/stats.txt" 2>&1 || true
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
kill -TERM "$dp"
wait "$dp" && clean=yes || clean=no
dp=""
python3 - "$out/soak.csv" "$clean" "$secs" <<'PY'
import csv, statistics, sys
rows = [(int(r["t"]), int(r["rss_kib"]), int(r["fds"])) for r in csv.DictReader(open(sys.argv[1]))]
secs = int(sys.argv[3])
half = secs // 2
early = [r for r in rows if half - 60 < r[0] <= half] or rows[: max(1, len(rows) // 2)]
late = rows[-60:]
med = lambda xs: statistics.median(xs)
e_rss, l_rss = med([r[1] for r in early]), med([r[1] for r in late])
e_fd, l_fd = max(r[2] for r in early), max(r[2] for r in late)
print(f"samples {len(rows)}; RSS min {min(r[1] for r in rows)} max {max(r[1] for r in rows)} KiB; fds min {min(r[2] for r in rows)} max {max(r[2] for r in rows)}")
print(f"RSS median {e_rss:.0f} KiB (the minute before {half} s) -> {l_rss:.0f} KiB (last minute); fds max {e_fd} -> {l_fd}")
flat = l_rss <= e_rss * 1.05 + 4096 and l_fd <= e_fd + 2
print("flat" if flat else "GREW", "; stopped cleanly:", sys.argv[2])
sys.exit(0 if flat and sys.argv[2] == "yes" else 1)
PY
grep -E 'packets transmitted' "$out/ping.txt" || true
grep -E '^table|reload|snapshot version' "$out/stats.txt" | head -8 || true
echo "reloads activated: $(grep -c 'snapshot activated' "$out/run.log"); taps bound: $(grep -c 'interface bound' "$out/run.log"); output in $out"
