#!/usr/bin/env bash
# Runs the fault tests (broker restarts, hangs and crashes, a broker down at start or for
# minutes, a stdout nobody reads, a microphone unplugged) and writes the rows they print into
# the table of docs/RELIABILITY.md. Needs what ./scripts/test.sh installs (mosquitto, the fixtures).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO"
export HARK_FIXTURES="${HARK_FIXTURES:-$HARK_CACHE/fixtures}"
cargo build -q -p hark
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# --include-ignored: the long mode's minutes-long outage too (about 4 minutes).
if ! cargo test -q -p hark-e2e --test run_mqtt --test run_notify --test run_sources -- \
  --include-ignored --nocapture --test-threads 1 >"$log" 2>&1; then
  grep -E "panicked|FAILED|failures" "$log" >&2 || tail -20 "$log" >&2
  echo "fault tests failed: the table is not updated" >&2
  exit 1
fi
rows="$(sed -n 's/^.*fault-table: //p' "$log")"
python3 - "$rows" <<'PY'
import json, re, sys
from pathlib import Path
rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
table = ["| case | injected | captions made | received | lost | duplicated | recovery | notes |",
         "|---|---|---:|---:|---:|---:|---:|---|"]
for r in rows:
    rec = "–" if r["recovery_s"] is None else f'{r["recovery_s"]:.1f} s'
    table.append(f'| {r["case"]} | {r["injected"]} | {r["produced"]} | {r["received"]} | '
                 f'{r["lost"]} | {r["duplicated"]} | {rec} | {r["note"]} |')
doc = Path("docs/RELIABILITY.md")
text = doc.read_text()
new = "<!-- fault-table:begin -->\n" + "\n".join(table) + "\n<!-- fault-table:end -->"
text = re.sub(r"<!-- fault-table:begin -->.*?<!-- fault-table:end -->", lambda m: new, text, flags=re.S)
doc.write_text(text)
print("\n".join(table))
PY
