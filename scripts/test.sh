#!/usr/bin/env bash
# Runs every test of hark: installs what it needs (Debian packages, Rust, the Python venv),
# checks the librosa reference files, runs the trainer's tests, then the Rust workspace tests.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO"

apt_install build-essential pkg-config libasound2-dev espeak-ng sox curl default-jre-headless
ensure_rust
"$REPO/scripts/setup-python.sh"
venv="$HARK_CACHE/venv"

echo "== formatting"
cargo fmt --all --check

echo "== dsp reference files against librosa"
"$venv/bin/python" dsp/scripts/make_reference.py --check

if [ -d export/tests ]; then
  echo "== trainer tests (pytest)"
  "$venv/bin/python" -m pytest -q export/tests
fi

echo "== Rust tests"
# --all-targets: the binaries get the same dev-dependency feature set as the tests, so
# tract is compiled once for both.
cargo build --workspace --all-targets --quiet
cargo test --workspace
