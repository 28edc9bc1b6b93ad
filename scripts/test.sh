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
cargo build --workspace --bins --quiet
cargo test --workspace
