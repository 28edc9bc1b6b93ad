# Shared by the scripts: where builds and the Python venv are cached between runs.
# Source it; override HARK_CACHE or CARGO_TARGET_DIR to put them elsewhere.
export HARK_CACHE="${HARK_CACHE:-$HOME/.cache/hark}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HARK_CACHE/target}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO

# Runs a command as root (directly, or through sudo when not root).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian/Ubuntu packages given as arguments, if any is missing.
apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Reports a check that cannot run here; under CI (CI set, as .ci/run does) that is a failure,
# so a CI run never passes by skipping. Listed in $HARK_SKIP_LOG for the run's summary.
skip() {
  if [ -n "${CI:-}" ]; then
    echo "CI: must not be skipped: $*" >&2
    exit 1
  fi
  echo "SKIPPED: $*"
  if [ -n "${HARK_SKIP_LOG:-}" ]; then echo "$*" >> "$HARK_SKIP_LOG"; fi
}

# Makes sure cargo is on PATH (rustup's default location), installing Rust if absent.
ensure_rust() {
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  if ! command -v cargo >/dev/null; then
    echo "Rust not found: installing it with rustup (https://rustup.rs)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal \
      --component rustfmt,clippy
    . "$HOME/.cargo/env"
  fi
  # rustup's minimal profile has neither rustfmt nor clippy, which the test command runs.
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
}
