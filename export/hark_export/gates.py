"""The export's gates: onnxruntime fp32 against PyTorch (parity), and int8 against fp32
(agreement of greedy captions); a bundle that fails one is refused.
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hark_export.bundle import OnnxModel
from hark_export.data import BOS, EOS
from hark_export.decode import SPECIAL, DecodeParams, TorchStepper, decode
from hark_export.graphs import ExportRefused
from hark_export.progress import progress


def hark_judges(bundle: Path, hark: Path) -> str:
    """`hark check-bundle DIR`: the daemon loads the bundle as `hark run` would and is the
    judge; returns its one-line description, raises ExportRefused with hark's reason."""
    if not Path(hark).is_file():
        raise ExportRefused(
            f"{hark}: no hark binary to check the bundle with (`hark check-bundle` judges every "
            "bundle): build it with `cargo build -p hark`, or pass --hark or set $HARK")
    done = subprocess.run([str(hark), "check-bundle", str(bundle)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise ExportRefused(f"hark check-bundle refuses {bundle}: "
                            f"{(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


@dataclass
class Parity:
    """onnxruntime fp32 against PyTorch on a sample of clips."""

    clips: int
    max_abs_diff: float  # over memory, initial states and every step's logits
    captions_equal: int  # clips whose greedy captions are identical
    # The largest |diff| / max(1, max |value|) of any compared tensor: float32 round-off
    # grows with the values (logits of 20, a 28-layer CNN's memory), so the gate is relative.
    max_rel_diff: float = 0.0


@torch.no_grad()
def parity(model, onnx_model: OnnxModel, mels: list[np.ndarray]) -> Parity:
    """Compares encoder outputs and the logits along PyTorch's greedy path, and greedy
    captions, of a PyTorch model and its exported bundle."""
    greedy = DecodeParams(max_len=onnx_model.manifest["tokens"]["max_len"])
    worst, relative, equal = 0.0, 0.0, 0

    def compare(a: np.ndarray, b: np.ndarray) -> None:
        nonlocal worst, relative
        diff = float(np.abs(a - b).max(initial=0.0))
        worst = max(worst, diff)
        relative = max(relative, diff / max(1.0, float(np.abs(a).max(initial=0.0))))

    for mel in progress(mels, "parity gate", unit="clip"):
        memory = model.encode(torch.from_numpy(np.asarray(mel, np.float32))[None])
        torch_stepper = TorchStepper(model, memory)
        onnx_stepper = onnx_model.stepper(mel)
        compare(memory.numpy(), onnx_stepper.memory)
        for a, b in zip(torch_stepper.init_states, onnx_stepper.init_states):
            compare(a.numpy(), b)
        path = decode(torch_stepper, SPECIAL, greedy)[0].tokens
        onnx_path = decode(onnx_stepper, SPECIAL, greedy)[0].tokens
        equal += path == onnx_path
        ts, os_ = torch_stepper.init(1), onnx_stepper.init(1)
        for token in [BOS] + path:
            lt, ts = torch_stepper.step([token], ts)
            lo, os_ = onnx_stepper.step([token], os_)
            compare(lt, lo)
    return Parity(len(mels), worst, equal, relative)


def check_parity(p: Parity, tolerance: float = 1e-4) -> None:
    """Raises ExportRefused unless every compared tensor agrees within `tolerance` relative
    to its scale (see `Parity.max_rel_diff`) and every greedy caption is identical."""
    if p.max_rel_diff > tolerance or p.captions_equal < p.clips:
        raise ExportRefused(
            f"parity gate: onnxruntime fp32 vs PyTorch max |diff| {p.max_abs_diff:.2e}, "
            f"relative {p.max_rel_diff:.2e} (limit {tolerance:.0e}), identical greedy captions "
            f"{p.captions_equal}/{p.clips}; the exported graphs do not compute the model")


@dataclass
class Agreement:
    """Greedy decoding of one bundle against another on the same clips."""

    clips: int
    exact: float  # share of clips with identical token sequences
    tokens: float  # share of positions (end token included) with the same token


def greedy_tokens(onnx_model: OnnxModel, mels: list[np.ndarray],
                  desc: str = "greedy captions") -> list[list[int]]:
    """Greedy token ids of every clip."""
    greedy = DecodeParams(max_len=onnx_model.manifest["tokens"]["max_len"])
    return [onnx_model.decode(mel, greedy)[0].tokens
            for mel in progress(mels, desc, unit="clip")]


def agreement(a: list[list[int]], b: list[list[int]]) -> Agreement:
    """Exact-caption and position-wise token agreement of two decodings of the same clips."""
    same = positions = 0
    for x, y in zip(a, b):
        x, y = x + [EOS], y + [EOS]
        same += sum(i == j for i, j in zip(x, y))
        positions += max(len(x), len(y))
    exact = sum(x == y for x, y in zip(a, b))
    return Agreement(len(a), exact / max(len(a), 1), same / max(positions, 1))




def check_int8(a: Agreement, minimum: float = 0.8) -> None:
    """Raises ExportRefused when int8 greedy captions equal fp32 on fewer than `minimum`."""
    if a.exact < minimum:
        raise ExportRefused(
            f"int8 gate: greedy captions equal fp32 on {100 * a.exact:.1f}% of {a.clips} clips "
            f"(token agreement {100 * a.tokens:.1f}%), below the required {100 * minimum:.0f}%: "
            "quantization changes what the model says; ship the fp32 bundle")
