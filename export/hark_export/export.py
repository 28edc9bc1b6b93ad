"""`hark-export`: a trained run -> a model bundle the daemon loads (docs/BUNDLE.md).

    hark-export runs/attention --out bundles/synth-attention     # + bundles/synth-attention-int8

writes
    hark-model.toml   the manifest: front end (with norm_mean/norm_std), tokens, graphs, every
                      decoder state's shape and batch axis, default decoding, sha256 of every
                      file, the evaluation metrics
    encoder.onnx      mel [1, n_mels, frames] -> memory [1, steps, D], init_<state>...
    decoder.onnx      ONE step: tokens [batch], memory [batch, steps, D], states... ->
                      logits [batch, V], <state>_out...
    encoder.pt, decoder.pt
                      the same two graphs traced to TorchScript, for `hark --features tch`
                      (libtorch, CUDA on a Jetson); fp32 bundles only
    vocab.txt, MODEL_CARD.md

Both graphs are exported with `torch.onnx.export(dynamo=False, opset_version=17)`. Export
refuses (non-zero exit, the reason printed) when the parity gate fails: onnxruntime fp32 vs
PyTorch logits must agree within 1e-4 on a sample of test clips and give identical greedy
captions. The int8 variant (onnxruntime dynamic quantization of MatMul/Gemm/Gather only: the
default would turn LSTMs into com.microsoft.DynamicQuantizeLSTM, which tract lacks) is refused
unless its greedy captions equal the fp32 ones on at least 80 % of the test split.

`validate_bundle` repeats the daemon's loading checks (daemon/src/model/bundle.rs, tract.rs) in
Python, so a bad bundle is caught where it is made.
"""

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch

from hark_export.bundle import (DEFAULT_DECODING, INT8_MODES, BundleInfo, OnnxModel,
                                finish_bundle, quantize, training_data, validate_bundle,
                                write_bundle)
from hark_export.data import features, load_split, parse_source
from hark_export.decode import DecodeParams
from hark_export.evaluate import HARK, caption_metrics
from hark_export.gates import (agreement, check_int8, check_parity, greedy_tokens, hark_judges,
                               parity)
from hark_export.graphs import ExportRefused
from hark_export.graphs import INT8_OPS
from hark_export.progress import progress
from hark_export.sounds import add_reference


def window_seconds(audio: list[Path], frontend: dict) -> float:
    """A caption window that holds the longest file whole: the daemon cuts
    round(seconds * frames_per_second) frames, and a 4 s clip has 401 frames, not 400."""
    import hark_dsp
    import soundfile as sf
    fe = hark_dsp.Frontend(frontend)
    rate, hop = fe.config["sample_rate"], fe.config["hop_length"]
    samples = max(math.ceil(sf.info(a).frames * rate / sf.info(a).samplerate) for a in audio)
    return fe.frames_for(samples) * hop / rate


def main(argv: list[str] | None = None) -> None:
    """`hark-export RUN --out DIR`: export, gate and evaluate a fp32 and an int8 bundle."""
    parser = argparse.ArgumentParser(prog="hark-export", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run folder (with best.pt)")
    parser.add_argument("--out", type=Path, required=True, help="fp32 bundle folder")
    parser.add_argument("--int8-out", type=Path, help="int8 bundle folder (default: OUT-int8)")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 variant")
    parser.add_argument("--data", type=Path, help="dataset (default: the run's)")
    parser.add_argument("--name", help="bundle name (default: synth-ARCH or the run's name)")
    parser.add_argument("--licence", default="MIT")
    parser.add_argument("--parity-clips", type=int, default=16)
    parser.add_argument("--eval-clips", type=int, default=0, help="test clips scored (0 = all)")
    parser.add_argument("--min-int8-agreement", type=float, default=0.8)
    parser.add_argument("--int8-ops", default=",".join(INT8_OPS),
                        help="ONNX ops whose weights the int8 bundle quantizes")
    parser.add_argument("--int8-mode", choices=INT8_MODES, default="weights",
                        help="weights: int8 weights, float32 arithmetic (the default; as fast "
                             "as fp32 in tract, closest to fp32); dynamic: onnxruntime's "
                             "dynamic quantization, int8 arithmetic")
    parser.add_argument("--fp16-ops", default="",
                        help="ONNX ops whose weights the int8 bundle stores as float16 (e.g. "
                             "Conv for CNN encoders such as YAMNet: half the bytes, float32 "
                             "arithmetic)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hark", type=Path, default=Path(os.environ.get("HARK", HARK)),
                        help="the hark binary whose `check-bundle` judges each bundle "
                             "(default: $HARK, else the repository's debug build)")
    parser.add_argument("--card", type=Path,
                        help="Markdown appended to MODEL_CARD.md (limits, how to retrain, ...)")
    parser.add_argument("--sounds", type=Path, metavar="CORPUS",
                        help="a hark-data real corpus: adds learned sounds' reference (train "
                             "mean, negatives, thresholds from its val split) to each bundle "
                             "whose encoder gives a sound embedding (hark-sounds-reference)")
    parser.add_argument("--window", type=float,
                        help="caption window in seconds (default: the longest test clip)")
    args = parser.parse_args(argv)
    try:
        export_run(args)
    except ExportRefused as e:
        sys.exit(f"hark-export refuses: {e}")


def export_run(args) -> None:
    """The CLI's work (see `main`)."""
    from hark_export.train import load_checkpoint

    def judge(bundle: Path) -> None:
        """The daemon's verdict; a bundle it refuses is removed, not left to be shipped."""
        try:
            print(hark_judges(bundle, args.hark))
        except ExportRefused:
            shutil.rmtree(bundle, ignore_errors=True)
            raise

    def sounds_reference(bundle: Path) -> None:
        if args.sounds and model.has_sound_embedding:
            parts = len(model.encoder.net.EMBEDDING_BLOCKS)
            print(f"{bundle.name}: [sounds] {add_reference(bundle, args.sounds, parts=parts)}")

    torch.set_num_threads(args.threads)
    model, vocab, frontend, _ = load_checkpoint(args.run / "best.pt")
    config = json.loads((args.run / "config.json").read_text())
    data = args.data or parse_source(config["train"]["data"])[0]
    arch = model.config.arch
    name = args.name or (f"synth-{arch}" if (data / "synth.json").exists() else args.run.name)
    clips = load_split(data, "test")
    if args.eval_clips:
        clips = clips[: args.eval_clips]
    seconds = args.window or window_seconds([c.audio for c in clips], frontend)
    info = BundleInfo(name, arch, args.licence, training_data(data), seconds, seconds / 2,
                      DecodeParams(**{**DEFAULT_DECODING.__dict__,
                                      "max_len": model.config.max_len - 1}))
    mels = [features(c.audio, frontend) for c in progress(clips, "features", unit="clip")]
    refs = [c.captions for c in clips]
    scenes = [c.scene or "|".join(sorted(c.captions)) for c in clips]
    print(f"{name}: exporting {arch} ({args.run}) to {args.out}; {len(clips)} test clips")
    write_bundle(args.out, model, vocab, frontend, info)
    fp32 = OnnxModel(args.out)
    p = parity(model, fp32, mels[: args.parity_clips])
    print(f"parity: max |onnx - torch| {p.max_abs_diff:.2e} (relative {p.max_rel_diff:.2e}) "
          f"over {p.clips} clips, "
          f"identical greedy captions {p.captions_equal}/{p.clips}")
    check_parity(p)

    def score(bundle: OnnxModel) -> dict:
        hyps = [bundle.text(bundle.decode(mel)[0].tokens)
                for mel in progress(mels, f"test captions ({bundle.manifest['name']})",
                                    unit="clip")]
        return caption_metrics(hyps, refs, scenes)

    def graph_megabytes(bundle: Path) -> float:
        return sum(f.stat().st_size for f in bundle.glob("*.onnx")) / 1e6

    metrics = {**score(fp32), "parity_max_abs_diff": p.max_abs_diff, "test_clips": len(clips),
               "onnx_megabytes": graph_megabytes(args.out)}
    fp32_greedy = greedy_tokens(fp32, mels, "fp32 greedy captions")
    card = args.card.read_text() if args.card else ""
    parameters = sum(t.numel() for t in model.parameters())
    int8_note, refused = [], None
    if not args.no_int8:
        int8_dir = args.int8_out or args.out.with_name(args.out.name + "-int8")
        if int8_dir.exists():
            shutil.rmtree(int8_dir)
        ops = args.int8_ops.split(",")
        fp16 = [o for o in args.fp16_ops.split(",") if o]
        quantize(args.out, int8_dir, ops, fp16, args.int8_mode)
        int8 = OnnxModel(int8_dir)
        a = agreement(greedy_tokens(int8, mels, "int8 agreement gate"), fp32_greedy)
        size8 = graph_megabytes(int8_dir)
        print(f"int8: {size8:.2f} MB vs fp32 {metrics['onnx_megabytes']:.2f} MB; "
              f"greedy captions equal fp32 on {100 * a.exact:.1f}% of {a.clips} clips, "
              f"token agreement {100 * a.tokens:.1f}%")
        agree = {"int8_exact_agreement": a.exact, "int8_token_agreement": a.tokens}
        metrics.update(agree)
        try:
            check_int8(a, args.min_int8_agreement)
        except ExportRefused as e:
            shutil.rmtree(int8_dir)
            refused = e
        else:
            m8 = {**score(int8), **agree, "test_clips": len(clips), "onnx_megabytes": size8}
            manifest8 = {**int8.manifest, "name": f"{name}-int8", "metrics": m8}
            finish_bundle(int8_dir, manifest8, parameters, [
                (f"int8: {', '.join(ops)} weights stored as int8 (one scale per output "
                 "channel), float32 arithmetic" if args.int8_mode == "weights" else
                 f"int8: onnxruntime dynamic quantization of {', '.join(ops)} weights")
                + (f", {', '.join(fp16)} weights stored as float16" if fp16 else "") + "; "
                f"greedy captions equal the fp32 bundle's on {100 * a.exact:.1f}% of "
                f"{a.clips} test clips."], data, card)
            sounds_reference(int8_dir)
            validate_bundle(int8_dir)
            judge(int8_dir)
            int8_note = [f"An int8 variant is {int8_dir.name} ({size8:.2f} MB of graphs vs "
                         f"{metrics['onnx_megabytes']:.2f} MB)."]
    finish_bundle(args.out, {**fp32.manifest, "metrics": metrics}, parameters, int8_note, data,
                  card)
    sounds_reference(args.out)
    validate_bundle(args.out)
    judge(args.out)
    print(json.dumps({"bundle": str(args.out), "metrics": metrics}, indent=2))
    if refused:
        raise refused


if __name__ == "__main__":
    main()
