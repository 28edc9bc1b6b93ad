#!/usr/bin/env bash
# The main job on its built-in defaults: builds hark and runs the daemon (`hark run`) on the
# bundled demo clip with the shipped default model, printing captions as JSON lines.
# Arguments are passed to `hark run` (e.g. `--broker localhost`, `--microphone default`).
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO"

apt_install build-essential pkg-config libasound2-dev curl
ensure_rust
# The same build as scripts/test.sh, so one cache serves both (dependencies are optimised
# even in this profile: see Cargo.toml).
cargo build --workspace --all-targets --quiet
if [ $# -eq 0 ] || [[ "$1" == -* && "$*" != *--microphone* && "$*" != *--stdin* && "$*" != *--file* ]]; then
  set -- --file daemon/assets/demo.wav "$@"
fi
exec "$CARGO_TARGET_DIR/debug/hark" run "$@"
