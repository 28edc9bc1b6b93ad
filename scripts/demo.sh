#!/usr/bin/env bash
# The main job on its built-in defaults: builds hark and captions the bundled demo clip with
# the shipped default model (daemon/assets/model). Live microphone captioning comes next.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO"

apt_install build-essential pkg-config libasound2-dev curl
ensure_rust
cargo build --release --quiet -p hark
"$CARGO_TARGET_DIR/release/hark" caption --json --alternatives 2 daemon/assets/demo.wav
