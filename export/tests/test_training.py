import csv
import json

import pytest
import torch

from hark_export.config import TrainConfig, tiny
from hark_export.data import collate
from hark_export.metrics import bleu4
from hark_export.train import (Prepared, caption_loss, evaluate_loss, load_checkpoint, lr_factor,
                               make_optimizer, spec_augment, sweep, train, _grid)

TINY = tiny()


def _cfg(data, tmp_path, arch="baseline", **kw):
    return TrainConfig(data=str(data), out=str(tmp_path / "run"), arch=arch,
                       cache=str(tmp_path.parent / "cache"), model=TINY[arch], batch_size=8,
                       **kw)


@pytest.mark.parametrize("arch", list(TINY))
def test_each_architecture_loss_falls_within_a_few_dozen_steps(arch, tiny_synth, tmp_path):
    torch.manual_seed(0)
    prep = Prepared(_cfg(tiny_synth, tmp_path, arch))
    model, data = prep.model, prep.datasets["train"]
    batches = [collate([data[i] for i in range(lo, lo + 8)]) for lo in range(0, len(data), 8)]
    before = evaluate_loss(model, batches, "cpu")
    optimizer = make_optimizer(model, 3e-3, 0.01)
    model.train()
    for step in range(36):
        mel, tokens, clip_index, _ = batches[step % len(batches)]
        loss = caption_loss(model, mel, tokens, clip_index, 0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = evaluate_loss(model, batches, "cpu")
    assert after < 0.75 * before, (before, after)


def test_a_run_writes_checkpoint_log_curve_and_metrics_and_resumes(tiny_synth, tmp_path):
    cfg = _cfg(tiny_synth, tmp_path, epochs=2, scheduled_sampling=0.5)
    summary = train(cfg)
    out = tmp_path / "run"
    for name in ("best.pt", "last.pt", "vocab.txt", "config.json", "loss.png", "metrics.json"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) >= {"train_loss", "val_loss", "lr", "grad_norm"}
    config = json.loads((out / "config.json").read_text())
    assert config["frontend"]["norm_std"] > 0 and config["frontend"]["n_mels"] == 64
    test = summary["test"]
    # Three test clips, all among the examples: the reported BLEU-4 is theirs.
    assert test["clips"] == 3 and len(test["examples"]) == 3
    assert test["bleu4"] == bleu4([e["hypothesis"] for e in test["examples"]],
                                  [e["references"] for e in test["examples"]])

    model, vocab, frontend, ckpt = load_checkpoint(out / "best.pt")
    assert not model.training and len(vocab) == model.config.vocab_size
    assert frontend == config["frontend"] and ckpt["epoch"] == summary["best_epoch"]

    with pytest.raises(FileExistsError):
        train(cfg)
    resumed = train(TrainConfig(**{**cfg.__dict__, "epochs": 3, "resume": True}))
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and resumed["epochs"] == 3


def test_the_same_seed_trains_the_same_model(tiny_synth, tmp_path):
    a = train(_cfg(tiny_synth, tmp_path / "a", epochs=1, evaluate_test=False))
    b = train(_cfg(tiny_synth, tmp_path / "b", epochs=1, evaluate_test=False))
    assert a["best_val_loss"] == b["best_val_loss"]


def test_sweep_trains_every_point_of_its_grid_and_writes_table_and_plot(tiny_synth, tmp_path,
                                                                        capsys):
    rows = sweep(_cfg(tiny_synth, tmp_path, epochs=1), {"lr": [1e-3, 3e-3], "hidden": [32, 48]})
    assert [(r["lr"], r["hidden"]) for r in rows] == [(1e-3, 32), (1e-3, 48), (3e-3, 32),
                                                      (3e-3, 48)]
    run = tmp_path / "run"
    assert json.loads((run / "lr0.003_hidden48" / "config.json").read_text())["model"]["hidden"] == 48
    table = capsys.readouterr().out.split("best val loss")[1]
    assert "1.00e-03 | 32" in table and "3.00e-03 | 48" in table
    assert len({r["best_val_loss"] for r in rows}) == 4  # each point trained its own model
    for name in ("sweep.csv", "sweep.md", "sweep.png"):
        assert (run / name).exists(), name
    assert _grid("", ["lora_rank=4,8", "lora_alpha=8"]) == {"lora_rank": [4, 8],
                                                           "lora_alpha": [8]}


def test_learning_rate_warms_up_linearly_then_decays_along_a_cosine():
    factors = [lr_factor(s, total=100, warmup=10, min_ratio=0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[55] == pytest.approx(0.55, abs=0.02)
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)


def test_spec_augment_masks_bands_of_time_and_frequency():
    torch.manual_seed(0)
    cfg = TrainConfig(spec_time_masks=1, spec_time_width=10, spec_freq_masks=1, spec_freq_width=4)
    out = spec_augment(torch.ones(16, 64, 100), cfg)
    zero_frames = (out == 0).all(dim=1).sum(dim=1)  # whole time columns masked per clip
    zero_bins = (out == 0).all(dim=2).sum(dim=1)
    assert zero_frames.max() <= 10 and zero_bins.max() <= 4 and zero_frames.sum() > 0
    assert zero_bins.sum() > 0
