#!/usr/bin/env bash
# Builds the hark .deb with cargo-deb, installs it on this machine with dpkg, checks what it
# installed (binary, config, model, unit, user), runs the binary as the service's user, then
# purges the package and checks that nothing is left. Needs root. The first run compiles
# cargo-deb and a release build of tract: 10+ minutes on 2 cores.
#
# HARK_DEB_PROFILE=dev packages the test build's binary (target/debug/hark, built first if
# missing) instead: the test command does that to spare CI a second release build of tract
# (scripts/cross-aarch64.sh already makes one); the package and its checks are the same.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO"

apt_install build-essential pkg-config libasound2-dev dpkg-dev adduser systemd
ensure_rust
if ! cargo deb --version 2>/dev/null | grep -q '^cargo-deb 3\.'; then
  # Into $CARGO_HOME/bin, built outside the project's target dir (whose lock it would hold).
  env -u CARGO_TARGET_DIR cargo install cargo-deb --locked --version '^3.8'
fi

# The purge at the end removes the hark user and /etc/hark: refuse to touch a real install.
if dpkg-query -W hark >/dev/null 2>&1 || getent passwd hark >/dev/null || [ -e /usr/bin/hark ]; then
  echo "hark is already installed here (package, user or /usr/bin/hark): not touching it" >&2
  exit 1
fi

fail() {
  echo "check-deb: $*" >&2
  exit 1
}

profile="${HARK_DEB_PROFILE:-release}"
build=()
if [ "$profile" = dev ]; then
  [ -x "$CARGO_TARGET_DIR/debug/hark" ] || cargo build --workspace --all-targets --quiet
  build=(--no-build --fast)
fi
echo "== cargo deb -p hark --profile $profile"
# The last line of cargo deb's output is the path of the package.
deb=$(cargo deb -p hark --profile "$profile" "${build[@]}" | tail -n 1)
[ -f "$deb" ] || fail "cargo deb printed no package path"
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"

echo "== dpkg -i"
dpkg -i "$deb"
/usr/bin/hark --version  # by path: an install in /usr/local/bin (scripts/install.sh) comes first on PATH
summary=$(/usr/bin/hark check-config /etc/hark/hark.toml)
echo "$summary"
grep -q "(/usr/share/hark/model)" <<<"$summary" || fail "the installed hark does not use the installed model"
for profile in /usr/share/hark/firmware-config/*.toml; do
  /usr/bin/hark check-config "$profile" >/dev/null || fail "$profile does not pass check-config"
done
zero=$(/usr/bin/hark check-config /usr/share/hark/firmware-config/raspberry-pi-zero-2w.toml)
grep -q "(/usr/share/hark/model-light)" <<<"$zero" ||
  fail "the Pi Zero 2 W profile does not use the installed light model"
echo "package: $(du -k "$deb" | cut -f1) KiB (both models inside)"

getent passwd hark | grep -q ':/nonexistent:/usr/sbin/nologin$' || fail "no system user hark"
id -nG hark | grep -qw audio || fail "hark is not in group audio"
dpkg-query -W -f='${Conffiles}\n' hark | grep -q '^ /etc/hark/hark.toml ' ||
  fail "/etc/hark/hark.toml is not a conffile"
unit=/usr/lib/systemd/system/hark.service
[ -f "$unit" ] || fail "no $unit"
[ -L /etc/systemd/system/multi-user.target.wants/hark.service ] || fail "hark.service not enabled"
systemd-analyze verify "$unit"
systemd-analyze security --offline=true --threshold=20 "$unit" | tail -n 1

# The service's user can read the config and the model: caption the demo clip as it.
demo=$(mktemp -d)
trap 'rm -rf "$demo"' EXIT
chmod 755 "$demo"
cp daemon/assets/demo.wav "$demo/"
captions=$(runuser -u hark -- /usr/bin/hark run -c /etc/hark/hark.toml --file "$demo/demo.wav")
grep -q '"text"' <<<"$captions" || fail "hark run as user hark captioned nothing"

echo "== dpkg --purge"
dpkg --purge hark
if dpkg-query -W -f='${Status}' hark 2>/dev/null | grep -q installed; then fail "hark still installed"; fi
! getent passwd hark >/dev/null || fail "user hark left behind"
! getent group hark >/dev/null || fail "group hark left behind"
for path in /usr/bin/hark /etc/hark /usr/share/hark /usr/share/doc/hark "$unit" \
  /etc/systemd/system/multi-user.target.wants/hark.service \
  /var/lib/systemd/deb-systemd-helper-enabled/hark.service.dsh-also; do
  [ ! -e "$path" ] && [ ! -L "$path" ] || fail "$path left behind"
done
echo "check-deb: ok ($deb, ${SECONDS}s)"
