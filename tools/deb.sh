#!/usr/bin/env bash
# tools/deb.sh — the Debian package (issue 16): the release binary built, its man pages and shell
# completions made from its own clap definitions (`edgepath generate`), then `cargo deb -p
# edgepath` packs them with the systemd unit and its defaults (tools/debian/). Installs cargo-deb
# when missing. Prints the package's path.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release -q -p edgepath
rm -rf target/release/assets
target/release/edgepath generate target/release/assets
cargo deb -p edgepath --no-build -q
ls target/debian/edgepath_*.deb | tail -1
