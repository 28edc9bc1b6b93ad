"""The held-out clips of a `hark-data real` corpus as another microphone in another room would
hear them, to measure what a real room costs a model:

    python export/scripts/room_corpus.py data/real data/real-room [--seed 12345]
    hark-eval-sounds --bundle BUNDLE --corpus data/real-room --out reports/room

Each val and test clip gets a room impulse response unlike the trainer's `--augment` (discrete
early reflections within 30 ms and a low-passed exponential tail, reverberation time 0.3-1.0 s,
0-8 dB below the direct sound), then for 30 % a telephone band (300-3400 Hz) and for 20 % a
muffled microphone (low-pass 2.5 kHz), and brown noise 25-40 dB below the signal. Writes the
clips under the same relative paths and a clips.csv of those rows; deterministic for a seed.
"""

import argparse
import csv
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, fftconvolve, sosfilt


def impulse_response(rng, rate: int) -> np.ndarray:
    rt60 = rng.uniform(0.3, 1.0)
    n = int(rt60 * rate)
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.91 * t / rt60)
    tail = sosfilt(butter(1, rng.uniform(2000, 6000), "lowpass", fs=rate, output="sos"), tail)
    ir = np.zeros(n)
    ir[0] = 1.0
    for _ in range(rng.integers(5, 15)):
        ir[int(rng.uniform(0.002, 0.03) * rate)] += rng.uniform(-0.6, 0.6)
    late = int(0.03 * rate)
    energy = max(float((tail[late:] ** 2).sum()), 1e-9)
    ir[late:] += tail[late:] * 10 ** (-rng.uniform(0, 8) / 20) / np.sqrt(energy)
    return ir


def degrade(x: np.ndarray, rate: int, rng) -> np.ndarray:
    y = fftconvolve(x, impulse_response(rng, rate))[: len(x)]
    band = rng.random()
    if band < 0.3:
        y = sosfilt(butter(4, [300, 3400], "bandpass", fs=rate, output="sos"), y)
    elif band < 0.5:
        y = sosfilt(butter(2, 2500, "lowpass", fs=rate, output="sos"), y)
    rms = np.sqrt((y ** 2).mean() + 1e-12)
    noise = np.cumsum(rng.standard_normal(len(y)))  # brown: a room's rumble
    noise -= np.convolve(noise, np.ones(200) / 200, "same")
    noise *= rms * 10 ** (-rng.uniform(25, 40) / 20) / (noise.std() + 1e-12)
    y = y + noise
    return (y * min(1.0, 0.95 / (np.abs(y).max() + 1e-9))).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=12345)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    with open(args.corpus / "clips.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] in ("val", "test")]
    for r in rows:
        x, rate = sf.read(args.corpus / r["path_16000"], dtype="float32")
        if x.ndim > 1:
            x = x.mean(axis=1)
        out = args.out / r["path_16000"]
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, degrade(x, rate, rng), rate, subtype="PCM_16")
    with open(args.out / "clips.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} clips in {args.out}")


if __name__ == "__main__":
    main()
