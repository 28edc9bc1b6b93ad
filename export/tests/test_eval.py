"""hark-eval: the metric suite on known captions, the diagnostics that expose mode collapse,
and a report over a training run and its bundle."""

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from hark_export.data import features, load_split
from hark_export.decode import SPECIAL, DecodeParams, TorchStepper, decode
from hark_export.evaluate import (HARK, caption_bundle, caption_metrics, coco_metrics, diversity,
                                  hark_flags, main, skipped_metrics)

REFS = [["a dog barks twice", "two barks from a dog"], ["rain falls on a roof", "heavy rain"],
        ["a high beep repeats three times", "three high beeps"]]


def test_captions_equal_to_a_reference_score_higher_than_unrelated_ones():
    perfect, _ = coco_metrics([r[0] for r in REFS], REFS)
    wrong, _ = coco_metrics(["a car passes", "a bell rings", "music plays"], REFS)
    for key in ("bleu_1", "bleu_4", "rouge_l", "cider_d"):
        assert perfect[key] > wrong[key], key
    assert perfect["bleu_1"] == pytest.approx(1.0) and wrong["bleu_4"] < 0.01


def test_diagnostics_expose_a_mode_collapsed_model():
    collapsed = diversity(["a beep a beep"] * 4, scenes=["s1", "s2", "s3", "s4"])
    varied = diversity(["a dog barks", "rain falls", "a high beep", "a low tone"],
                       scenes=["s1", "s2", "s3", "s4"])
    assert collapsed["unique_captions"] == 0.25 and varied["unique_captions"] == 1.0
    assert collapsed["distinct_scenes"] == 0.25 and varied["distinct_scenes"] == 1.0
    assert collapsed["repetition_rate"] == 1.0 and varied["repetition_rate"] == 0.0
    assert collapsed["distinct_2"] < varied["distinct_2"]
    assert collapsed["vocab_used"] == 2 and collapsed["mean_length"] == 4.0


def test_decoding_options_become_the_same_hark_caption_flags():
    assert hark_flags({}) == []
    assert hark_flags({"strategy": "diverse_beam", "beam_size": 4, "no_repeat_ngram": 2}) == [
        "--strategy", "diverse_beam", "--beam-size", "4", "--no-repeat-ngram", "2"]


def test_optional_metrics_are_skipped_with_the_reason():
    for note in skipped_metrics():
        assert "skipped" in note and ("SPICE" in note or "FENSE" in note)


def test_full_suite_with_meteor_and_sentence_bert_ranks_paraphrases_above_unrelated_captions():
    if not shutil.which("java"):
        pytest.skip("METEOR needs Java")
    per_clip = {}
    good = caption_metrics(["a dog is barking", "it is raining", "three beeps"], REFS,
                           per_clip=per_clip)
    bad = caption_metrics(["a car passes", "a bell rings", "music plays"], REFS)
    assert good["meteor"] > bad["meteor"] and good["sbert_sim"] > bad["sbert_sim"] + 0.2
    assert len(per_clip["cider_d"]) == 3 and len(per_clip["sbert_sim"]) == 3


def test_a_run_is_evaluated_into_json_and_a_markdown_report(tiny_synth, tmp_path, monkeypatch):
    from hark_export.config import TrainConfig
    from hark_export.train import train
    import hark_export.evaluate as ev
    # The metric suite is tested above; here the plumbing, with the fast metrics only.
    monkeypatch.setattr(ev, "caption_metrics",
                        lambda hyps, refs, scenes=None, per_clip=None: _fast(hyps, refs, scenes, per_clip))
    run = tmp_path / "run"
    train(TrainConfig(data=str(tiny_synth), out=str(run), arch="baseline",
                      cache=str(tmp_path / "cache"), batch_size=8, epochs=1, evaluate_test=False,
                      model={"channels": [8, 16, 16], "d_model": 32, "embed": 32, "hidden": 64}))
    main(["--run", str(run), "--out", str(tmp_path / "report"), "--strategy", "greedy"])
    result = json.loads((tmp_path / "report" / "eval.json").read_text())
    model = result["models"][0]
    assert model["kind"] == "run" and len(model["captions"]) == len(result["clips"]) == 3
    assert result["decoding"].startswith('{"strategy": "greedy"} over')
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert "| run (run) |" in report and "![run (run) loss](run-loss.png)" in report
    assert "### Best (CIDEr-D)" in report and (tmp_path / "report" / "run-loss.png").exists()


def _fast(hyps, refs, scenes, per_clip):
    import numpy as np
    out, cider = coco_metrics(hyps, [[r.lower() for r in rs] for rs in refs])
    if per_clip is not None:
        per_clip.update(cider_d=cider, sbert_sim=np.zeros(len(hyps)))
    return {**out, **diversity(hyps, scenes)}



def _hark():
    """The hark binary if it is built and has `hark caption`, else None."""
    path = Path(os.environ.get("HARK", HARK))
    if not path.exists() or subprocess.run([str(path), "caption", "--help"],
                                           capture_output=True).returncode != 0:
        return None
    return path


def test_a_bundle_decoded_by_hark_gives_the_reference_decoders_tokens(tiny_synth, tmp_path):
    hark = _hark()
    if hark is None:
        pytest.skip("the hark binary with `hark caption` is not built")
    from test_export import _export
    model = _export("attention", tmp_path / "bundle")
    frontend = tomllib.loads((tmp_path / "bundle" / "hark-model.toml").read_text())["frontend"]
    fps = frontend["sample_rate"] / frontend["hop_length"]
    clips = load_split(tiny_synth, "test")
    for given in ({"strategy": "greedy"}, {"strategy": "beam", "beam_size": 3}):
        windows = caption_bundle(tmp_path / "bundle", clips, given, hark)
        params = DecodeParams(**{"max_len": 29, **given})
        for clip, window in zip(clips, windows):
            # hark captions the file's first window: frames [0, end).
            mel = features(clip.audio, frontend)[:, : round(window["end"] * fps)]
            memory = model.encode(torch.from_numpy(mel)[None]).detach()
            expected = decode(TorchStepper(model, memory), SPECIAL, params)[0].tokens
            assert window["tokens"] == expected, (given, clip.id)


def _tagged(tiny_synth, out):
    """The tiny synthetic set with each clip's scene as its one category (absolute paths)."""
    out.mkdir()
    for split in ("train", "val", "test"):
        rows = [json.loads(l) for l in (tiny_synth / f"{split}.jsonl").read_text().splitlines()]
        for r in rows:
            r["audio"] = str(tiny_synth / r["audio"])
            r["tags"] = [r["scene"].split("+")[0]]
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


@pytest.mark.parametrize("arch", ["attention", "transformer"])
def test_attention_weights_are_one_distribution_per_decoded_word(arch, tiny_synth, tmp_path):
    from hark_export.config import model_config
    from hark_export.diagnostics import attention_map
    from hark_export.model import build_model
    torch.manual_seed(0)
    model = build_model(model_config(arch, {"vocab_size": 40, "channels": [8, 16, 16],
                                            "d_model": 32})).eval()
    ids, weights = attention_map(model, np.random.default_rng(0).normal(size=(64, 300)))
    assert weights.shape[0] == len(ids) > 0
    assert np.allclose(weights.sum(axis=1), 1, atol=1e-5)
    assert model.attention_log is None if arch == "attention" else model.dec[-1].attention_log is None


def test_a_run_report_has_attention_plots_an_embedding_map_categories_and_failures(
        tiny_synth, tmp_path, monkeypatch):
    from hark_export.config import TrainConfig
    from hark_export.train import train
    import hark_export.evaluate as ev
    monkeypatch.setattr(ev, "caption_metrics",
                        lambda hyps, refs, scenes=None, per_clip=None: _fast(hyps, refs, scenes, per_clip))
    data = _tagged(tiny_synth, tmp_path / "tagged")
    run = tmp_path / "run"
    train(TrainConfig(data=str(data), out=str(run), arch="attention", batch_size=8, epochs=1,
                      cache=str(tmp_path / "cache"), evaluate_test=False,
                      model={"channels": [8, 16, 16, 16], "d_model": 32, "attn_dim": 32,
                             "embed": 32, "hidden": 64}))
    out = tmp_path / "report"
    main(["--run", str(run), "--out", str(out), "--split", "train", "--strategy", "greedy",
          "--attention-plots", "2"])
    report = (out / "REPORT.md").read_text()
    assert "![attention](run-attention-1.png)" in report and "run-attention-2.png" in report
    assert (out / "run-attention-2.png").stat().st_size > 1000
    assert not (out / "run-attention-3.png").exists()
    assert "![embedding map](run-embeddings.png)" in report and (out / "run-embeddings.png").exists()
    cats = {json.loads(l)["tags"][0] for l in (data / "train.jsonl").read_text().splitlines()}
    assert all(f"| {c} |" in report for c in cats)
    worst = report.split("### Failure analysis")[1]
    assert worst.count("\n- `") == 10 and "(CIDEr-D " in worst
