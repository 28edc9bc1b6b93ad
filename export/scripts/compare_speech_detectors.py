"""Which speech detector should the privacy gate use? The bundle's own speech tag against
Silero VAD (PyPI `silero-vad`, MIT), on the held-out single-sound clips of a `hark-data real`
corpus: precision, recall and time per second of audio.

    python export/scripts/compare_speech_detectors.py --bundle daemon/assets/model \
        --corpus data/real [--hark target/debug/hark]

The bundle's verdict is the daemon's own (`hark caption`, the `speech` tag at the bundle's
threshold, as `privacy.speech` decides). Silero VAD runs through onnxruntime on 32 ms chunks
with its 64-sample context, as its own `OnnxWrapper` does; a clip is speech when at least
250 ms in a row score over 0.5 (its `get_speech_timestamps` defaults). Its wheel is
downloaded from PyPI once into $HARK_CACHE/silero-vad; hark itself never needs it.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from hark_export.evaluate import HARK, hark_caption
from hark_export.hearing import speech_detection, speech_scores
from hark_export.real import decode

WHEEL = "silero-vad==6.2.3"
MODEL = "silero_vad/data/silero_vad.onnx"


def silero_model() -> Path:
    dest = Path(os.environ.get("HARK_CACHE") or Path.home() / ".cache" / "hark") / "silero-vad"
    onnx = dest / "silero_vad.onnx"
    if not onnx.exists():
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                            ":all:", "-q", "--dest", tmp, WHEEL], check=True)
            with zipfile.ZipFile(next(Path(tmp).glob("*.whl"))) as z:
                onnx.write_bytes(z.read(MODEL))
    return onnx


def silero_speech(session, x: np.ndarray, min_chunks: int = 8) -> bool:
    """True when `min_chunks` 32 ms chunks in a row score over 0.5."""
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros((1, 64), np.float32)
    run = 0
    for start in range(0, len(x) - 511, 512):
        chunk = np.concatenate([context, x[None, start:start + 512]], axis=1)
        p, state = session.run(None, {"input": chunk, "state": state,
                                      "sr": np.array(16000, np.int64)})
        context = chunk[:, -64:]
        run = run + 1 if p[0, 0] > 0.5 else 0
        if run >= min_chunks:
            return True
    return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--hark", type=Path, default=Path(os.environ.get("HARK", HARK)))
    args = p.parse_args()
    with open(args.corpus / "clips.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == args.split]
    audio = [args.corpus / r["path_16000"] for r in rows]
    truth = [r["category"] for r in rows]
    seconds = sum(float(r["seconds"]) for r in rows)

    t0 = time.perf_counter()
    windows = hark_caption(args.bundle, audio, [], args.hark)
    model_s = time.perf_counter() - t0
    ours = speech_detection(windows, truth, args.bundle)

    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(silero_model()), opts, providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    said = [silero_speech(session, decode(a)[0].astype(np.float32)) for a in audio]
    silero_s = time.perf_counter() - t0
    silero = speech_scores(said, truth)

    print(f"{len(rows)} clips ({ours['speech_clips']} speech), {seconds:.0f} s of audio\n")
    print("| detector | precision | recall | other sounds taken for speech | time |")
    print("|---|---:|---:|---|---:|")
    for name, r, spent, what in (
            (f"the bundle's `speech` tag ({args.bundle.name})", ours, model_s,
             "whole captioning, tags included"),
            ("Silero VAD 6.2.3", silero, silero_s, "VAD alone")):
        fp = ", ".join(f"{k} {v}" for k, v in r["false_positives"].items()) or "none"
        print(f"| {name} | {100 * r['precision']:.1f} % | {100 * r['recall']:.1f} % | {fp} | "
              f"{1e3 * spent / seconds:.1f} ms per s of audio ({what}) |")


if __name__ == "__main__":
    main()
