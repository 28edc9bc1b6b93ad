#!/usr/bin/env bash
# Runs every test of hark: installs what it needs (Debian packages, Rust, the Python venv),
# checks the librosa reference files, runs the trainer's tests, then the Rust workspace tests.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO"

# mosquitto + openssl: the MQTT end-to-end tests run a real broker, with TLS certificates made
# by openssl; libasound2-data: the ALSA config the cpal capture test builds on; systemd: its
# systemd-analyze checks the service unit; espeak-ng speaks for the speech-gate tests and
# strace shows that a run writes no file; sox (with libsox-fmt-mp3) and lame encode the audio
# formats `hark caption` reads.
apt_install build-essential pkg-config libasound2-dev libasound2-data espeak-ng sox libsox-fmt-mp3 lame curl \
  default-jre-headless mosquitto openssl systemd strace
ensure_rust
"$REPO/scripts/setup-python.sh"
venv="$HARK_CACHE/venv"

HARK_SKIP_LOG=$(mktemp)
export HARK_SKIP_LOG
trap 'rm -f "$HARK_SKIP_LOG"' EXIT

echo "== formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== module map: no module cycle in the daemon or the trainer (docs/ARCHITECTURE.md)"
map=$(python3 scripts/module-map.py) || { echo "$map"; exit 1; }
echo "$map" | grep "module cycle"

echo "== dsp's no_std core: on the host and for a bare-metal Cortex-M4F (no std, no allocator)"
cargo build -p hark-dsp --no-default-features --quiet
if rustup target add thumbv7em-none-eabihf >/dev/null 2>&1; then
  cargo build -p hark-dsp --no-default-features --target thumbv7em-none-eabihf --quiet
else
  skip "the thumbv7em-none-eabihf build of dsp: rustup cannot add that target here"
fi

echo "== dsp reference files against librosa"
"$venv/bin/python" dsp/scripts/make_reference.py --check

echo "== build (the trainer's tests run the hark binary too)"
# --all-targets: the binaries get the same dev-dependency feature set as the tests, so
# tract is compiled once for both.
cargo build --workspace --all-targets --quiet
export HARK="$CARGO_TARGET_DIR/debug/hark"

echo "== trainer tests (pytest)"
pytest_log=$(mktemp)
"$venv/bin/python" -m pytest -q -rs export/tests | tee "$pytest_log"
py_skipped=$( (grep -oE '[0-9]+ skipped' "$pytest_log" || true) | tail -1 | cut -d' ' -f1)
rm -f "$pytest_log"

echo "== model fixtures for the Rust end-to-end tests"
# Tiny trained models of every architecture, exported, with PyTorch reference decodes.
# Rebuilt only when the trainer, the front end or the Python pins change.
export HARK_FIXTURES="$HARK_CACHE/fixtures"
key=$(cat export/hark_export/*.py export/requirements.txt dsp/src/*.rs export/dsp-py/src/*.rs | sha256sum | cut -d' ' -f1)
if [ "$(cat "$HARK_FIXTURES/.key" 2>/dev/null)" != "$key" ]; then
  rm -rf "$HARK_FIXTURES" "$HARK_FIXTURES.tmp"
  "$venv/bin/python" -m hark_export.fixtures --out "$HARK_FIXTURES.tmp"
  echo "$key" > "$HARK_FIXTURES.tmp/.key"
  mv "$HARK_FIXTURES.tmp" "$HARK_FIXTURES"
fi

echo "== Rust tests"
cargo test --workspace

echo "== torch backend (--features tch) against tract"
# tch 0.24 binds the libtorch of the venv's torch 2.11 (LIBTORCH_USE_PYTORCH). Its own profile
# (Cargo.toml: unoptimised dependencies, built in minutes) and folder, $CARGO_TARGET_DIR/tch, so
# the default binary above never becomes one that needs libtorch to start.
rm -rf "$HARK_CACHE/target-tch"   # where earlier versions of this script built it
VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1 \
  cargo build -p hark --features tch --profile tch --quiet
tch_bin="$CARGO_TARGET_DIR/tch/hark"
torch_lib=$("$venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
if [ -f "$torch_lib/libtorch_cuda.so" ]; then
  # daemon/build.rs: without it the linker drops libtorch_cuda and a Jetson would get no GPU.
  readelf -d "$tch_bin" | grep -q 'NEEDED.*\[libtorch_cuda.so\]' ||
    { echo "the tch build does not link libtorch_cuda.so" >&2; exit 1; }
fi
# No LD_LIBRARY_PATH: the binary finds libtorch through its rpath.
HARK_BIN="$tch_bin" cargo test --workspace --test tch_parity -- --include-ignored

echo "== Debian package: build, dpkg -i, check, purge"
if [ "$(id -u)" = 0 ] && ! dpkg-query -W hark >/dev/null 2>&1; then
  HARK_DEB_PROFILE=dev ./scripts/check-deb.sh
else
  # It installs and purges a package and the hark user: only on a throw-away root machine.
  skip "the .deb check needs root and a machine without hark installed (run scripts/check-deb.sh)"
fi

echo "== README examples, as printed, in fresh shells (install.sh with the test build)"
HARK_PROFILE=dev ./scripts/readme-examples.sh

echo "== aarch64 cross build, run under qemu"
./scripts/cross-aarch64.sh

# The long mode (HARK_LONG=1): a 30-minute soak and ten minutes per fuzz target.
if [ -n "${HARK_LONG:-}" ]; then
  echo "== long: fuzzing, 10 minutes per target"
  HARK_FUZZ_SECONDS=600 cargo test -q -p hark --lib fuzz_ -- --nocapture --test-threads 1
  echo "== long: a broker down for minutes, a flood of commands"
  cargo test -q -p hark-e2e --test run_mqtt -- --ignored long_ --nocapture
  echo "== long: 30-minute soak"
  ./scripts/soak.sh 30
fi

# Under CI every skip above already failed the run; elsewhere, say how many checks did not run.
script_skipped=$(wc -l < "$HARK_SKIP_LOG")
echo "== skipped tests: $(( ${py_skipped:-0} + script_skipped )) (pytest ${py_skipped:-0}, scripts $script_skipped)"
