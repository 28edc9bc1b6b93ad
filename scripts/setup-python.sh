#!/usr/bin/env bash
# Creates (once) the Python venv of the trainer and reference scripts at $HARK_CACHE/venv,
# re-runs `pip install -r export/requirements.txt` whenever that file changes, then
# (re)installs the hark_dsp binding and the trainer package into it.
set -euo pipefail
. "$(dirname "$0")/env.sh"

apt_install python3-venv python3-dev
venv="$HARK_CACHE/venv"
want=$(sha256sum "$REPO/export/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
  echo "creating Python venv $venv (torch is a large download; cached for later runs)"
  python3 -m venv "$venv"
fi
if [ "$(cat "$venv/.requirements-sha256" 2>/dev/null)" != "$want" ]; then
  echo "installing export/requirements.txt into $venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$REPO/export/requirements.txt"
  # The pretrained-encoder variant's aisfx pins numpy 1.23 in its metadata but runs on 2.x.
  "$venv/bin/pip" install -q --no-deps aisfx==0.1.2
  echo "$want" > "$venv/.requirements-sha256"
fi

# The binding is the dsp crate itself, built in release into the shared target dir.
(cd "$REPO/export/dsp-py" && VIRTUAL_ENV="$venv" "$venv/bin/maturin" develop --release -q >/dev/null)
if [ -f "$REPO/export/pyproject.toml" ]; then
  "$venv/bin/pip" install -q --no-deps -e "$REPO/export"
fi
