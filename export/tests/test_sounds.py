"""Learned sounds' reference: the probe against scipy's optimiser, the threshold rule, the
bundle check, and the daemon's probe against this one on the shipped default bundle."""

import json
import os
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

from hark_export.bundle import BundleError, _check_sounds
from hark_export.evaluate import HARK
from hark_export.sounds import (PROBE_L2, centred, fit_probe, precise_threshold, probe_scores,
                                unit)

ROOT = Path(__file__).resolve().parents[2]


def lbfgs_probe(pos, neg):
    """The probe as export/scripts/sounds_by_example.py first fitted it: scipy's L-BFGS-B."""
    x = np.vstack([pos, neg])
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    w = np.where(y == 1, 0.5 / len(pos), 0.5 / len(neg))

    def loss(t):
        z = x @ t[:-1] + t[-1]
        g = w * (1 / (1 + np.exp(-z)) - y)
        value = np.sum(w * (np.logaddexp(0, z) - y * z)) + PROBE_L2 / 2 * t[:-1] @ t[:-1]
        return value, np.r_[x.T @ g + PROBE_L2 * t[:-1], g.sum()]

    t = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                 options={"maxiter": 1000, "gtol": 1e-12}).x
    return t, loss


def test_newtons_probe_reaches_the_optimum_scipy_finds():
    rng = np.random.default_rng(0)
    pos = unit(rng.normal(size=(3, 32)) + 2)
    neg = unit(rng.normal(size=(200, 32)))
    ours = fit_probe(pos, neg)
    theirs, loss = lbfgs_probe(pos, neg)
    assert loss(ours)[0] <= loss(theirs)[0] + 1e-9
    assert np.abs(ours - theirs).max() < 1e-3
    assert probe_scores(ours, pos).min() > probe_scores(ours, neg).max()


def test_the_threshold_is_the_lowest_with_pooled_precision_at_target():
    # Positives score 0.6-0.9, negatives 0.1-0.7: from 0.7 up every firing is right.
    s = np.r_[np.linspace(0.6, 0.9, 10), np.linspace(0.1, 0.7, 90)]
    pos = np.r_[np.ones(10, bool), np.zeros(90, bool)]
    t = precise_threshold([(s, pos)])
    fired = s >= t
    assert (pos[fired]).mean() >= 0.9
    lower = s[s < t].max()
    assert pos[s >= lower].mean() < 0.9


def test_a_reference_file_of_the_wrong_size_or_not_finite_is_refused(tmp_path):
    table = {"output": "embedding", "file": "sounds.f32", "dim": 4, "negatives": 2,
             "probe_l2": 0.01, "examples": [1, 3], "thresholds": [0.8, 0.7]}
    np.zeros(12, "<f4").tofile(tmp_path / "sounds.f32")
    _check_sounds(tmp_path, table)
    np.zeros(11, "<f4").tofile(tmp_path / "sounds.f32")
    with pytest.raises(BundleError, match="expected"):
        _check_sounds(tmp_path, table)
    np.r_[np.zeros(11), np.nan].astype("<f4").tofile(tmp_path / "sounds.f32")
    with pytest.raises(BundleError, match="not finite"):
        _check_sounds(tmp_path, table)
    np.zeros(12, "<f4").tofile(tmp_path / "sounds.f32")
    with pytest.raises(BundleError, match="ascend"):
        _check_sounds(tmp_path, {**table, "examples": [3, 1]})
    _check_sounds(tmp_path, {**table, "parts": 2})
    with pytest.raises(BundleError, match="divides dim"):
        _check_sounds(tmp_path, {**table, "parts": 3})


def test_each_block_of_the_embedding_weighs_the_same():
    # As daemon/src/sounds/probe.rs's test: the second block's larger values do not drown the
    # first.
    x = centred(np.array([3.0, 4.0, 600.0, 800.0]), np.zeros(4), parts=2)
    np.testing.assert_allclose(x, np.array([0.6, 0.8, 0.6, 0.8]) / np.sqrt(2))
    rows = centred(np.random.default_rng(0).normal(size=(5, 6)), np.ones(6), parts=3)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1)


def test_the_daemons_probe_scores_an_example_as_this_one_does(tmp_path):
    hark = Path(os.environ.get("HARK", HARK))
    if not hark.exists():
        pytest.fail(f"{hark} not built: run `cargo build --workspace --bins` first")
    bundle = ROOT / "daemon/assets/model"
    config = tmp_path / "hark.toml"
    config.write_text(f'[sounds]\ndir = "{tmp_path / "sounds"}"\n')
    demo = str(ROOT / "daemon/assets/demo.wav")
    subprocess.run([hark, "learn", "-c", config, "rain", demo], check=True, capture_output=True)
    shown = subprocess.run([hark, "sounds", "-c", config, "show", "rain"], check=True,
                           capture_output=True, text=True).stdout
    daemon = float(shown.split("(scores ")[1].split(")")[0])
    profile = json.loads((tmp_path / "sounds/rain.json").read_text())
    sounds = tomllib.loads((bundle / "hark-model.toml").read_text())["sounds"]
    rows = np.fromfile(bundle / "sounds.f32", "<f4").reshape(-1, sounds["dim"])
    example = centred(np.asarray(profile["examples"], np.float64), rows[0], sounds["parts"])
    theta = fit_probe(example, rows[1:].astype(np.float64))
    ours = float(probe_scores(theta, example)[0])
    assert abs(ours - daemon) < 0.006, (ours, daemon)  # the daemon prints two decimals
