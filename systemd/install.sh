#!/bin/sh
# Installs hark as a service without the .deb (run as root, from a checkout): the `hark` system
# user (in group audio), /usr/bin/hark, the unit, /etc/hark/hark.toml (an existing one is kept),
# the default model in /usr/share/hark/model and the board profiles in
# /usr/share/hark/firmware-config. Running it again upgrades the binary, unit and model.
#
#   cargo build --release -p hark && sudo systemd/install.sh [PATH/TO/hark]
#
# The binary defaults to the release build in $CARGO_TARGET_DIR (scripts/env.sh).
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/hark/target}/release/hark}
if [ ! -x "$bin" ]; then
  echo "no hark binary at $bin: build it (cargo build --release -p hark) or pass its path" >&2
  exit 1
fi

# useradd rather than adduser: its options are the same on every distribution.
getent passwd hark >/dev/null ||
  useradd --system --user-group --home-dir /nonexistent --no-create-home \
    --shell /usr/sbin/nologin --comment "hark audio captioning" hark
usermod -a -G audio hark

# Copy, then rename: replacing a running binary in place fails with "text file busy".
install -m 755 "$bin" /usr/bin/hark.new && mv /usr/bin/hark.new /usr/bin/hark
# /etc/systemd/system: the place for units installed by hand (a .deb's go to /usr/lib).
install -D -m 644 "$repo/systemd/hark.service" /etc/systemd/system/hark.service
if [ ! -e /etc/hark/hark.toml ]; then
  install -D -m 644 "$repo/daemon/config/hark.toml" /etc/hark/hark.toml
fi
rm -rf /usr/share/hark/model /usr/share/hark/model-light /usr/share/hark/firmware-config
install -d /usr/share/hark/model /usr/share/hark/model-light /usr/share/hark/firmware-config
install -m 644 "$repo"/daemon/assets/model/* /usr/share/hark/model/
install -m 644 "$repo"/daemon/assets/model-light/* /usr/share/hark/model-light/
install -m 644 "$repo"/firmware-config/*.toml /usr/share/hark/firmware-config/

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
/usr/bin/hark check-config /etc/hark/hark.toml
echo "installed; next: edit /etc/hark/hark.toml (docs/DEPLOY.md), then: systemctl enable --now hark"
