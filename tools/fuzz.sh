#!/usr/bin/env bash
# tools/fuzz.sh [SECONDS] [TARGET...] — the cargo-fuzz targets of fuzz/ (nightly Rust):
#   parse     the header parser on any bytes;
#   datapath  the whole datapath fed frames against each scenario's snapshot, cache on and off
#             and through the vector path (batches, hits rewritten in place),
#             checking that both send the same bytes, that what leaves has valid checksums, and
#             that every input is forwarded, handled or dropped once;
#   snapshot  the snapshot loader and compiler on any text.
# Seeds the corpora (fuzz/corpus, or $FUZZ_CORPUS) from pcaps/ and ../shared/pcaps, runs the
# inputs that once failed (fuzz/regressions) as tests, then each target for SECONDS (default 60)
# and prints its executions. A failure leaves its input in fuzz/artifacts/<target>/ and exits
# non-zero. `.ci/run` runs it for a minute per target. Targets are built with debug assertions
# (-a) and AddressSanitizer; FUZZ_SANITIZER=none leaves ASan out (8x faster: long campaigns).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(parse datapath snapshot)
corpus=${FUZZ_CORPUS:-fuzz/corpus}
flags=(-O -a -s "${FUZZ_SANITIZER:-address}")

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo test -q --manifest-path fuzz/Cargo.toml --locked
cargo run -q --manifest-path fuzz/Cargo.toml --locked --bin seed -- "$corpus"
# Each target alone: building every binary at once links `seed` with the coverage
# instrumentation too, which fails without a sanitizer runtime (FUZZ_SANITIZER=none).
for t in "${targets[@]}"; do
    cargo +nightly fuzz build "${flags[@]}" "$t"
done
for t in "${targets[@]}"; do
    log=$(mktemp)
    echo "== fuzz $t for ${secs}s"
    if ! cargo +nightly fuzz run "${flags[@]}" "$t" "$corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz $t failed; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E 'stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb' "$log" | sed "s/^/  $t /"
    rm -f "$log"
done
