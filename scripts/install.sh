#!/usr/bin/env bash
# Installs the `hark` command from this checkout: the Debian packages a build needs, Rust (with
# rustup, if cargo is missing), a release build, then PREFIX/bin/hark with both shipped models
# in PREFIX/share/hark, where hark looks for its default model first. PREFIX is /usr/local as
# root and ~/.local otherwise (Debian's login shells put ~/.local/bin on PATH once it exists).
# Running it again upgrades. For the systemd service, see docs/DEPLOY.md.
#
#   ./scripts/install.sh [PREFIX]
#
# HARK_PROFILE=dev installs the test build instead (the test command does, to save a release
# build of tract: same code, only hark's own crates unoptimised).
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO"

if [ "$(id -u)" = 0 ]; then prefix=${1:-/usr/local}; else prefix=${1:-$HOME/.local}; fi
profile=${HARK_PROFILE:-release}
apt_install build-essential pkg-config libasound2-dev curl
ensure_rust
cargo build -p hark --bin hark --profile "$profile" --quiet
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")

install -d "$prefix/bin" "$prefix/share/hark"
# Copy, then rename: replacing a running binary in place fails with "text file busy".
install -m 755 "$CARGO_TARGET_DIR/$dir/hark" "$prefix/bin/hark.new"
mv "$prefix/bin/hark.new" "$prefix/bin/hark"
for model in model model-light; do
  rm -rf "$prefix/share/hark/$model"
  install -d "$prefix/share/hark/$model"
  install -m 644 "daemon/assets/$model"/* "$prefix/share/hark/$model/"
done
"$prefix/bin/hark" check-bundle "$prefix/share/hark/model" >/dev/null

echo "installed $("$prefix/bin/hark" --version) in $prefix/bin, its models in $prefix/share/hark"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "$prefix/bin is not on PATH: open a new login shell, or add it to PATH" ;;
esac
