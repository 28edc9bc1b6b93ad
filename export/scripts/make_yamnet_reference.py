"""Writes export/tests/reference/yamnet_reference.npz: what Google's own YAMNet SavedModel
(TF-Hub yamnet/1, run by TensorFlow) outputs for a deterministic signal, so
tests/test_yamnet.py can check the PyTorch port (hark_export/yamnet.py) without TensorFlow.

The signal (`signal()`, repeated in the test) is 30,960 samples at 16 kHz: the length for
which YAMNet neither pads nor drops samples, giving 192 log-mel frames (a multiple of 32) and
three 96-frame patches at a 48-frame hop. Stored, float32: `log_mel` [192, 64], `embeddings`
[3, 1024] and `scores` [3, 521], and the TensorFlow version.

TensorFlow is too big for the trainer's venv, so this is run by hand in a scratch venv, on the
SavedModel that hark_export.yamnet.fetch_weights() unpacks (default $HARK_CACHE/yamnet):

    ~/.cache/hark/venv/bin/python -c "from hark_export.yamnet import fetch_weights; fetch_weights()"
    python3 -m venv /tmp/tfref && /tmp/tfref/bin/pip install tensorflow-cpu numpy
    /tmp/tfref/bin/python export/scripts/make_yamnet_reference.py [--model DIR]
"""

import argparse
import math
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "reference" / "yamnet_reference.npz"
RATE, N = 16000, 30960


def signal() -> np.ndarray:
    """0.6 s of 1 kHz beeps (with two harmonics), 0.7 s of white noise, then a chirp
    300 Hz -> 3 kHz; float32 in [-1, 1]. The noise is a 64-bit LCG, so no RNG library."""
    x, state = np.zeros(N, np.float32), 1
    for i in range(N):
        t = i / RATE
        if t < 0.6:
            on = int(t / 0.1) % 2 == 0
            x[i] = on * 0.3 * sum(math.sin(2 * math.pi * 1000 * k * t) / k for k in (1, 2, 3))
        elif t < 1.3:
            state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            x[i] = 0.2 * ((state >> 11) / (1 << 53) * 2 - 1)
        else:
            u = t - 1.3
            x[i] = 0.4 * math.sin(2 * math.pi * (300 * u + 2700 * u * u / (2 * 0.635)))
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cache = Path(os.environ.get("HARK_CACHE") or Path.home() / ".cache" / "hark")
    ap.add_argument("--model", type=Path, default=cache / "yamnet",
                    help="the unpacked yamnet_base SavedModel (default $HARK_CACHE/yamnet)")
    args = ap.parse_args()
    wrapper = tf.saved_model.load(str(args.model))
    # The wheel's Keras model wraps the TF-Hub module: layer-1 is its hub.KerasLayer, whose
    # `_func` is yamnet/1 itself, waveform [N] -> (scores, embeddings, log_mel_spectrogram).
    yamnet = getattr(wrapper, "layer-1").layer._func
    scores, embeddings, log_mel = (t.numpy() for t in yamnet(tf.constant(signal())))
    assert log_mel.shape == (192, 64) and scores.shape == (3, 521), (log_mel.shape, scores.shape)
    np.savez_compressed(OUT, log_mel=log_mel, embeddings=embeddings, scores=scores,
                        tensorflow_version=np.array(tf.__version__))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) with TensorFlow {tf.__version__}")


if __name__ == "__main__":
    main()
