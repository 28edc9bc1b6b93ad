"""Writes the TensorFlow log-mel arrays that dsp/tests/tensorflow_reference.rs checks against.

The features are computed as YAMNet's own `features.py` computes them (float32 throughout):
`tf.abs(tf.signal.stft(x, 400, 160, 512))` with its default periodic Hann window, times
`tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125, 7500)`, then `log(mel + 0.001)`.
The signals are formulas the Rust test regenerates sample for sample, so only the outputs
are stored (`yamnet.<signal>.logmel.npy`, float32 [n_mels, frames]), with
`yamnet.config.json`, the FrontendConfig that names this front end.

TensorFlow is far too big for CI, so this script is run by hand, in a scratch venv outside
the repository (`tensorflow-cpu` if it has a wheel for your Python, otherwise `tensorflow`):

    python3 -m venv /tmp/tfref && /tmp/tfref/bin/pip install tensorflow-cpu numpy
    /tmp/tfref/bin/python dsp/scripts/make_tf_reference.py            # rewrite the files
    /tmp/tfref/bin/python dsp/scripts/make_tf_reference.py --check    # compare instead
"""

import argparse
import io
import json
import math
import os
import pathlib
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "reference"

RATE = 16000
N = RATE // 2

# Mirror of dsp::FrontendConfig::yamnet().
CONFIG = dict(sample_rate=RATE, n_fft=512, win_length=400, hop_length=160, window="hann",
              center=False, framing="tensorflow", n_mels=64, f_min=125.0, f_max=7500.0,
              mel_scale="htk", mel_norm="none", mel_weights="tensorflow", power=1.0,
              log_offset=0.001, norm_mean=0.0, norm_std=1.0)


def xorshift_noise(n: int, amp: float, seed: int) -> np.ndarray:
    """dsp/tests/common.rs `noise`: xorshift64 mapped to [-amp, amp], bit for bit."""
    mask, s, out = (1 << 64) - 1, seed | 1, np.empty(n, np.float32)
    for i in range(n):
        s ^= (s << 13) & mask
        s ^= s >> 7
        s ^= (s << 17) & mask
        out[i] = np.float32((s >> 11) / float(1 << 53) * 2.0 - 1.0) * np.float32(amp)
    return out


def signals() -> dict[str, np.ndarray]:
    """Half a second of each test signal, float32, from formulas the Rust test repeats
    (math.sin is the C library's sin, as Rust's f64::sin)."""
    def tone(phase):
        return np.array([phase(i / RATE) for i in range(N)], np.float32)
    duration = N / RATE
    return {
        "sine": tone(lambda t: 0.5 * math.sin(2.0 * math.pi * 440.0 * t)),
        # Linear sweep 100 Hz -> 7.2 kHz.
        "chirp": tone(lambda t: 0.8 * math.sin(
            2.0 * math.pi * (100.0 * t + (7200.0 - 100.0) * t * t / (2.0 * duration)))),
        "noise": xorshift_noise(N, 0.3, 1234),
        "silence": np.zeros(N, np.float32),
    }


def yamnet_logmel(x: np.ndarray) -> np.ndarray:
    """YAMNet's log-mel, [n_mels, frames]."""
    c = CONFIG
    spectrogram = tf.abs(tf.signal.stft(tf.constant(x), frame_length=c["win_length"],
                                        frame_step=c["hop_length"], fft_length=c["n_fft"]))
    weights = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=c["n_mels"], num_spectrogram_bins=c["n_fft"] // 2 + 1,
        sample_rate=c["sample_rate"], lower_edge_hertz=c["f_min"], upper_edge_hertz=c["f_max"])
    mel = tf.math.log(tf.matmul(spectrogram, weights) + c["log_offset"])
    return np.ascontiguousarray(mel.numpy().T, np.float32)


def build() -> dict[str, bytes]:
    files = {"yamnet.config.json": json.dumps(CONFIG, indent=1).encode()}
    for name, x in signals().items():
        buf = io.BytesIO()
        np.save(buf, yamnet_logmel(x))
        files[f"yamnet.{name}.logmel.npy"] = buf.getvalue()
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args()
    files = build()
    if args.check:
        bad = [k for k, v in files.items() if not (OUT / k).exists() or (
            not np.allclose(np.load(OUT / k), np.load(io.BytesIO(v)), atol=1e-6)
            if k.endswith(".npy") else (OUT / k).read_bytes() != v)]
        if bad:
            sys.exit(f"reference files out of date: {bad}; rerun without --check")
        print(f"{len(files)} reference files match TensorFlow {tf.__version__}")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for k, v in files.items():
        (OUT / k).write_bytes(v)
    print(f"wrote {len(files)} files to {OUT} with TensorFlow {tf.__version__}")


if __name__ == "__main__":
    main()
