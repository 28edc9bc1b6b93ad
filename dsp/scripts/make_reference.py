"""Writes the reference log-mel arrays that dsp/tests/librosa_reference.rs checks against.

Each signal is stored as float32 (what the Rust test feeds), and librosa computes on the
same samples promoted to float64, so the reference carries no float32 FFT error of its own.

    python dsp/scripts/make_reference.py            # rewrite dsp/tests/reference/
    python dsp/scripts/make_reference.py --check    # fail if the committed files differ
"""

import argparse
import io
import json
import pathlib
import sys

import librosa
import numpy as np

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "reference"

# Mirrors of FrontendConfig: the defaults, and one that changes every option.
CONFIGS = {
    "default": dict(sample_rate=16000, n_fft=512, win_length=512, hop_length=160, window="hann",
                    center=True, n_mels=64, f_min=0.0, f_max=8000.0, mel_scale="slaney",
                    mel_norm="slaney", power=2.0, log_offset=1e-6, norm_mean=0.0, norm_std=1.0),
    "alt": dict(sample_rate=22050, n_fft=1024, win_length=800, hop_length=256, window="hamming",
                center=False, n_mels=40, f_min=50.0, f_max=10000.0, mel_scale="htk",
                mel_norm="none", power=1.0, log_offset=1e-4, norm_mean=-3.0, norm_std=2.5),
}


def signals(sr: int) -> dict[str, np.ndarray]:
    """Half a second of each test signal at `sr`, float32."""
    n = sr // 2
    t = np.arange(n) / sr
    rng = np.random.default_rng(1234)
    return {
        "sine": 0.5 * np.sin(2 * np.pi * 440.0 * t),
        "chirp": 0.8 * librosa.chirp(fmin=100.0, fmax=0.45 * sr, sr=sr, length=n),
        "noise": 0.3 * rng.standard_normal(n),
        "silence": np.zeros(n),
    }


def logmel(y: np.ndarray, c: dict) -> np.ndarray:
    """librosa's mel spectrogram with the same parameters, then the crate's log and norm."""
    mel = librosa.feature.melspectrogram(
        y=y.astype(np.float64), sr=c["sample_rate"], n_fft=c["n_fft"], win_length=c["win_length"],
        hop_length=c["hop_length"], window=c["window"], center=c["center"], pad_mode="constant",
        power=c["power"], n_mels=c["n_mels"], fmin=c["f_min"], fmax=c["f_max"],
        htk=c["mel_scale"] == "htk", norm="slaney" if c["mel_norm"] == "slaney" else None,
        dtype=np.float64)
    return ((np.log(mel + c["log_offset"]) - c["norm_mean"]) / c["norm_std"]).astype(np.float32)


def build() -> dict[str, bytes]:
    files = {}
    for cname, c in CONFIGS.items():
        files[f"{cname}.config.json"] = json.dumps(c, indent=1).encode()
        for sname, y in signals(c["sample_rate"]).items():
            y = y.astype(np.float32)
            for key, arr in ((f"{cname}.{sname}.input.npy", y),
                             (f"{cname}.{sname}.logmel.npy", logmel(y, c))):
                buf = io.BytesIO()
                np.save(buf, arr)
                files[key] = buf.getvalue()
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    files = build()
    if args.check:
        bad = []
        for k, v in files.items():
            committed = OUT / k
            if not committed.exists():
                bad.append(k)
            elif k.endswith(".npy"):
                if not np.allclose(np.load(committed), np.load(io.BytesIO(v)), atol=1e-6):
                    bad.append(k)
            elif committed.read_bytes() != v:
                bad.append(k)
        if bad:
            sys.exit(f"reference files out of date: {bad}; rerun without --check")
        print(f"{len(files)} reference files match librosa {librosa.__version__}")
        return
    for k, v in files.items():
        (OUT / k).write_bytes(v)
    print(f"wrote {len(files)} files to {OUT}")


if __name__ == "__main__":
    main()
