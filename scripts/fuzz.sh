#!/usr/bin/env bash
# Coverage-guided fuzzing of hark's input parsers with cargo-fuzz (libFuzzer + AddressSanitizer,
# nightly Rust): the targets of daemon/src/fuzz/ built by daemon/fuzz/. Seeds are read from
# daemon/fuzz/corpus/<target>/ (left untouched); what libFuzzer learns goes to
# $CARGO_TARGET_DIR/fuzz-corpus/<target>/ and a crashing input to daemon/fuzz/artifacts/<target>/.
#
#   ./scripts/fuzz.sh [SECONDS] [TARGET ...]     # default: 600 s each, all four targets
#
# Prints one line per target: inputs run, corpus size, coverage and the verdict.
set -euo pipefail
cd "$(dirname "$0")/../daemon"
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(command config manifest audio)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked
work=${CARGO_TARGET_DIR:-$PWD/fuzz/target}/fuzz-corpus
status=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  log=$work/$t.log
  if cargo +nightly fuzz run "$t" "$work/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    verdict="0 crashes"
  else
    verdict="FAILED (see $log; input in daemon/fuzz/artifacts/$t/)"
    status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
  echo "fuzz $t: $runs inputs in $seconds s, corpus $(ls "$work/$t" | wc -l) files, coverage $cov edges, $verdict"
done
exit $status
