"""Test fixtures for the daemon's end-to-end tests: tiny trained bundles with reference decodes.

    python -m hark_export.fixtures --out DIR

builds, deterministically (fixed seeds, one torch thread; a few minutes on 2 cores — the
caller caches DIR):

    DIR/
      data/                     synthetic dataset: 300 scenes, seed 1, no speech (hark-data synth)
      runs/<arch>/              a briefly trained tiny model of each architecture (hark-train run)
      clips/clip_00.wav …       8 test clips (4 s, 16 kHz mono PCM)
      bundles/<arch>/           fp32 bundle of each of baseline, improved, attention, transformer
      bundles/ced/              the attention decoder, tiny, on frozen CED-Tiny (pretrained arch)
      bundles/attention-int8/   the attention bundle, int8 (dynamic MatMul/Gemm/Gather)
      reference/<bundle>.json   what `hark caption` must print for every clip, token for token
      fixtures.json             summary: bundles, clips, per-bundle parity and BLEU-4

Each reference file holds, per clip, the greedy and the beam-3 decode (token ids, text, score,
beam alternatives) made by `decode.py` — the daemon's algorithms — over the log-mel the Rust
dsp computes (via `hark_dsp`), with PyTorch for fp32 bundles and onnxruntime for the int8 one,
and the `hark caption` options that select the same decoding (the other parameters are the
bundle's [decoding] defaults). Every clip fits one caption window.
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from hark_export.bundle import (BundleInfo, OnnxModel, finish_bundle, quantize, training_data,
                                validate_bundle, write_bundle)
from hark_export.config import TrainConfig, tiny
from hark_export.data import features, load_split, normalise_caption
from hark_export.decode import DecodeParams
from hark_export.export import window_seconds
from hark_export.gates import agreement, check_parity, greedy_tokens, parity
from hark_export.metrics import bleu4, distinct_fraction
from hark_export.references import references, torch_stepper
from hark_export.synth import generate
from hark_export.train import load_checkpoint, train

SCENES, SEED, CLIPS = 300, 1, 8
# Small enough to train in about a minute each on one busy core; max_len 20 keeps decoding short.
# (bundle name, architecture, model options): the four seed architectures, and CED-Tiny as a
# pretrained encoder under a tiny attention decoder, so the daemon's tract runs CED's graph.
TINY = [(arch, arch, sizes) for arch, sizes in tiny(48).items()] + [
    ("ced", "pretrained", {**tiny(48)["attention"], "encoder": "ced"})]
EPOCHS = 10
INT8_ARCH = "attention"


def build(out: Path) -> dict:
    """Builds the fixture directory `out` (see the module docstring); returns the summary."""
    torch.set_num_threads(1)
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    generate(SCENES, SEED, data, speech=False)
    test = load_split(data, "test")
    (out / "clips").mkdir(exist_ok=True)
    clips = []
    for i, clip in enumerate(test[:CLIPS]):
        clips.append(out / "clips" / f"clip_{i:02d}.wav")
        shutil.copy(clip.audio, clips[-1])
    refs = [[normalise_caption(c) for c in clip.captions] for clip in test]
    summary = {"data": training_data(data), "clips": [c.name for c in clips], "bundles": {}}
    for dir_ in ("bundles", "reference"):
        (out / dir_).mkdir(exist_ok=True)
    for name, arch, sizes in TINY:
        run = out / "runs" / name
        if run.exists():
            shutil.rmtree(run)
        train(TrainConfig(data=str(data), out=str(run), arch=arch, cache=str(out / "cache"),
                          model={**sizes, "max_len": 20}, epochs=EPOCHS, batch_size=16,
                          lr=3e-3, patience=EPOCHS, threads=1, evaluate_test=False))
        model, vocab, frontend, _ = load_checkpoint(run / "best.pt")
        mels = [features(c.audio, frontend) for c in test]
        seconds = window_seconds([c.audio for c in test], frontend)
        info = BundleInfo(f"fixture-{name}", arch, "MIT", training_data(data), seconds,
                          seconds / 2, DecodeParams(strategy="beam", beam_size=3,
                                                    alternatives=2, max_len=19))
        bundle = out / "bundles" / name
        write_bundle(bundle, model, vocab, frontend, info)
        fp32 = OnnxModel(bundle)
        p = parity(model, fp32, mels[:CLIPS])
        check_parity(p)
        hyps = [vocab.decode(t) for t in greedy_tokens(fp32, mels)]
        scenes = [c.scene for c in test]
        metrics = {"bleu_4": bleu4(hyps, refs), "distinct_scenes": distinct_fraction(hyps, scenes),
                   "parity_max_abs_diff": p.max_abs_diff, "test_clips": len(test)}
        finish_bundle(bundle, {**fp32.manifest, "metrics": metrics},
                      sum(t.numel() for t in model.parameters()), [])
        validate_bundle(bundle)
        ref = references(bundle, clips, torch_stepper(model))
        (out / "reference" / f"{name}.json").write_text(json.dumps(ref, indent=1) + "\n")
        summary["bundles"][name] = {**metrics, "reference": "pytorch"}
        print(f"{name}: BLEU-4 {metrics['bleu_4']:.3f}, parity {p.max_abs_diff:.1e}, "
              f"e.g. {hyps[0]!r}; {time.time() - started:.0f} s", flush=True)

        if name == INT8_ARCH:
            int8_dir = out / "bundles" / f"{arch}-int8"
            if int8_dir.exists():
                shutil.rmtree(int8_dir)
            quantize(bundle, int8_dir)
            int8 = OnnxModel(int8_dir)
            a = agreement(greedy_tokens(int8, mels), greedy_tokens(fp32, mels))
            m8 = {"int8_exact_agreement": a.exact, "int8_token_agreement": a.tokens}
            finish_bundle(int8_dir, {**int8.manifest, "name": f"fixture-{arch}-int8",
                                     "metrics": m8},
                          sum(t.numel() for t in model.parameters()), [])
            validate_bundle(int8_dir)
            int8 = OnnxModel(int8_dir)
            ref = references(int8_dir, clips, lambda mel: int8.stepper(mel))
            (out / "reference" / f"{arch}-int8.json").write_text(json.dumps(ref, indent=1) + "\n")
            summary["bundles"][f"{arch}-int8"] = {**m8, "reference": "onnxruntime"}
    shutil.rmtree(out / "cache", ignore_errors=True)
    summary["seconds"] = round(time.time() - started, 1)
    (out / "fixtures.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    """`python -m hark_export.fixtures --out DIR`."""
    parser = argparse.ArgumentParser(prog="hark_export.fixtures",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(build(args.out), indent=2))


if __name__ == "__main__":
    main()
