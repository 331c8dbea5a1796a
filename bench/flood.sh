#!/usr/bin/env bash
# bench/flood.sh [--before REV] [COUNTS...] — peak memory of edgepath under hostile floods (issue
# 10): for each kind of `bench/src/bin/flood.rs` (firewall-allowed SYNs, default SNAT, VXLAN MAC
# flood) and each count (default 1000000 3000000), replays that many new flows and reports the
# replay's peak RSS (GNU time's maximum resident set) and the tables' fill. With --before REV, the
# same for edgepath built at REV (in a git worktree under target/), in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
before=""
if [ "${1:-}" = "--before" ]; then
    before=$2
    shift 2
fi
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000000 3000000)
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }

cargo build --release -q -p edgepath -p edgepath-bench --bin edgepath --bin flood
bins=("after=$PWD/target/release/edgepath")
if [ -n "$before" ]; then
    wt=target/flood-before
    [ -d "$wt" ] || git worktree add --detach "$wt" "$before" >/dev/null
    git -C "$wt" checkout -q --detach "$before"
    (cd "$wt" && cargo build --release -q -p edgepath)
    bins=("before=$PWD/$wt/target/release/edgepath" "${bins[@]}")
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '%-8s %-8s %10s %12s %9s  %s\n' build kind flows "peak RSS" seconds tables
for kind in fw-syn snat mac; do
    for n in "${counts[@]}"; do
        rm -rf "$work/in" "$work/out"
        target/release/flood "$kind" "$n" "$work"
        for b in "${bins[@]}"; do
            name=${b%%=*}
            exe=${b#*=}
            rm -rf "$work/out"
            out=$(/usr/bin/time -f 'TIME %M %e' "$exe" replay --snapshot "$work/snapshot.json" --host host-a --in "$work/in" \
                --out "$work/out" --threads 1 2>&1)
            read -r rss secs < <(echo "$out" | awk '/^TIME/ {print $2, $3}')
            # Builds before the bounded tables print no table lines.
            fill=$(echo "$out" | { grep -E '^table (connections|macs):' || true; } | sed 's/^table //; s/, fullest.*//' | paste -sd';' -)
            printf '%-8s %-8s %10s %9s MiB %9s  %s\n' "$name" "$kind" "$n" "$((rss / 1024))" "$secs" "${fill:--}"
        done
    done
done
