#!/usr/bin/env bash
# The main job on its built-in defaults: builds hark and runs it on the bundled demo clip.
# (Today: the log-mel features the caption model will read; live captioning comes next.)
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO"

apt_install build-essential pkg-config libasound2-dev curl
ensure_rust
cargo build --release --quiet -p hark
out="${1:-$HARK_CACHE/demo.npy}"
"$CARGO_TARGET_DIR/release/hark" features daemon/assets/demo.wav --out "$out"
