#!/usr/bin/env bash
# Creates (once) the Python venv of the trainer and reference scripts, keyed by the hash of
# export/requirements.txt so a changed pin builds a fresh one, then (re)installs the
# hark_dsp binding and the trainer package into it. Prints nothing but progress; the venv
# path is "$HARK_CACHE/venv-<hash>" (also written to $HARK_CACHE/venv-current).
set -euo pipefail
. "$(dirname "$0")/env.sh"

apt_install python3-venv python3-dev
hash=$(sha256sum "$REPO/export/requirements.txt" | cut -c1-12)
venv="$HARK_CACHE/venv-$hash"
if [ ! -f "$venv/.complete" ]; then
  echo "creating Python venv $venv (torch is a large download; cached for later runs)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$REPO/export/requirements.txt"
  touch "$venv/.complete"
fi
echo "$venv" > "$HARK_CACHE/venv-current"

# The binding is the dsp crate itself, built in release into the shared target dir.
(cd "$REPO/export/dsp-py" && VIRTUAL_ENV="$venv" "$venv/bin/maturin" develop --release -q >/dev/null)
if [ -f "$REPO/export/pyproject.toml" ]; then
  "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$REPO/export"
fi
