"""The bench's Python peer (bench/reference.py) does the work `hark caption` does: the same
log-mel from librosa and numpy, and the same captions through onnxruntime, so the bench
times equal work (scripts/bench.sh)."""

import importlib.util
import json
import os
import subprocess
import sys
import tomllib
import wave
from pathlib import Path

import hark_dsp
import numpy as np
import pytest

from hark_export.evaluate import HARK

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "daemon" / "assets" / "model"
DEMO = REPO / "daemon" / "assets" / "demo.wav"

spec = importlib.util.spec_from_file_location("reference", REPO / "bench" / "reference.py")
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)


@pytest.mark.parametrize("frontend", ["shipped", "dsp default"])
def test_the_peer_computes_hark_dsps_log_mel_with_librosa(frontend):
    fe = (tomllib.loads((BUNDLE / "hark-model.toml").read_text())["frontend"]
          if frontend == "shipped" else dict(hark_dsp.Frontend(None).config))
    x, rate = reference.read_wav(DEMO)
    ours = reference.logmel(x, fe)
    theirs = hark_dsp.Frontend(fe).logmel(x, rate)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-3


@pytest.mark.parametrize("seconds", [10, 13])
def test_the_peer_captions_the_demo_like_hark_caption_greedy(seconds, tmp_path):
    hark = Path(os.environ.get("HARK", HARK))
    if not hark.exists():
        pytest.skip("the hark binary is not built")
    # 13 s: a window at 0 s, then one more that ends with the file (not a 3 s tail).
    x, rate = reference.read_wav(DEMO)
    clip = tmp_path / "clip.wav"
    with wave.open(str(clip), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(np.int16(np.tile(x, 2)[:seconds * rate] * 32768).tobytes())
    ours = subprocess.run([sys.executable, str(REPO / "bench" / "reference.py"), "--bundle",
                           str(BUNDLE), str(clip)], capture_output=True, text=True, check=True)
    theirs = subprocess.run([str(hark), "caption", "--bundle", str(BUNDLE), "--strategy",
                             "greedy", "--json", str(clip)], capture_output=True, text=True,
                            check=True)
    a = [json.loads(line) for line in ours.stdout.splitlines()]
    b = [json.loads(line) for line in theirs.stdout.splitlines()]
    assert [(w["start"], w["end"], w["silent"]) for w in a] == \
        [(w["start"], w["end"], w["silent"]) for w in b]
    assert len(b) == (1 if seconds == 10 else 2) and b[-1]["end"] - b[-1]["start"] > 9.9
    assert [w["tokens"] for w in a] == [w["tokens"] for w in b]
    assert [w["text"] for w in a] == [w["text"] for w in b] and b[0]["text"]


def test_the_bench_lets_captions_differ_only_at_a_near_tie():
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    hark = [{"text": "a b c", "tokens": [1, 2, 3]}, {"text": None, "tokens": []}]
    peer = [{"text": "a b d", "tokens": [1, 2, 4], "margins": [2.0, 1.5, 0.003, 3.0]},
            {"text": None, "tokens": []}]
    assert run.near_ties({"hark": hark, "python": peer}) == [0.003]
    assert run.near_ties({"hark": hark, "python": [dict(peer[0], text="a b c", tokens=[1, 2, 3]),
                                                  peer[1]]}) == []
    peer[0]["margins"][2] = 0.5  # a real choice went the other way: not the same work
    assert run.near_ties({"hark": hark, "python": peer}) is None
    # Two sides parting from hark at the same window count once.
    peer[0]["margins"][2] = 0.003
    assert run.near_ties({"hark": hark, "python": peer, "hark-ort": peer}) == [0.003]
