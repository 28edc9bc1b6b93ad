"""Shared fixtures: one thread for torch (CI has 2 cores) and a tiny synthetic dataset."""

import pytest
import torch

from hark_export.synth import generate

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """30 synthetic scenes without speech (24 train / 3 val / 3 test)."""
    out = tmp_path_factory.mktemp("synth")
    generate(30, seed=7, out=out, speech=False)
    return out
