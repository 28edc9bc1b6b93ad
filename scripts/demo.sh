#!/usr/bin/env bash
# The main job on its built-in defaults: builds hark and runs the daemon (`hark run`) on the
# bundled demo clip with the shipped default model, printing captions as JSON lines.
# Arguments are passed to `hark run` (e.g. `--broker localhost`, `--microphone default`).
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO"

apt_install build-essential pkg-config libasound2-dev curl
ensure_rust
# Only the binary the demo runs (not the tests and benchmarks a test run adds), in the same
# profile and target dir as scripts/test.sh so its dependencies serve both (they are
# optimised even in this profile: see Cargo.toml).
cargo build -p hark --bin hark --quiet
if [ $# -eq 0 ] || [[ "$1" == -* && "$*" != *--microphone* && "$*" != *--stdin* && "$*" != *--file* ]]; then
  set -- --file daemon/assets/demo.wav "$@"
fi
exec "$CARGO_TARGET_DIR/debug/hark" run "$@"
