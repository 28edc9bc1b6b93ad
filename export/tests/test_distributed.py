"""hark-train under torchrun: two gloo processes on this CPU follow one process's loss curve
with the same global batch, and a run resumes on another number of processes."""

import csv
import json
import subprocess
import sys

import pytest

from hark_export.config import tiny
from hark_export.synth import generate

TINY = [a for k, v in tiny()["attention"].items()
        for a in ("--set", f"{k}={json.dumps(v, separators=(',', ':'))}")]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """100 synthetic scenes (80 train): enough for batches of 16 split over 2 processes."""
    out = tmp_path_factory.mktemp("ddp")
    generate(100, seed=3, out=out / "data", speech=False)
    return out


def _train(scenes, out, epochs, processes, *extra):
    args = ["train", str(scenes / "data"), "--arch", "attention", *TINY, "--batch-size", "16",
            "--epochs", str(epochs), "--lr", "3e-3", "--threads", "1",
            "--cache", str(scenes / "cache"), "--no-evaluate-test", "--out", str(out), *extra]
    launcher = [sys.executable, "-m", "hark_export.train"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", str(processes), "-m", "hark_export.train"]
    done = subprocess.run(launcher + args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(open(out / "log.csv"))]


def test_two_gloo_processes_give_the_loss_curve_of_one_with_the_same_global_batch(scenes):
    one = _train(scenes, scenes / "one", 4, 1)
    two = _train(scenes, scenes / "two", 4, 2)
    # Per process half the batch, other dropout draws and another shuffle: close, not equal.
    for a, b in zip(one, two):
        assert abs(a["val_loss"] - b["val_loss"]) < 0.02 * a["val_loss"], (one, two)
        assert a["lr"] == pytest.approx(b["lr"])
    assert two[-1]["val_loss"] < 0.95 * two[0]["val_loss"]
    # Gradient accumulation: 2 processes x 2 micro-batches of 4 is the same global batch.
    acc = _train(scenes, scenes / "acc", 4, 2, "--accumulate", "2")
    assert abs(acc[-1]["val_loss"] - one[-1]["val_loss"]) < 0.02 * one[-1]["val_loss"]


def test_a_run_of_two_processes_resumes_in_one(scenes):
    out = scenes / "resumed"
    first = _train(scenes, out, 2, 2)
    rows = _train(scenes, out, 4, 1, "--resume")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[:2] == first
    assert rows[-1]["val_loss"] < rows[1]["val_loss"]


def test_a_batch_that_does_not_split_over_the_processes_is_refused(scenes):
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "hark_export.train", "train", str(scenes / "data"), "--arch", "attention", *TINY,
         "--batch-size", "15", "--epochs", "1", "--cache", str(scenes / "cache"),
         "--out", str(scenes / "odd")], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "does not split into 2 processes" in done.stderr
