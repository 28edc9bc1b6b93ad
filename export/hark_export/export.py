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
import hashlib
import json
import math
import re
import shutil
import sys
import tomllib
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from hark_export.data import BOS, EOS, PAD, UNK, Vocab, load_split, logmel, read_audio
from hark_export.decode import DecodeParams, SpecialTokens, TorchStepper, decode
from hark_export.progress import progress

MANIFEST = "hark-model.toml"
FORMAT_VERSION = 1
OPSET = 17
SPECIAL = SpecialTokens(bos=BOS, eos=EOS, pad=PAD)
INT8_OPS = ["MatMul", "Gemm", "Gather"]
DYNAMIC_AXES = ("batch", "steps")
# No trigram twice: a beam otherwise likes "a baby cries, then a baby cries" for one sound.
DEFAULT_DECODING = DecodeParams(strategy="beam", beam_size=3, alternatives=2, no_repeat_ngram=3)
TORCHSCRIPT = {"encoder": "encoder.pt", "decoder": "decoder.pt"}


class BundleError(Exception):
    """A bundle the daemon would refuse; the message names the file and the field."""


class ExportRefused(Exception):
    """The parity or int8 gate failed; the message says which numbers and why."""


# ---- the two graphs ----

class EncoderGraph(torch.nn.Module):
    """mel [1, n_mels, frames] -> (memory [1, steps, D], *initial states with batch 1,
    *each tag head's probabilities [1, n_labels])."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, mel):
        memory, tags = self.model.encode_with_tags(mel)
        return (memory, *self.model.init_state(memory), *tags)


class DecoderGraph(torch.nn.Module):
    """(tokens [batch], memory [batch, steps, D], *states) -> (logits [batch, V], *states)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens, memory, *states):
        return tuple(self.model.step(tokens, memory, *states))


def _axes(shape) -> dict:
    """{axis: name} of a declared shape's named (dynamic) axes."""
    return {i: d for i, d in enumerate(shape) if isinstance(d, str)}


def state_entries(model) -> list[dict]:
    """The manifest's [[decoder.states]] for a model, in its `state_specs()` order."""
    entries = []
    for s in model.state_specs():
        unknown = [d for d in s.shape if isinstance(d, str) and d not in DYNAMIC_AXES]
        if unknown:
            raise ValueError(f"state {s.name}: dynamic axis {unknown[0]!r} is not one of "
                             f"{DYNAMIC_AXES}; the daemon knows only those")
        entries.append({"name": s.name, "input": s.name, "output": f"{s.name}_out",
                        "init_output": f"init_{s.name}", "shape": list(s.shape),
                        "batch_axis": s.batch_axis, "dtype": s.dtype})
    return entries


def export_graphs(model, out: Path, n_mels: int, frames: int = 400) -> list[dict]:
    """Writes OUT/encoder.onnx and OUT/decoder.onnx; returns the state entries.

    Traced on a `frames`-long random mel and a decoder batch of 2, with frames, steps and
    batch declared dynamic.
    """
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about Python values read from tensors: here they are sizes fixed
        # by the config or recorded as dynamic axes, and the parity gate checks the result.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*LSTM can cause an error")  # h0/c0 are inputs
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        return _export_graphs(model, out, n_mels, frames)


def _export_graphs(model, out: Path, n_mels: int, frames: int) -> list[dict]:
    model = model.eval()
    states = state_entries(model)
    mel = torch.randn(1, n_mels, frames, generator=torch.Generator().manual_seed(0))
    memory = model.encode(mel)
    enc_names = (["memory"] + [s["init_output"] for s in states]
                 + [h["output"] for h in model.tag_heads()])
    enc_axes = {"mel": {2: "frames"}, "memory": {1: "steps"}}
    for s in states:  # the encoder's batch is 1: only "steps" stays dynamic
        enc_axes[s["init_output"]] = {i: d for i, d in _axes(s["shape"]).items() if d != "batch"}
    # Wrappers are built in eval mode: export restores the wrapper's mode onto the model.
    torch.onnx.export(EncoderGraph(model).eval(), (mel,), out / "encoder.onnx", dynamo=False,
                      opset_version=OPSET, input_names=["mel"], output_names=enc_names,
                      dynamic_axes=enc_axes)

    batch = 2
    init = TorchStepper(model, memory).init(batch)
    tokens = torch.full((batch,), BOS, dtype=torch.long)
    dec_in = ["tokens", "memory"] + [s["input"] for s in states]
    dec_out = ["logits"] + [s["output"] for s in states]
    dec_axes = {"tokens": {0: "batch"}, "memory": {0: "batch", 1: "steps"},
                "logits": {0: "batch"}}
    for s in states:
        dec_axes[s["input"]] = dec_axes[s["output"]] = _axes(s["shape"])
    example = (tokens, memory.expand(batch, -1, -1), *init)
    torch.onnx.export(DecoderGraph(model).eval(), example, out / "decoder.onnx", dynamo=False,
                      opset_version=OPSET, input_names=dec_in, output_names=dec_out,
                      dynamic_axes=dec_axes)
    shapes = [["batch"], ["batch", "steps", memory.shape[2]]] + [s["shape"] for s in states]
    keep_unused_inputs(out / "decoder.onnx", dec_in, example, shapes)
    export_torchscript(model, out, mel, example)
    return states


def export_torchscript(model, out: Path, mel, example: tuple, tolerance: float = 1e-4) -> None:
    """Writes OUT/encoder.pt and OUT/decoder.pt: the wrappers traced to TorchScript, with the
    ONNX graphs' inputs and outputs in the same order. Refuses if a traced graph differs from
    the model on other window lengths or batch sizes (a shape frozen by the tracer)."""
    encoder = torch.jit.trace(EncoderGraph(model).eval(), (mel,), check_trace=False)
    decoder = torch.jit.trace(DecoderGraph(model).eval(), example, check_trace=False)
    worst = 0.0
    for frames in (mel.shape[2] // 2 + 7, mel.shape[2] + 123):
        other = torch.randn(1, mel.shape[1], frames, generator=torch.Generator().manual_seed(1))
        outputs = zip(encoder(other), EncoderGraph(model)(other))
        worst = max([worst] + [(a - b).abs().max().item() for a, b in outputs])
        memory = model.encode(other)
        for batch in (1, 3):
            step = (torch.full((batch,), BOS, dtype=torch.long), memory.expand(batch, -1, -1),
                    *TorchStepper(model, memory).init(batch))
            outputs = zip(decoder(*step), DecoderGraph(model)(*step))
            worst = max([worst] + [(a - b).abs().max().item() for a, b in outputs])
    if worst > tolerance:
        raise ExportRefused(f"TorchScript twin differs from the model by {worst:.2e} "
                            f"(> {tolerance}) on other window lengths or batch sizes")
    encoder.save(str(out / TORCHSCRIPT["encoder"]))
    decoder.save(str(out / TORCHSCRIPT["decoder"]))


def keep_unused_inputs(path: Path, names: list[str], example: tuple, shapes: list) -> None:
    """Declares again the inputs the exporter dropped because the graph ignores them (the
    baseline's step never reads the memory), so every graph has the contract's inputs."""
    import onnx
    model = onnx.load(str(path))
    present = {i.name for i in model.graph.input}
    for index, (name, x, shape) in enumerate(zip(names, example, shapes)):
        if name not in present:
            dtype = onnx.helper.np_dtype_to_tensor_dtype(x.numpy().dtype)
            model.graph.input.insert(index, onnx.helper.make_tensor_value_info(name, dtype, shape))
    onnx.save(model, str(path))


# ---- running a bundle with onnxruntime ----

def _session(path: Path):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxModel:
    """A bundle's graphs in onnxruntime, driven like the daemon drives them in tract."""

    def __init__(self, bundle: Path):
        self.dir = Path(bundle)
        self.manifest = tomllib.loads((self.dir / MANIFEST).read_text())
        self.encoder = _session(self.dir / self.manifest["encoder"]["file"])
        self.decoder = _session(self.dir / self.manifest["decoder"]["file"])
        self.states = self.manifest["decoder"].get("states", [])
        self.vocab = (self.dir / self.manifest["tokens"]["vocab"]).read_text().splitlines()

    def encode(self, mel: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(memory [1, S, D], initial states) of a normalised log-mel [n_mels, frames]."""
        enc = self.manifest["encoder"]
        names = [enc["memory"]] + [s["init_output"] for s in self.states]
        out = self.encoder.run(names, {enc["input"]: np.asarray(mel, np.float32)[None]})
        return out[0], out[1:]

    def stepper(self, mel: np.ndarray) -> "OnnxStepper":
        """A decoding session over one clip."""
        return OnnxStepper(self, *self.encode(mel))

    def decode(self, mel: np.ndarray, params: DecodeParams | None = None):
        """Hypotheses for one clip, best first (default: the manifest's decoding)."""
        params = params or DecodeParams.from_manifest(self.manifest["decoding"])
        t = self.manifest["tokens"]
        return decode(self.stepper(mel), SpecialTokens(t["bos"], t["eos"], t["pad"]), params)

    def text(self, tokens: list[int]) -> str:
        """Tokens joined into a caption, special tokens dropped (as `Bundle::text`)."""
        t = self.manifest["tokens"]
        return " ".join(self.vocab[i] for i in tokens if i not in (t["pad"], t["bos"], t["eos"]))


class OnnxStepper:
    """`decode.Stepper` over the decoder graph; states are numpy arrays."""

    def __init__(self, model: OnnxModel, memory: np.ndarray, init: list[np.ndarray]):
        self.model, self.memory, self.init_states = model, memory, init
        self._tiled = memory

    def init(self, batch):
        return self.select(self.init_states, [0] * batch)

    def step(self, tokens, state):
        dec = self.model.manifest["decoder"]
        if self._tiled.shape[0] != len(tokens):
            self._tiled = np.repeat(self.memory, len(tokens), axis=0)
        feed = {dec["tokens"]: np.asarray(tokens, np.int64), dec["memory"]: self._tiled}
        feed.update({s["input"]: x for s, x in zip(self.model.states, state)})
        names = [dec["logits"]] + [s["output"] for s in self.model.states]
        out = self.model.decoder.run(names, feed)
        return out[0], out[1:]

    def select(self, state, rows):
        return [np.take(x, rows, axis=s["batch_axis"]) for s, x in zip(self.model.states, state)]

    def vocab(self):
        return len(self.model.vocab)


# ---- the manifest ----

def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else
                                                 ("inf" if v > 0 else "-inf"))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON escapes are valid TOML basic strings
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(doc: dict) -> str:
    """A small TOML writer for the manifest: scalars and arrays inline, nested tables as
    [a.b] headers, lists of tables as [[a.b]]."""
    lines = []

    def table(prefix: str, d: dict, header: str | None):
        if header:
            lines.extend(["", header])
        subtables = []
        for k, v in d.items():
            if isinstance(v, dict):
                subtables.append((k, v, False))
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                subtables.append((k, v, True))
            else:
                lines.append(f"{_key(k)} = {_value(v)}")
        for k, v, many in subtables:
            name = prefix + _key(k)
            for item in (v if many else [v]):
                table(name + ".", item, f"[[{name}]]" if many else f"[{name}]")

    table("", doc, None)
    return "\n".join(lines).lstrip("\n") + "\n"


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class BundleInfo:
    """What the manifest says about a model beyond its graphs."""

    name: str
    architecture: str
    licence: str
    training_data: str
    window_seconds: float
    hop_seconds: float
    decoding: DecodeParams


def build_manifest(model, frontend: dict, vocab: Vocab, states: list[dict], info: BundleInfo,
                   memory_dim: int, metrics: dict | None = None) -> dict:
    """The manifest without [files] (added by `write_manifest`)."""
    import hark_dsp  # the daemon's front end validates and completes the parameters
    return {
        "format_version": FORMAT_VERSION, "name": info.name, "architecture": info.architecture,
        "licence": info.licence, "training_data": info.training_data,
        "created_by": f"hark-export {version('hark-export')}",
        "frontend": dict(hark_dsp.Frontend(frontend).config),
        "window": {"seconds": info.window_seconds, "hop_seconds": info.hop_seconds},
        # model max_len counts <bos>; the manifest counts generated tokens, <eos> included.
        "tokens": {"vocab": "vocab.txt", "pad": PAD, "bos": BOS, "eos": EOS, "unk": UNK,
                   "max_len": model.config.max_len - 1},
        "encoder": {"file": "encoder.onnx", "input": "mel", "memory": "memory",
                    "memory_dim": memory_dim},
        "decoder": {"file": "decoder.onnx", "tokens": "tokens", "memory": "memory",
                    "logits": "logits", "states": states},
        "decoding": info.decoding.to_manifest(),
        **({"tags": [{"name": h["name"], "labels": h["file"], "output": h["output"],
                      "threshold": h["threshold"]} for h in model.tag_heads()]}
           if model.tag_heads() else {}),
        "torchscript": dict(TORCHSCRIPT),
        "metrics": dict(metrics or {}),
    }


def write_manifest(bundle: Path, manifest: dict) -> None:
    """Hashes every file the bundle holds besides the manifest into [files] and writes it."""
    files = sorted(p.name for p in Path(bundle).iterdir() if p.is_file() and p.name != MANIFEST)
    doc = {k: v for k, v in manifest.items() if k not in ("files", "metrics")}
    doc["files"] = {f: sha256(Path(bundle) / f) for f in files}
    doc["metrics"] = dict(manifest.get("metrics") or {})
    (Path(bundle) / MANIFEST).write_text(to_toml(doc))


# ---- validation: the daemon's loading checks ----

REQUIRED = {
    "": ("format_version", "name", "architecture", "licence", "training_data", "created_by",
         "frontend", "window", "tokens", "encoder", "decoder", "decoding", "files"),
    "window": ("seconds", "hop_seconds"),
    "tokens": ("vocab", "pad", "bos", "eos", "unk", "max_len"),
    "encoder": ("file", "input", "memory", "memory_dim"),
    "decoder": ("file", "tokens", "memory", "logits"),
    "decoder.states": ("name", "input", "output", "init_output", "shape", "batch_axis", "dtype"),
    "tags": ("name", "labels", "output"),
    "torchscript": ("encoder", "decoder"),
}
OPTIONAL = {"": ("tags", "metrics", "torchscript"), "decoder": ("states",),
            "tags": ("threshold",)}


def _check_keys(where: str, table, path: str) -> None:
    if not isinstance(table, dict):
        raise BundleError(f"{MANIFEST}: {path or 'top level'} must be a table")
    required = REQUIRED[where]
    for k in required:
        if k not in table:
            raise BundleError(f"{MANIFEST}: missing key {(path + '.' if path else '') + k}")
    for k in table:
        if k not in required and k not in OPTIONAL.get(where, ()):
            raise BundleError(f"{MANIFEST}: unknown key {(path + '.' if path else '') + k}")


def validate_bundle(bundle: Path, graphs: bool = True) -> dict:
    """Checks a bundle as `hark` does when loading it and returns its manifest.

    Raises BundleError naming the file and field when: the manifest is missing or not TOML;
    format_version is not 1; a key is missing or unknown; a referenced or listed file is
    missing or unlisted; a sha256 differs; [frontend] is not computable by dsp; a token id is
    outside the vocabulary; [decoding] or [window] is out of range; a state's batch axis or
    dynamic axis is wrong; and with `graphs`, when an ONNX file does not load, lacks a
    declared input/output, its logits width differs from the vocabulary or a state's shape
    or dtype disagrees with what the graphs produce (probed on one second of silence).
    """
    bundle = Path(bundle)
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: cannot read: no such file")
    try:
        m = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: not valid TOML: {e}") from None
    _check_keys("", m, "")
    if m["format_version"] != FORMAT_VERSION:
        raise BundleError(f"{MANIFEST}: format_version = {m['format_version']}, but this "
                          f"validator reads version {FORMAT_VERSION}")
    for section in ("window", "tokens", "encoder", "decoder"):
        _check_keys(section, m[section], section)
    for i, s in enumerate(m["decoder"].get("states", [])):
        _check_keys("decoder.states", s, f"decoder.states[{i}]")
    if "torchscript" in m:
        _check_keys("torchscript", m["torchscript"], "torchscript")
    if not isinstance(m.get("tags", []), list):
        raise BundleError(f"{MANIFEST}: tags must be an array of tables ([[tags]])")
    for i, t in enumerate(m.get("tags", [])):
        _check_keys("tags", t, f"tags[{i}]")

    referenced = [("encoder.file", m["encoder"]["file"]), ("decoder.file", m["decoder"]["file"]),
                  ("tokens.vocab", m["tokens"]["vocab"])]
    referenced += [("tags.labels", t["labels"]) for t in m.get("tags", [])]
    for graph, file in m.get("torchscript", {}).items():
        referenced.append((f"torchscript.{graph}", file))
    # Plain names inside the bundle's folder, as the daemon requires.
    for name, file in referenced + [(f'files."{f}"', f) for f in m["files"]]:
        parts = PurePosixPath(str(file)).parts
        if not file or PurePosixPath(str(file)).is_absolute() or ".." in parts:
            raise BundleError(f"{name} = {file!r}: must name a file inside the bundle's folder "
                              "(no '/…' or '..')")
    for name, file in referenced:
        if not (bundle / file).is_file():
            raise BundleError(f'{name} = "{file}", but the bundle has no such file')
        if file not in m["files"]:
            raise BundleError(f'{MANIFEST}: [files] has no sha256 for "{file}"')
    for file, expected in m["files"].items():
        if not (bundle / file).is_file():
            raise BundleError(f'files."{file}" = "{file}", but the bundle has no such file')
        actual = sha256(bundle / file)
        if actual.lower() != str(expected).lower():
            raise BundleError(f"{file}: sha256 is {actual} but [files] in {MANIFEST} says "
                              f"{expected}; the bundle is corrupted or was edited")

    import hark_dsp
    try:
        hark_dsp.Frontend(m["frontend"])
    except ValueError as e:
        raise BundleError(f"{MANIFEST}: frontend: {e}") from None
    vocab = (bundle / m["tokens"]["vocab"]).read_text().splitlines()
    for name in ("pad", "bos", "eos", "unk"):
        if not 0 <= m["tokens"][name] < len(vocab):
            raise BundleError(f"{MANIFEST}: tokens.{name}: id {m['tokens'][name]} is outside "
                              f"the vocabulary ({len(vocab)} tokens in {m['tokens']['vocab']})")
    if m["tokens"]["max_len"] < 1:
        raise BundleError(f"{MANIFEST}: tokens.max_len: must be at least 1")
    try:
        params = DecodeParams.from_manifest(m["decoding"])
        params.validate()
    except (ValueError, TypeError) as e:
        raise BundleError(f"{MANIFEST}: decoding: {e}") from None
    if set(m["decoding"]) - set(params.to_manifest()):
        extra = sorted(set(m["decoding"]) - set(params.to_manifest()))
        raise BundleError(f"{MANIFEST}: decoding: {extra} do not apply to strategy "
                          f"{params.strategy}")
    w = m["window"]
    if not 0 < w["seconds"] <= 600:
        raise BundleError(f"{MANIFEST}: window.seconds: must be in (0, 600]")
    if not 0 < w["hop_seconds"] <= w["seconds"]:
        raise BundleError(f"{MANIFEST}: window.hop_seconds: must be in (0, window.seconds]")
    names = [t["name"] for t in m.get("tags", [])]
    for i, t in enumerate(m.get("tags", [])):
        at = f"{MANIFEST}: tags[{i}] ({t['name']})"
        if not t["name"] or names.count(t["name"]) > 1:
            raise BundleError(f"{at}: name must be non-empty and unique")
        if not 0 < t.get("threshold", 0.5) < 1:
            raise BundleError(f"{at}: threshold must be in (0, 1)")
        labels = (bundle / t["labels"]).read_text().splitlines()
        if not labels or any(not l.strip() for l in labels):
            raise BundleError(f"{at}: {t['labels']} must list one label per line")
    for i, s in enumerate(m["decoder"].get("states", [])):
        at = f"{MANIFEST}: decoder.states[{i}] ({s['name']})"
        shape, axis = s["shape"], s["batch_axis"]
        if not (0 <= axis < len(shape) and shape[axis] == "batch"):
            raise BundleError(f"{at}: batch_axis = {axis} must index the \"batch\" entry of shape")
        for d in shape:
            if isinstance(d, str) and d not in DYNAMIC_AXES:
                raise BundleError(f'{at}: unknown dynamic axis "{d}" in shape; use "batch" or "steps"')
        if s["dtype"] not in ("float32", "int64"):
            raise BundleError(f"{at}: dtype = {s['dtype']!r}, must be float32 or int64")
    if graphs:
        _probe_graphs(bundle, m, len(vocab))
    return m


def _probe_graphs(bundle: Path, m: dict, vocab: int) -> None:
    """The daemon's probe: one second of silence through the encoder, one decoder step."""
    import onnx
    enc, dec, states = m["encoder"], m["decoder"], m["decoder"].get("states", [])
    declared = {enc["file"]: ([enc["input"]], [enc["memory"]] + [s["init_output"] for s in states]
                              + [t["output"] for t in m.get("tags", [])]),
                dec["file"]: ([dec["tokens"], dec["memory"]] + [s["input"] for s in states],
                              [dec["logits"]] + [s["output"] for s in states])}
    for file, (inputs, outputs) in declared.items():
        try:
            graph = onnx.load(str(bundle / file), load_external_data=False).graph
        except Exception as e:  # onnx raises DecodeError and others for a damaged file
            raise BundleError(f"{file}: not a loadable ONNX model: {e}") from None
        have_in, have_out = [i.name for i in graph.input], [o.name for o in graph.output]
        for name in inputs:
            if name not in have_in:
                raise BundleError(f'{file}: has no input "{name}" (its inputs: {", ".join(have_in)})')
        for name in outputs:
            if name not in have_out:
                raise BundleError(f'{file}: has no output "{name}"')
    model = OnnxModel(bundle)
    frames = max(1, m["frontend"]["sample_rate"] // m["frontend"]["hop_length"])
    try:
        memory, init = model.encode(np.zeros((m["frontend"]["n_mels"], frames), np.float32))
    except Exception as e:
        raise BundleError(f"{enc['file']}: fails on one second of silence: {e}") from None
    if memory.ndim != 3 or memory.shape[0] != 1 or memory.shape[2] != enc["memory_dim"]:
        raise BundleError(f'{enc["file"]}: output "{enc["memory"]}" has shape '
                          f'{list(memory.shape)}, expected [1, steps, {enc["memory_dim"]}]')
    steps = memory.shape[1]
    silence = np.zeros((1, m["frontend"]["n_mels"], frames), np.float32)
    for head in m.get("tags", []):
        probs = model.encoder.run([head["output"]], {enc["input"]: silence})[0]
        n = len((bundle / head["labels"]).read_text().splitlines())
        if probs.shape != (1, n):
            raise BundleError(f'{enc["file"]}: output "{head["output"]}" has shape '
                              f'{list(probs.shape)} but {head["labels"]} lists {n} labels')
        if not ((probs >= 0) & (probs <= 1)).all():
            raise BundleError(f'{enc["file"]}: output "{head["output"]}" is not a probability: '
                              "export the tag head with its sigmoid")

    def expect(s, batch):
        return [batch if d == "batch" else steps if d == "steps" else d for d in s["shape"]]

    for s, x in zip(states, init):
        if list(x.shape) != expect(s, 1) or str(x.dtype) != s["dtype"]:
            raise BundleError(f'{enc["file"]}: output "{s["init_output"]}" (initial {s["name"]}) '
                              f'is {x.dtype} {list(x.shape)}, but decoder.states declares '
                              f'{s["dtype"]} {expect(s, 1)} (batch 1)')
    stepper = OnnxStepper(model, memory, init)
    try:
        logits, out = stepper.step([m["tokens"]["bos"]] * 2, stepper.init(2))
    except Exception as e:
        raise BundleError(f"{dec['file']}: fails on a first step: {e}") from None
    if logits.shape != (2, vocab):
        raise BundleError(f'{dec["file"]}: output "{dec["logits"]}" has {logits.shape[-1]} '
                          f'values per hypothesis but {m["tokens"]["vocab"]} has {vocab} tokens')
    for s, x in zip(states, out):
        if list(x.shape) != expect(s, 2) or str(x.dtype) != s["dtype"]:
            raise BundleError(f'{dec["file"]}: output "{s["output"]}" is {x.dtype} '
                              f'{list(x.shape)}, but decoder.states declares {s["dtype"]} '
                              f'{expect(s, 2)} (batch 2)')


# ---- the gates ----

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


INT8_MODES = ("weights", "dynamic")


def quantize(src: Path, dst: Path, ops: list[str] | None = None,
             fp16_ops: list[str] | None = None, mode: str = "weights") -> None:
    """Copies bundle `src` to `dst` with the weights of `ops` (default MatMul, Gemm and
    Gather; LSTM and Softmax always stay fp32) stored as int8 and the weights of `fp16_ops`
    (e.g. Conv) as float16. `mode` "weights" keeps float32 arithmetic (`int8_weights`);
    "dynamic" is onnxruntime's dynamic quantization (int8 arithmetic with activations
    quantized at run time). The fp32 TorchScript twin is left out: it would not be the
    int8 model."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    ops = list(ops or INT8_OPS)
    if "LSTM" in ops:
        raise ValueError("LSTM cannot be quantized: tract has no DynamicQuantizeLSTM")
    if mode not in INT8_MODES:
        raise ValueError(f"int8 mode {mode!r}: one of {', '.join(INT8_MODES)}")
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.suffix == ".onnx":
            if mode == "dynamic":
                quantize_dynamic(f, dst / f.name, op_types_to_quantize=ops,
                                 weight_type=QuantType.QInt8)
            else:
                shutil.copy2(f, dst / f.name)
                int8_weights(dst / f.name, ops)
            if fp16_ops:
                half_weights(dst / f.name, fp16_ops)
        elif f.is_file() and f.name not in TORCHSCRIPT.values():
            shutil.copy2(f, dst / f.name)
    manifest = tomllib.loads((dst / MANIFEST).read_text())
    manifest.pop("torchscript", None)
    write_manifest(dst, manifest)


# Which input of an op is its weight, and the axis of that weight's output channels.
_WEIGHT = {"MatMul": (1, -1), "Gather": (0, 0)}


def _rewrite_weights(path: Path, weights_of, store) -> None:
    """Stores float32 initializers of the graph at `path` in another form, each behind a node
    that turns it back into float32: `weights_of(node)` yields (input index, argument) for the
    inputs of `node` to rewrite; `store(name, array, argument)` returns the new initializers
    and the node that computes `name + "_f32"` from them. An initializer read by several nodes
    is rewritten once. The new nodes read initializers only, so they go first."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    done, nodes = set(), []
    for node in graph.node:
        for k, argument in weights_of(node):
            name = node.input[k] if k < len(node.input) else ""
            init = inits.get(name)
            if init is None or init.data_type != onnx.TensorProto.FLOAT:
                continue
            if name not in done:
                stored, decode = store(name, numpy_helper.to_array(init), argument)
                if decode is None:
                    continue
                graph.initializer.remove(init)
                graph.initializer.extend(stored)
                nodes.append(decode)
                done.add(name)
            node.input[k] = name + "_f32"
    for n in reversed(nodes):
        graph.node.insert(0, n)
    onnx.save(model, str(path))


def int8_weights(path: Path, op_types: list[str]) -> None:
    """Stores the float32 weights of `op_types` nodes as int8, one symmetric scale per output
    channel, each followed by a DequantizeLinear back to float32. A quarter of the bytes,
    and as with `half_weights` the runtimes fold the DequantizeLinear into a float32 constant
    when they load the graph: arithmetic stays float32, so int8 costs no speed (tract's
    dynamically quantized matmuls are slower than its float32 ones on these shapes) and only
    the weights' rounding, not the activations', moves what the model says."""
    import onnx
    from onnx import numpy_helper

    def weights_of(node):
        if node.op_type not in op_types:
            return []
        if node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            return [(1, 0 if trans_b else 1)]
        return [_WEIGHT[node.op_type]] if node.op_type in _WEIGHT else []

    def store(name, w, axis):
        if w.ndim != 2:
            return [], None
        axis = axis % w.ndim
        peak = np.abs(w).max(axis=1 - axis)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        shape = [1, 1]
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        stored = [numpy_helper.from_array(q, name + "_int8"),
                  numpy_helper.from_array(scale, name + "_scale"),
                  numpy_helper.from_array(np.zeros_like(scale, np.int8), name + "_zero")]
        return stored, onnx.helper.make_node(
            "DequantizeLinear", [name + "_int8", name + "_scale", name + "_zero"],
            [name + "_f32"], axis=axis, name=name + "_dequantize")

    _rewrite_weights(path, weights_of, store)


def half_weights(path: Path, op_types: list[str]) -> None:
    """Stores the float32 weights (initializer inputs) of `op_types` nodes as float16, each
    followed by a Cast back to float32: half the bytes, and the runtimes fold the Cast into a
    float32 constant when they load the graph, so arithmetic stays float32. Where int8 moves
    what a CNN says (YAMNet's pointwise convolutions: per-tensor int8 changed the greedy
    caption of over half the test scenes), float16 weights change it almost never."""
    import onnx
    from onnx import numpy_helper

    def weights_of(node):
        return [(k, None) for k in range(len(node.input))] if node.op_type in op_types else []

    def store(name, w, _):
        half = numpy_helper.from_array(w.astype("float16"), name + "_fp16")
        return [half], onnx.helper.make_node("Cast", [half.name], [name + "_f32"],
                                             to=onnx.TensorProto.FLOAT, name=name + "_cast")

    _rewrite_weights(path, weights_of, store)


def check_int8(a: Agreement, minimum: float = 0.8) -> None:
    """Raises ExportRefused when int8 greedy captions equal fp32 on fewer than `minimum`."""
    if a.exact < minimum:
        raise ExportRefused(
            f"int8 gate: greedy captions equal fp32 on {100 * a.exact:.1f}% of {a.clips} clips "
            f"(token agreement {100 * a.tokens:.1f}%), below the required {100 * minimum:.0f}%: "
            "quantization changes what the model says; ship the fp32 bundle")


# ---- model card ----

YAMNET_NOTICE = (
    "The encoder is Google's YAMNet (TF-Hub `yamnet/1`, trained on AudioSet), Copyright "
    "Google LLC, licensed under the Apache License 2.0 (LICENSE-yamnet.txt, "
    "https://www.apache.org/licenses/LICENSE-2.0); hark converted its weights to PyTorch and "
    "ONNX unchanged (int8 bundles: quantized). The `audioset` tag head is YAMNet's own "
    "521-class classifier with its AudioSet class names.")


def model_card(manifest: dict, parameters: int, notes: list[str], data: Path | None = None,
               extra: str = "") -> str:
    """MODEL_CARD.md: what the model is, what it hears, its data, licence, metrics and limits.

    With `data` holding `corpus.json`/`scenes.json` (`hark-data scenes`), the categories come
    with their training recordings, clips and scenes; `extra` (Markdown) is appended."""
    fe = manifest["frontend"]
    lines = [f"# {manifest['name']}", "",
             f"An audio-captioning model for hark: architecture `{manifest['architecture']}`, "
             f"{parameters:,} parameters, exported by {manifest['created_by']}.", ""]
    heads = manifest.get("tags", [])
    if heads:
        lines += ["## Tags", "", "Besides a caption, every window gets tag probabilities from "
                  "these heads (published at or over the threshold):", ""]
        lines += [f"- `{h['name']}`: `{h['labels']}`, threshold {h.get('threshold', 0.5)}"
                  for h in heads]
        lines.append("")
    lines += ["## Data", "", f"Trained on: {manifest['training_data']}.", ""]
    corpus, scenes = (Path(data) / "corpus.json", Path(data) / "scenes.json") if data else (None, None)
    if corpus and corpus.exists() and scenes.exists():
        c, sc = json.loads(corpus.read_text()), json.loads(scenes.read_text())
        in_scenes = sc["splits"].get("train", {}).get("categories", {})
        lines += [f"{c['clips']} clips ({c['hours']:.2f} h) from {c['recordings']} source "
                  "recordings, split by recording into train/val/test; sources and licences "
                  "in ATTRIBUTION.md (per recording, where a source needs it, in CREDITS.csv).",
                  "",
                  "| category | train recordings | train clips | training scenes | held-out (test) recordings |",
                  "|---|---:|---:|---:|---:|"]
        for cat, v in sorted(c["categories"].items()):
            lines.append(f"| {cat} | {v['train']['recordings']} | {v['train']['clips']} | "
                         f"{in_scenes.get(cat, 0)} | {v['test']['recordings']} |")
        lines.append("")
    lines += ["## Input", "",
              f"{fe['sample_rate']} Hz audio, {fe['n_mels']} log-mel bands, {fe['hop_length']}-"
              f"sample hop, normalised as (logmel - ({fe['norm_mean']:.4f})) / "
              f"{fe['norm_std']:.4f}; windows of {manifest['window']['seconds']} s every "
              f"{manifest['window']['hop_seconds']} s.", "",
              "## Licence", "", manifest["licence"], ""]
    if any(h["name"] == "audioset" for h in heads):
        lines += [YAMNET_NOTICE, ""]
    lines += ["## Metrics", ""]
    metrics = manifest.get("metrics") or {}
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                  for k, v in metrics.items()]
    else:
        lines.append("Not evaluated.")
    lines += ["", "## Limits", "",
              "Captions describe only what the training data described: sounds outside it "
              "are named after the nearest sound the model knows."] + [""] + notes
    if extra:
        lines += ["", extra.strip()]
    return "\n".join(lines).rstrip() + "\n"


# ---- the export ----

def write_bundle(out: Path, model, vocab: Vocab, frontend: dict, info: BundleInfo,
                 metrics: dict | None = None, notes: list[str] | None = None) -> dict:
    """Exports graphs, vocabulary, model card and manifest into `out`; returns the manifest."""
    from hark_export.model import count_parameters
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    states = export_graphs(model, out, model.config.n_mels)
    vocab.save(out / "vocab.txt")
    for head in model.tag_heads():
        (out / head["file"]).write_text("\n".join(head["labels"]) + "\n")
    with torch.no_grad():
        memory_dim = model.encode(torch.zeros(1, model.config.n_mels, 100)).shape[2]
    manifest = build_manifest(model, frontend, vocab, states, info, int(memory_dim), metrics)
    finish_bundle(out, manifest, count_parameters(model), notes or [])
    return manifest


def finish_bundle(out: Path, manifest: dict, parameters: int, notes: list[str],
                  data: Path | None = None, extra: str = "") -> None:
    """(Re)writes MODEL_CARD.md (and, when the data has one, ATTRIBUTION.md; with a YAMNet
    head, LICENSE-yamnet.txt) and the hashed manifest of the bundle in `out`."""
    out = Path(out)
    for name in ("ATTRIBUTION.md", "CREDITS.csv"):  # sources and licences, per recording
        if data and (Path(data) / name).exists():
            shutil.copy(Path(data) / name, out / name)
    apache = Path("/usr/share/common-licenses/Apache-2.0")
    if any(h["name"] == "audioset" for h in manifest.get("tags", [])):
        text = apache.read_text() if apache.exists() else ""
        (out / "LICENSE-yamnet.txt").write_text(
            "YAMNet (TF-Hub yamnet/1), Copyright Google LLC.\n\nLicensed under the Apache "
            "License, Version 2.0: https://www.apache.org/licenses/LICENSE-2.0\n\n" + text)
    (out / "MODEL_CARD.md").write_text(model_card(manifest, parameters, notes, data, extra))
    write_manifest(out, manifest)


def features(audio: Path, frontend: dict) -> np.ndarray:
    """Normalised log-mel [n_mels, frames] of a file, computed by the Rust dsp exactly as the
    daemon computes it (normalisation included)."""
    return logmel(*read_audio(audio), frontend)


def window_seconds(audio: list[Path], frontend: dict) -> float:
    """A caption window that holds the longest file whole: the daemon cuts
    round(seconds * frames_per_second) frames, and a 4 s clip has 401 frames, not 400."""
    import hark_dsp
    import soundfile as sf
    fe = hark_dsp.Frontend(frontend)
    rate, hop = fe.config["sample_rate"], fe.config["hop_length"]
    samples = max(math.ceil(sf.info(a).frames * rate / sf.info(a).samplerate) for a in audio)
    return fe.frames_for(samples) * hop / rate


def training_data(data: Path) -> str:
    """A one-line description of the dataset for the manifest."""
    summary = Path(data) / "synth.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        speech = "" if s.get("speech", True) else " --no-speech"
        return f"synthetic benchmark: hark-data synth --n {s['n']} --seed {s['seed']}{speech}"
    scenes = Path(data) / "scenes.json"
    if scenes.exists():
        s = json.loads(scenes.read_text())
        counts = ", ".join(f"{v['scenes']} {k}" for k, v in s["splits"].items())
        # Later generations appended to the set (`hark-data scenes --append`), e.g. augmented.
        added = "".join(
            f" + --append --seed {g['seed']}{' --augment' if g['augment'] else ''}: "
            + ", ".join(f"{n} {k}" for k, n in g["scenes"].items())
            for g in s.get("generations", [])[1:])
        return (f"real-sound scenes (hark-data real + hark-data scenes --seed {s['seed']}{added}; "
                f"{counts}) over {s['labels']} categories")
    return f"dataset {Path(data).name}"


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
    parser.add_argument("--card", type=Path,
                        help="Markdown appended to MODEL_CARD.md (limits, how to retrain, ...)")
    parser.add_argument("--window", type=float,
                        help="caption window in seconds (default: the longest test clip)")
    args = parser.parse_args(argv)
    try:
        export_run(args)
    except ExportRefused as e:
        sys.exit(f"hark-export refuses: {e}")


def export_run(args) -> None:
    """The CLI's work (see `main`)."""
    from hark_export.evaluate import caption_metrics
    from hark_export.train import load_checkpoint
    torch.set_num_threads(args.threads)
    model, vocab, frontend, _ = load_checkpoint(args.run / "best.pt")
    config = json.loads((args.run / "config.json").read_text())
    data = args.data or Path(config["train"]["data"])
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
            validate_bundle(int8_dir)
            int8_note = [f"An int8 variant is {int8_dir.name} ({size8:.2f} MB of graphs vs "
                         f"{metrics['onnx_megabytes']:.2f} MB)."]
    finish_bundle(args.out, {**fp32.manifest, "metrics": metrics}, parameters, int8_note, data,
                  card)
    validate_bundle(args.out)
    print(json.dumps({"bundle": str(args.out), "metrics": metrics}, indent=2))
    if refused:
        raise refused


if __name__ == "__main__":
    main()
