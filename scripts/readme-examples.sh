#!/usr/bin/env bash
# Runs README.md's shell examples as printed, each command in a fresh shell that has nothing of
# this one: no CARGO_TARGET_DIR, no venv, the PATH a login shell starts with. The first block
# (the demo and test commands, which call this) is left out; the install block runs first.
#
# What it checks: every command exits 0, or with N when its comment says "exit N"; the live
# block (`hark run`) publishes a caption that its `mosquitto_sub` prints; the captions of the
# table below the Debian recordings' block are what that block prints.
#
# Stand-ins for what a machine of the README's reader has and this one may not (each says so
# in the output): as root without sudo, `sudo` runs the command itself; a broker on
# localhost:1883 as Debian's mosquitto service would run, started when none listens; and the
# microphone `default` is ALSA's file plugin reading the demo clip, looped in real time.
#
#   ./scripts/readme-examples.sh      (HARK_PROFILE=dev installs the test build, see install.sh)
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO"
apt_install sox mosquitto python3

work=$(mktemp -d)
broker_pid=
mic_pid=
cleanup() {
  kill $broker_pid $mic_pid 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# The checkout's top level, linked into a scratch folder: the examples' paths resolve, and what
# they write (downloads, speech.wav) stays out of the checkout.
for f in "$REPO"/*; do ln -s "$f" "$work/"; done
mkdir "$work/.shims"
if [ "$(id -u)" = 0 ]; then
  path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  if ! command -v sudo >/dev/null; then
    echo "stand-in: root without sudo, so sudo runs the command itself"
    printf '#!/bin/sh\nexec "$@"\n' > "$work/.shims/sudo"
    chmod +x "$work/.shims/sudo"
  fi
else
  path=$HOME/.local/bin:/usr/local/bin:/usr/bin:/bin
fi
# The microphone: a FIFO fed with the demo clip, looped in real time (16 kHz s16le mono).
sox daemon/assets/demo.wav -t raw -r 16000 -c 1 -e signed -b 16 "$work/.shims/demo.raw"
mkfifo "$work/.shims/mic.raw"
python3 - "$work/.shims" <<'PY' &
import sys, time
pcm = open(f"{sys.argv[1]}/demo.raw", "rb").read()
try:
    with open(f"{sys.argv[1]}/mic.raw", "wb") as mic:
        chunk, t = 3200, time.monotonic()  # 100 ms
        for i in range(0, 10**9, chunk):
            mic.write(pcm[i % len(pcm):][:chunk]); mic.flush()
            t += 0.1
            time.sleep(max(0.0, t - time.monotonic()))
except BrokenPipeError:  # hark closed the microphone
    pass
PY
mic_pid=$!
cat > "$work/.shims/asound.conf" <<EOF
</usr/share/alsa/alsa.conf>
pcm.mic_raw { type file slave.pcm "null" file "/dev/null" infile "$work/.shims/mic.raw" format "raw" }
pcm.mic { type plug slave { pcm "mic_raw" format S16_LE rate 16000 channels 1 } }
pcm.!default "mic"
EOF

# A fresh shell per command, in the scratch folder (the checkout's own scripts in the checkout,
# so that a build there is the one the test command made).
fresh() {
  local dir=$work
  [[ "$1" == ./scripts/* ]] && dir=$REPO
  (cd "$dir" && env -i HOME="$HOME" USER="${USER:-root}" LOGNAME="${USER:-root}" TERM=dumb \
    LANG=C.UTF-8 PATH="$work/.shims:$path" HARK_PROFILE="${HARK_PROFILE:-}" \
    ALSA_CONFIG_PATH="$work/.shims/asound.conf" \
    bash --noprofile --norc -c "$1")
}

# README.md's ```sh blocks, NUL-separated, each command's continuation lines joined; after a
# block, \x1f and the captions of the table that follows it, if its header says "`hark caption`
# says".
mapfile -d '' blocks < <(python3 - <<'PY'
import re, sys
text = open("README.md").read()
for m in list(re.finditer(r"^```sh\n(.*?)^```\n", text, re.S | re.M))[1:]:
    after = text[m.end():].lstrip("\n").split("\n\n", 1)[0]
    table = [l for l in after.splitlines() if l.startswith("|")]
    captions = [r.split("|")[2].strip() for r in table[2:]] \
        if table and "`hark caption` says" in table[0] else []
    sys.stdout.write(m[1].replace("\\\n", " ") + "\x1f" + "\n".join(captions) + "\0")
PY
)
echo "== ${#blocks[@]} README blocks"
failed=0
for entry in "${blocks[@]}"; do
  block=${entry%%$'\x1f'*}
  table=${entry#*$'\x1f'}
  if grep -q "^hark run" <<<"$block"; then
    if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
      echo "stand-in: a broker on localhost:1883, as Debian's mosquitto service runs one"
      mosquitto -p 1883 >/dev/null 2>&1 &
      broker_pid=$!
      sleep 1
    fi
    echo "\$ ${block//$'\n'/$'\n'$ }(stopped after 60 s)"
    # Its own session, so that the subscriber it starts in the background ends with it.
    out=$(fresh "setsid timeout 60 bash -c $(printf '%q' "$block")" 2>&1 || true)
    pkill -f "mosquitto_sub -h localhost -t hark/#" 2>/dev/null || true
    if grep -qE '^hark/[^ ]+/caption \{' <<<"$out"; then
      grep -E "^hark/[^ ]+/caption" <<<"$out" | cut -c1-160 | awk 'NR <= 3'
    else
      echo "FAILED: no caption reached the subscriber" >&2; echo "$out" | tail -20 >&2
      failed=$((failed + 1))
    fi
    continue
  fi
  all=
  while IFS= read -r line; do
    [ -z "$line" ] && continue
    want=0
    [[ "$line" =~ \#.*exit\ ([0-9]+) ]] && want=${BASH_REMATCH[1]}
    echo "\$ $line"
    status=0
    out=$(fresh "$line" 2>&1) || status=$?
    all+="$out"$'\n'
    echo "$out" | tail -5 | cut -c1-200
    if [ "$status" != "$want" ]; then
      echo "FAILED: exit $status, expected $want" >&2
      failed=$((failed + 1))
    fi
  done <<<"$block"
  # A table of what `hark caption` says right after the block: each caption must be printed.
  while IFS= read -r caption; do
    [ -z "$caption" ] && continue
    if grep -qF "] $caption  [" <<<"$all"; then
      echo "as the README's table says: $caption"
    else
      echo "FAILED: the README's table says \"$caption\", not printed" >&2
      failed=$((failed + 1))
    fi
  done <<<"$table"
done
if [ "$failed" -gt 0 ]; then
  echo "$failed README example(s) failed" >&2
  exit 1
fi
echo "== every README example ran as printed"
