#!/usr/bin/env bash
# hark against its Python peer on this machine, in one run: builds the release binary, sets up
# the Python venv and a mosquitto, then prints the tables and writes them into
# docs/PERFORMANCE.md (bench/run.py; the front end's own comparison, bench/frontend.py, is
# printed too). Every performance tool is listed in bench/README.md. Arguments go to
# bench/run.py, e.g.
#   ./scripts/bench.sh --minutes 2 --repeats 1        # a quick look
#   ./scripts/bench.sh --bundle daemon/assets/model --bundle ~/.cache/hark/fixtures/bundles/attention
set -euo pipefail
. "$(dirname "$0")/env.sh"
ensure_rust
apt_install mosquitto time
"$REPO/scripts/setup-python.sh"
venv="$HARK_CACHE/venv"
"$venv/bin/pip" install -q -r "$REPO/bench/requirements.txt"
# The same code on ONNX Runtime (--features ort) is a column of its own; built first, because
# both builds write target/release/hark.
(cd "$REPO" && cargo build --release -q -p hark --bin hark --features ort)
cp "$CARGO_TARGET_DIR/release/hark" "$CARGO_TARGET_DIR/release/hark-ort"
(cd "$REPO" && cargo build --release -q -p hark --bin hark)

echo "== front end: hark dsp vs librosa and torchaudio"
"$venv/bin/python" "$REPO/bench/frontend.py" --seconds 30 --repeats 3
echo
echo "== hark vs the Python peer (bench/run.py)"
"$venv/bin/python" "$REPO/bench/run.py" --hark "$CARGO_TARGET_DIR/release/hark" \
  --hark-ort "$CARGO_TARGET_DIR/release/hark-ort" --out "$REPO/docs/PERFORMANCE.md" "$@"
