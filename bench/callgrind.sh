#!/usr/bin/env bash
# bench/callgrind.sh [--before REV] [--batch] [N] [FLOW...] — instructions per cached hit, counted by
# callgrind (stable where wall-clock time is not). Runs `bench/examples/hitloop` (one cached flow
# in a plain loop: `fip`, the FIP-DNAT flow, by default; `routed-v4`, `routed-v6`, `fip64-6to4`,
# `fip64-4to6`, `encap`, `decap`) for N and 2N packets (default N = 200000) and prints the
# difference divided by N, so start-up and the first (simulated) packet cancel out. With --batch,
# in 64-frame batches through the vector path (N a multiple of 64; trees before it have no
# batches), and also the share of `process_frames` alone (without refilling the batch). With
# --before REV, the same for the tree at REV (a git worktree under target/), in the same run;
# trees before the IPv6 work know `fip` only, and `encap` and `decap` are newer.
set -euo pipefail
cd "$(dirname "$0")/.."
before=""
if [ "${1:-}" = "--before" ]; then
    before=$2
    shift 2
fi
mode=""
if [ "${1:-}" = "--batch" ]; then
    mode=batch
    shift
fi
n=${1:-200000}
shift || true
flows=("$@")
[ ${#flows[@]} -gt 0 ] || flows=(fip)
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }

trees=("after=$PWD")
if [ -n "$before" ]; then
    wt=target/callgrind-before
    [ -d "$wt" ] || git worktree add --detach "$wt" "$before" >/dev/null
    git -C "$wt" checkout -q --detach "$before"
    trees=("before=$PWD/$wt" "${trees[@]}")
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for t in "${trees[@]}"; do
    name=${t%%=*}
    dir=${t#*=}
    (cd "$dir" && cargo build --release -q -p edgepath-bench --example hitloop)
    # count N FLOW [ONLY]: instructions of the whole run, or with ONLY (a function name
    # pattern) of that function and what it calls alone.
    count() {
        valgrind --tool=callgrind ${3:+--toggle-collect="$3"} --callgrind-out-file="$work/cg.out" \
            "$dir/target/release/examples/hitloop" "$1" "$2" $mode >/dev/null 2>"$work/cg.err"
        awk '/^summary:/ {print $2}' "$work/cg.out"
    }
    for flow in "${flows[@]}"; do
        a=$(count "$n" "$flow")
        b=$(count $((2 * n)) "$flow")
        printf '%-8s %-10s %8.1f instructions per hit (%s packets: %s, %s: %s)\n' "$name" "$flow" \
            "$(awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN {print (b - a) / n}')" "$n" "$a" $((2 * n)) "$b"
        # Batches: also the datapath's share alone, without the loop refilling the batch (what
        # a receive call or the NIC would have written).
        if [ "$mode" = batch ]; then
            a=$(count "$n" "$flow" '*process_frames*')
            b=$(count $((2 * n)) "$flow" '*process_frames*')
            if [ "${a:-0}" != 0 ]; then
                printf '%-8s %-10s %8.1f of them in process_frames\n' "$name" "$flow" "$(awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN {print (b - a) / n}')"
            fi
        fi
    done
done
