"""hark against its Python peer, in one run on one machine: a table of ratios.

    python bench/run.py --hark target/release/hark --bundle daemon/assets/model \
        [--minutes 10] [--repeats 5] [--out docs/PERFORMANCE.md]

Every row runs both sides here and now, one thread each, on the same bundle and audio:

- end to end: `hark caption --strategy greedy --json` vs bench/reference.py (librosa mel with
  the bundle's front end + onnxruntime + the same greedy decode) on a long file; the captions
  are checked identical first (where one differs, only at a float near-tie is it let pass:
  `near_ties`); whole-process wall and CPU time, peak RSS, real-time factor;
  repeated, hark and Python interleaved, median and spread;
- model pieces: encoder per full window, decoder step, whole caption (from both sides' own
  per-window timings);
- memory: hark's peak RSS on 10 s vs the long file; time to the first caption;
- the daemon: `hark run --file --realtime` (the file paced at 1x, like a microphone)
  publishing to a local mosquitto: CPU %, peak RSS, window end -> MQTT message latency
  measured by a subscriber;
- binary size and start-up (model load to first caption).

The audio is made here from daemon/assets/demo.wav (a real recording): slices of it at
varied gains, with silent gaps, so windows differ. With --out, the table replaces the
section between the `bench:begin`/`bench:end` markers of that file.
"""

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "bench" / "reference.py"


# ---- audio ----

def write_wav(path: Path, x: np.ndarray, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def make_audio(out: Path, minutes: float, paced: float, seed: int = 0) -> tuple[Path, Path, Path]:
    """A long file, its first 10 s and its first `paced` s: demo.wav slices (2-10 s, gain -12..+3 dB) and, now
    and then, a second of digital silence."""
    with wave.open(str(REPO / "daemon/assets/demo.wav")) as w:
        demo = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    rng = np.random.default_rng(seed)
    total, parts, n = int(minutes * 60 * 16000), [], 0
    while n < total:
        if rng.random() < 0.1:
            part = np.zeros(16000, np.float32)
        else:
            length = int(rng.uniform(2, 10) * 16000)
            start = int(rng.integers(0, len(demo) - length + 1))
            part = demo[start:start + length] * 10 ** (rng.uniform(-12, 3) / 20)
        parts.append(part)
        n += len(part)
    x = np.concatenate(parts)[:total]
    out.mkdir(parents=True, exist_ok=True)
    long, short, daemon = (out / f"bench-{minutes:g}min.wav", out / "bench-10s.wav",
                           out / f"bench-{paced:g}s.wav")
    write_wav(long, x)
    write_wav(short, x[:10 * 16000])
    write_wav(daemon, x[:int(paced * 16000)])
    return long, short, daemon


# ---- processes ----

class Measured:
    """Wall and CPU seconds, peak RSS (MB) and stdout lines (with arrival times) of a process.

    CPU time and peak RSS come from GNU time, which forks the process from its own small
    image: a child forked straight from this Python process inherits its peak RSS."""

    def __init__(self, argv: list[str], env: dict | None = None):
        with tempfile.NamedTemporaryFile("r", suffix=".time") as usage:
            t0 = time.perf_counter()
            proc = subprocess.Popen(["/usr/bin/time", "-f", "%U %S %M", "-o", usage.name, *argv],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env={**os.environ, **(env or {})}, text=True)
            self.lines, self.first_line = [], None
            err = []
            drain = threading.Thread(target=lambda: err.append(proc.stderr.read()))
            drain.start()
            for line in proc.stdout:
                if self.first_line is None:
                    self.first_line = time.perf_counter() - t0
                self.lines.append(line)
            proc.wait()
            self.wall = time.perf_counter() - t0
            drain.join()
            if proc.returncode != 0:
                raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {err[0][-2000:]}")
            user, system, max_kb = usage.read().split()[-3:]
        self.cpu = float(user) + float(system)
        self.rss_mb = int(max_kb) / 1024

    def rows(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]


def hark_caption(hark: Path, bundle: Path, audio: Path) -> list[str]:
    return [str(hark), "caption", "--bundle", str(bundle), "--privacy", "caption",
            "--strategy", "greedy", "--alternatives", "0", "--json", str(audio)]


def python_caption(bundle: Path, audio: Path) -> list[str]:
    return [sys.executable, str(REFERENCE), "--bundle", str(bundle), str(audio)]


ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# Logits closer than this are a float near-tie: onnxruntime's and tract's kernels round
# differently, so such a choice may go either way. YAMNet's outputs differ by ~1e-5 between
# them and its captions parted only under 0.004; CED-Tiny's twelve transformer blocks carry
# more of the rounding (its captions parted at gaps of 0.006-0.039 on 5 of 119 windows).
# The table reports how many windows parted and the largest gap.
NEAR_TIE = 0.05


def near_ties(rows: dict) -> list[float] | None:
    """For each window where a side's caption differs from hark's, the Python peer's
    top-two logit gap at the step where they part (the largest over the sides); None if any
    differs at a real choice."""
    gaps: dict[int, float] = {}
    for side in rows.values():
        for i, (h, o, p) in enumerate(zip(rows["hark"], side, rows["python"])):
            if h["text"] == o["text"]:
                continue
            a, b = h["tokens"] + [-1], o["tokens"] + [-1]
            step = next(j for j, (x, y) in enumerate(zip(a, b)) if x != y)
            margins = p.get("margins", [])
            if step >= len(margins) or margins[step] >= NEAR_TIE:
                return None
            gaps[i] = max(gaps.get(i, 0.0), margins[step])
    return list(gaps.values())


def med(xs):
    return statistics.median(xs)


def spread(xs):
    return f"{min(xs):.2f}–{max(xs):.2f}"


def piece_times(rows: list[dict]) -> tuple[float, float, float]:
    """(encoder, decoder step, whole caption) ms: medians over the captioned full-length
    windows of one side's own per-window timings."""
    full = max(w["end"] - w["start"] for w in rows)
    w = [w for w in rows if not w["silent"] and w["end"] - w["start"] >= full - 0.01]
    steps = [r["timings_ms"].get("steps", len(r["tokens"]) + 1) for r in w]
    return (med([r["timings_ms"]["encoder"] for r in w]),
            med([r["timings_ms"]["decoding"] / n for r, n in zip(w, steps)]),
            med([r["timings_ms"]["encoder"] + r["timings_ms"]["decoding"] for r in w]))


# ---- the daemon on a paced source ----

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daemon_run(hark: Path, bundle: Path, audio: Path, seconds: float) -> dict:
    """`hark run --file AUDIO --realtime` to a local mosquitto, with the bundle's own
    decoding (the shipped one: beam 3, two alternatives); a subscriber stamps each caption's
    arrival against the window end the payload names."""
    import paho.mqtt.client as mqtt
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    conf.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    conf.close()
    broker = subprocess.Popen([mosquitto, "-c", conf.name], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    latencies, received = [], threading.Event()
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)

        def on_message(_c, _u, msg):
            now = datetime.now(timezone.utc)
            end = datetime.fromisoformat(json.loads(msg.payload)["end"].replace("Z", "+00:00"))
            latencies.append((now - end).total_seconds() * 1e3)
            received.set()

        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.subscribe("hark/bench/caption", qos=1)
        sub.loop_start()
        time.sleep(0.3)
        # Dedup off: every window is published, so every window's latency is measured.
        env = {"HARK__EVENTS__DEDUP_HOLD_SECONDS": "0", "RUST_LOG": "warn"}
        m = Measured([str(hark), "run", "--file", str(audio), "--realtime", "--bundle",
                      str(bundle), "--broker", f"127.0.0.1:{port}", "--device-id", "bench"],
                     env)
        time.sleep(0.5)
        sub.loop_stop()
        sub.disconnect()
    finally:
        broker.terminate()
        broker.wait()
        os.unlink(conf.name)
    return {"seconds": seconds, "wall": m.wall, "cpu_percent": 100 * m.cpu / m.wall,
            "rss_mb": m.rss_mb, "captions": len(latencies),
            "latency_median_ms": med(latencies) if latencies else float("nan"),
            "latency_p95_ms": float(np.percentile(latencies, 95)) if latencies else float("nan")}


# ---- the table ----

def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo")
               if line.startswith("MemTotal")) / 2**20
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}"


def versions(hark: Path) -> str:
    import librosa
    import onnxruntime
    return (f"Python {platform.python_version()}, librosa {librosa.__version__}, onnxruntime "
            f"{onnxruntime.__version__}, numpy {np.__version__}; hark built as {hark}")


def ort_library() -> str:
    """The pip package's libonnxruntime, for `hark --backend ort`."""
    import onnxruntime
    capi = Path(onnxruntime.__file__).parent / "capi"
    return str(next(capi.glob("libonnxruntime.so*")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hark", type=Path, required=True)
    p.add_argument("--hark-ort", type=Path,
                   help="a hark built with --features ort: adds the same Rust code on ONNX "
                        "Runtime (the pip package's library) as a column")
    p.add_argument("--bundle", type=Path, action="append",
                   help="bundle to run (repeatable: the first one is timed end to end, every "
                        "one gets model-piece rows; default: the shipped daemon/assets/model)")
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--daemon-seconds", type=float, default=60,
                   help="length of the paced daemon run")
    p.add_argument("--work", type=Path, default=Path(os.environ.get(
        "HARK_CACHE", Path.home() / ".cache/hark")) / "bench")
    p.add_argument("--out", type=Path, help="Markdown file whose bench section is replaced")
    args = p.parse_args()
    args.bundle = args.bundle or [REPO / "daemon/assets/model"]
    long, short, paced = make_audio(args.work, args.minutes, args.daemon_seconds)
    audio_s = args.minutes * 60
    bundle, name = args.bundle[0], args.bundle[0].resolve().name
    ort_env = {**ONE_THREAD, "ORT_DYLIB_PATH": ort_library()}
    sides = {"hark": lambda b, f: Measured(hark_caption(args.hark, b, f)),
             "python": lambda b, f: Measured(python_caption(b, f), ONE_THREAD)}
    if args.hark_ort:
        sides["hark-ort"] = lambda b, f: Measured(
            hark_caption(args.hark_ort, b, f) + ["--backend", "ort"], ort_env)

    # Identical captions first: nothing is timed that does not do the same work.
    pieces, hw, captioned = {}, None, None
    for b in args.bundle:
        rows = {k: run(b, long).rows() for k, run in sides.items()}
        same = {k: sum(a["text"] == c["text"] for a, c in zip(rows["hark"], r))
                for k, r in rows.items()}
        total = len(rows["hark"])
        if b == bundle:
            ties = near_ties(rows)
            if ties is None:
                raise SystemExit(f"captions differ ({same} of {total} windows identical, not "
                                 "only at near-ties); not timing different work")
            hw, captioned = rows["hark"], [w for w in rows["hark"] if not w["silent"]]
        pieces[b.resolve().name] = ({k: piece_times(r) for k, r in rows.items()},
                                    same["python"], total)
        print(f"{b}: captions identical on {same} of {total} windows", file=sys.stderr)

    # End to end, interleaved.
    runs = {k: [] for k in sides}
    for i in range(args.repeats):
        for k, run in sides.items():
            runs[k].append(run(bundle, long))
        print(f"repeat {i + 1}: " + ", ".join(f"{k} {v[-1].wall:.2f} s" for k, v in runs.items()),
              file=sys.stderr)
    shorts = [Measured(hark_caption(args.hark, bundle, short)) for _ in range(3)]
    daemon = daemon_run(args.hark, bundle, paced, args.daemon_seconds) \
        if args.daemon_seconds > 0 else None

    e = {k: {"wall": [m.wall for m in v], "cpu": [m.cpu for m in v],
             "rss": [m.rss_mb for m in v], "first": [m.first_line for m in v]}
         for k, v in runs.items()}
    ort = "hark-ort" in sides
    lines = [
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `scripts/bench.sh` on "
        f"{machine()}; {versions(args.hark)}. Bundle `{name}`; "
        f"{args.minutes:g} min of audio ({len(hw)} windows, {len(captioned)} captioned, "
        + ("captions identical on every side" if not ties else
           f"captions identical on every side but {len(ties)} window(s) where the greedy "
           f"choice was a near-tie (the peer's top two logits {max(ties):.4f} apart or less; "
           "the runtimes round differently)")
        + "; one thread each; "
        f"{args.repeats} interleaved repeats, median (min–max).",
        "",
        "| end to end | hark | Python peer | hark vs peer |"
        + (" hark on ONNX Runtime (`ort`) |" if ort else ""),
        "|---|---:|---:|---:|" + ("---:|" if ort else ""),
    ]
    for label, key, unit in (("wall time", "wall", "s"), ("CPU time", "cpu", "s"),
                             ("peak RSS", "rss", "MB"), ("first caption after", "first", "s")):
        a, b = e["hark"][key], e["python"][key]
        row = (f"| {label} | {med(a):.2f} {unit} ({spread(a)}) | "
               f"{med(b):.2f} {unit} ({spread(b)}) | {med(b) / med(a):.2f}× |")
        if ort:
            c = e["hark-ort"][key]
            row += f" {med(c):.2f} {unit} ({spread(c)}) |"
        lines.append(row)
    lines.append(f"| real-time factor (wall / audio) | {med(e['hark']['wall']) / audio_s:.4f} | "
                 f"{med(e['python']['wall']) / audio_s:.4f} | |"
                 + (f" {med(e['hark-ort']['wall']) / audio_s:.4f} |" if ort else ""))
    lines += ["", "| bundle | model piece (median over full windows) | hark (tract) | "
              "Python onnxruntime | tract vs onnxruntime |"
              + (" hark on ONNX Runtime (`ort`) |" if ort else "") + " identical captions |",
              "|---|---|---:|---:|---:|" + ("---:|" if ort else "") + "---:|"]
    for b, (times, same, total) in pieces.items():
        for i, label in enumerate(("encoder, one window", "decoder step",
                                   "whole caption (encoder + greedy decode)")):
            a, c = times["hark"][i], times["python"][i]
            row = f"| `{b}` | {label} | {a:.3f} ms | {c:.3f} ms | {a / c:.2f}× the time |"
            if ort:
                row += f" {times['hark-ort'][i]:.3f} ms |"
            lines.append(row + f" {same}/{total} |")
    short_rss = med([m.rss_mb for m in shorts])
    long_rss = med(e["hark"]["rss"])
    lines += ["", "| hark alone | |", "|---|---:|",
              f"| peak RSS, `hark caption` on 10 s | {short_rss:.1f} MB |",
              f"| peak RSS, `hark caption` on {args.minutes:g} min | "
              f"{long_rss:.1f} MB ({100 * (long_rss / short_rss - 1):+.0f} %) |",
              f"| start-up: model load to first caption (10 s file, whole process) | "
              f"{med([m.first_line for m in shorts]):.3f} s |",
              f"| binary size | {args.hark.stat().st_size / 2**20:.1f} MB |"]
    if daemon:
        lines += [f"| `hark run --file --realtime` ({daemon['seconds']:g} s, the bundle's "
                  f"decoding) to mosquitto, {daemon['captions']} captions: CPU | "
                  f"{daemon['cpu_percent']:.1f} % of a core |",
                  f"| … peak RSS | {daemon['rss_mb']:.1f} MB |",
                  f"| … window end → MQTT message, median (p95) | "
                  f"{daemon['latency_median_ms']:.1f} ms ({daemon['latency_p95_ms']:.1f} ms) |"]
    table = "\n".join(lines)
    print(table)
    if args.out:
        text = args.out.read_text()
        begin, end = f"<!-- bench:begin {name} -->", f"<!-- bench:end {name} -->"
        block = f"{begin}\n{table}\n{end}"
        if begin in text:
            text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text,
                          flags=re.S)
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
        args.out.write_text(text)


if __name__ == "__main__":
    main()
