"""Reference decodes: what hark's decoding must give, decoded in Python (decode.py, the
daemon's algorithms) through PyTorch or onnxruntime, with the `hark caption` options that ask
the binary for the same decoding. The fixtures (fixtures.py) and the agreement report
(agreement.py) are both built on them.
"""

from pathlib import Path

import torch

from hark_export.bundle import OnnxModel
from hark_export.data import features
from hark_export.decode import SPECIAL, DecodeParams, Hypothesis, TorchStepper, decode

# `hark caption` options giving the same decoding as each reference entry.
DECODINGS = {"greedy": (DecodeParams(strategy="greedy"), ["--strategy", "greedy",
                                                          "--alternatives", "0"]),
             "beam3": (DecodeParams(strategy="beam", beam_size=3, alternatives=2),
                       ["--strategy", "beam", "--beam-size", "3", "--alternatives", "2"])}


def _entry(h: Hypothesis, text) -> dict:
    return {"tokens": h.tokens, "text": text(h.tokens), "score": h.score}


def reference_params(decoding: dict, key: str) -> DecodeParams:
    """DECODINGS[key] over a bundle's [decoding] table: what `hark caption` decodes with the
    key's options and that bundle."""
    p = DECODINGS[key][0]
    return DecodeParams(**{**DecodeParams.from_manifest(decoding).__dict__,
                           "strategy": p.strategy, "beam_size": p.beam_size,
                           "alternatives": p.alternatives})


def torch_stepper(model):
    """`stepper_for` of `references` over a PyTorch model: a clip's mel -> its stepper."""
    def stepper_for(mel):
        return TorchStepper(model, model.encode(torch.from_numpy(mel)[None]).detach())
    return stepper_for


def references(bundle: Path, clips: list[Path], stepper_for) -> dict:
    """Greedy and beam-3 decodes of `clips` with the bundle's [decoding] defaults otherwise;
    `stepper_for(mel)` gives the stepper (PyTorch or onnxruntime) of a clip."""
    onnx_model = OnnxModel(bundle)
    frontend = onnx_model.manifest["frontend"]
    out = {"bundle": f"bundles/{bundle.name}", "clips": [],
           "hark_args": {k: args for k, (_, args) in DECODINGS.items()}}
    for wav in clips:
        mel = features(wav, frontend)
        row = {"wav": f"clips/{wav.name}", "frames": int(mel.shape[1])}
        for key in DECODINGS:
            params = reference_params(onnx_model.manifest["decoding"], key)
            best, *rest = decode(stepper_for(mel), SPECIAL, params)
            row[key] = {**_entry(best, onnx_model.text),
                        "alternatives": [_entry(h, onnx_model.text) for h in rest]}
        out["clips"].append(row)
    return out
