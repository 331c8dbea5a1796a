#!/usr/bin/env bash
# bench/callgrind-lines.sh [FLOW] [N] — where a batched hit's instructions go, by source line:
# `hitloop N FLOW batch` built with line tables (in target/prof), counted by callgrind inside
# `process_frames` only, and annotated per line by callgrind_annotate (lines of at least 0.5 %
# of the total). Divide a line's count by N for its instructions per packet.
set -euo pipefail
cd "$(dirname "$0")/.."
flow=${1:-fip}
n=${2:-64000}
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=target/prof \
    cargo build --release -q -p edgepath-bench --example hitloop
out=$(mktemp)
trap 'rm -f "$out"' EXIT
valgrind --tool=callgrind --toggle-collect='*process_frames*' --callgrind-out-file="$out" \
    target/prof/release/examples/hitloop "$n" "$flow" batch >/dev/null 2>&1
echo "packets: $n"
# By file, then every source line of at least N/10 instructions (under its file's name).
callgrind_annotate --auto=no --threshold=100 --show-percs=no "$out" 2>/dev/null | awk '/file:function/ {on=1; next} on && NF' | sed 's/:datapath::worker.*//'
callgrind_annotate --auto=yes --show-percs=no "$out" 2>/dev/null |
    awk -v min=$((n / 10)) '/^-- Auto-annotated source: / {print "== " $4; next}
        { c = $1; gsub(",", "", c) } c ~ /^[0-9]+$/ && c + 0 >= min + 0 { printf "%6.1f  %s\n", c / '"$n"', substr($0, index($0, $2)) }'
