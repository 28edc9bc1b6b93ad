#!/usr/bin/env bash
# Soak: `hark run` with the default model for MINUTES (default 30) on audio delivered in real
# time through stdin — alternately a minute of the demo recording (looped) and a minute of
# digital silence — publishing to a local mosquitto. Samples hark's RSS every 10 s and its CPU
# per phase, and writes the result between the soak markers of docs/RELIABILITY.md.
# Pass: RSS grows at most 1 MB from the end of the first 5 minutes (the warm-up) to the end.
# A day: ./scripts/soak.sh 1440
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO"
minutes="${1:-30}"
apt_install mosquitto
cargo build -q -p hark --bin hark
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 &
sleep 0.5
python3 - "$REPO/daemon/assets/demo.wav" "$minutes" <<'PY' | "$CARGO_TARGET_DIR/debug/hark" run --stdin 16000 --broker "127.0.0.1:$port" --device-id soak 2>"$work/hark.log" &
import sys, time, wave
w = wave.open(sys.argv[1])
assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
clip = w.readframes(w.getnframes())
second = 32000  # bytes of 16 kHz s16le mono
out, t0, sent = sys.stdout.buffer, time.monotonic(), 0
end = float(sys.argv[2]) * 60
while sent < end:
    # Odd minutes are silence: what a quiet room costs.
    block = (clip * ((second // len(clip)) + 2))[(int(sent) * second) % len(clip):][:second]
    out.write(bytes(second) if int(sent // 60) % 2 else block)
    out.flush()
    sent += 1
    time.sleep(max(0.0, t0 + sent - time.monotonic()))
PY
sleep 2
pid="$(pgrep -n -f "hark run --stdin 16000 --broker 127.0.0.1:$port")"
python3 - "$pid" "$minutes" <<'PY'
import os, re, sys, time
from pathlib import Path
pid, minutes = int(sys.argv[1]), float(sys.argv[2])
tick = os.sysconf("SC_CLK_TCK")
def rss():
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024
def cpu():
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
t0, samples, phases = time.monotonic(), [], {0: [0.0, 0.0], 1: [0.0, 0.0]}
last_cpu, last_t = cpu(), t0
while Path(f"/proc/{pid}").exists() and time.monotonic() - t0 < minutes * 60:
    time.sleep(10)
    try:
        c, r = cpu(), rss()
    except (FileNotFoundError, AttributeError):
        break
    now = time.monotonic()
    phase = int((now - t0 - 2) // 60) % 2  # 0 = sound, 1 = silence (as the feeder sends)
    phases[phase][0] += c - last_cpu
    phases[phase][1] += now - last_t
    last_cpu, last_t = c, now
    samples.append((now - t0, r))
warm = [r for t, r in samples if t >= min(300, minutes * 60 / 2)]
growth = warm[-1] - warm[0] if len(warm) > 1 else float("nan")
sound = 100 * phases[0][0] / max(phases[0][1], 1e-9)
silence = 100 * phases[1][0] / max(phases[1][1], 1e-9)
ok = growth <= 1.0
lines = [
    f"Soak of {minutes:g} min ({len(samples)} RSS samples, every 10 s; `./scripts/soak.sh {minutes:g}`): "
    f"RSS {samples[0][1]:.1f} MB at the first sample, {warm[0]:.1f} MB after the warm-up, "
    f"{samples[-1][1]:.1f} MB at the end (max {max(r for _, r in samples):.1f} MB): "
    f"growth after the warm-up **{growth:+.2f} MB** ({'pass' if ok else 'FAIL'}: at most +1 MB). "
    f"CPU (one core = 100 %): {sound:.2f} % while it hears the demo recording, {silence:.2f} % "
    f"in digital silence."
]
print(lines[0])
doc = Path("docs/RELIABILITY.md")
text = doc.read_text()
text = re.sub(r"<!-- soak:begin -->.*?<!-- soak:end -->",
              lambda m: "<!-- soak:begin -->\n" + "\n".join(lines) + "\n<!-- soak:end -->",
              text, flags=re.S)
doc.write_text(text)
sys.exit(0 if ok else 1)
PY
