"""Model and training configurations, one dataclass per architecture.

Default sizes land near the seed study's parameter counts at a ~4.4k-word vocabulary
(`hark-train params` prints them); `vocab_size` is set from the data when a run starts.
"""

from dataclasses import asdict, dataclass, field, fields


@dataclass
class ModelConfig:
    """Fields every architecture shares."""

    arch: str = ""
    vocab_size: int = 4400
    n_mels: int = 64
    max_len: int = 30  # longest token sequence, <bos> and <eos> included
    dropout: float = 0.2
    n_tags: int = 0  # clip-level tag head over the dataset's labels.txt (0 = none)


@dataclass
class BaselineConfig(ModelConfig):
    """3-layer CNN encoder; an LSTM decoder that hears the audio only through its initial state."""

    arch: str = "baseline"
    channels: tuple[int, ...] = (16, 32, 64)
    time_pool: tuple[int, ...] = (2, 2, 1)  # memory frame = 40 ms at a 10 ms hop
    d_model: int = 128
    segments: int = 8  # the initial state sees the memory averaged over this many time slices
    embed: int = 256
    hidden: int = 256
    layers: int = 1


@dataclass
class ImprovedConfig(ModelConfig):
    """4-layer CNN + bidirectional LSTM over the audio; its summary is fed at every step."""

    arch: str = "improved"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    time_pool: tuple[int, ...] = (2, 2, 2, 1)  # 80 ms frames: halves the BiLSTM's steps
    d_model: int = 256
    enc_hidden: int = 352  # per direction
    enc_layers: int = 2
    segments: int = 4  # the summary: BiLSTM outputs averaged over this many time slices...
    context: int = 512  # ...projected to this many features
    embed: int = 256
    hidden: int = 512
    layers: int = 2


@dataclass
class AttentionConfig(ModelConfig):
    """CNN encoder + Bahdanau (additive) attention + LSTM decoder."""

    arch: str = "attention"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    time_pool: tuple[int, ...] = (2, 2, 1, 1)
    d_model: int = 256
    attn_dim: int = 256
    embed: int = 320
    hidden: int = 512


@dataclass
class TransformerConfig(ModelConfig):
    """CNN front + transformer encoder/decoder; the decoder steps with a fixed-size KV cache."""

    arch: str = "transformer"
    channels: tuple[int, ...] = (16, 32, 64)
    time_pool: tuple[int, ...] = (2, 2, 1)
    d_model: int = 256
    heads: int = 8
    enc_layers: int = 3
    dec_layers: int = 3
    d_ff: int = 1152
    dropout: float = 0.1


@dataclass
class PretrainedConfig(AttentionConfig):
    """A frozen pretrained audio encoder (optionally with LoRA adapters) + the attention decoder.

    `encoder` is "aisfx", "yamnet", "yamnet-mid", "yamnet-deep", "ced", "ced-mid" or
    "package.module:function" (see `model.load_pretrained_encoder`).
    """

    arch: str = "pretrained"
    encoder: str = "yamnet"
    lora_rank: int = 0  # 0 = fully frozen encoder
    lora_alpha: int = 16
    # Fine-tune the encoder's last N transformer blocks (CED); the blocks before them stay
    # frozen and their output is cached, so a step runs only N blocks and the decoder.
    train_blocks: int = 0
    n_mels: int = 0  # 0 = the encoder's front end's (aisfx 96, yamnet and ced 64)
    # Feed the decoder the encoder's own AudioSet probabilities (YAMNet's 521-class head, per
    # 0.96 s patch; CED's 527, per window) beside its embeddings: labels learnt from 2 million
    # clips.
    audioset_features: bool = False
    # Dropout on the encoder's features before the decoder's projection, in training only (a
    # frozen encoder's cached outputs are the same every epoch). Measured in export/README.
    feature_dropout: float = 0.0


MODEL_CONFIGS = {c.arch: c for c in (BaselineConfig, ImprovedConfig, AttentionConfig,
                                     TransformerConfig, PretrainedConfig)}


@dataclass
class ArchRecipe:
    """Per-architecture defaults of the recipe."""

    lr: float
    patience: int
    batch_size: int = 32


RECIPES = {
    "baseline": ArchRecipe(lr=3e-3, patience=5),
    # Twice the updates per epoch: this model is the slowest per epoch and needs them.
    "improved": ArchRecipe(lr=1e-3, patience=5, batch_size=16),
    "attention": ArchRecipe(lr=2e-3, patience=5),
    "transformer": ArchRecipe(lr=1e-3, patience=6),
    "pretrained": ArchRecipe(lr=1e-3, patience=5),
}


@dataclass
class TrainConfig:
    """The training recipe. `batch_size`, `lr` and `patience` of None take the
    architecture's defaults."""

    data: str = ""  # the dataset folder, or FOLDER:WEIGHT
    more_data: list = field(default_factory=list)  # further datasets trained on with it (--data)
    out: str = "runs/run"
    arch: str = "baseline"
    layout: str = "auto"
    cache: str = ""  # feature cache folder; "" = DATA/.hark-cache
    stream: bool = False  # compute features as batches are drawn; cache nothing
    max_seconds: float = 0.0  # with stream: read at most this long a crop of a file; 0 = all
    model: dict = field(default_factory=dict)  # overrides of the architecture's ModelConfig
    frontend: dict = field(default_factory=dict)  # overrides of the dsp front end
    epochs: int = 30
    batch_size: int | None = None  # clips per optimizer step, over all processes
    accumulate: int = 1  # micro-batches whose gradients make one step
    lr: float | None = None
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of all steps spent warming up linearly
    min_lr_ratio: float = 0.05  # the cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    label_smoothing: float = 0.1
    tag_weight: float = 1.0  # weight of the tag head's loss (datasets with labels.txt)
    # Weight of a class-balanced softmax loss on the tag head for clips of one category, beside
    # the multi-label one. Measured in export/README.
    single_tag_weight: float = 0.0
    scheduled_sampling: float = 0.2  # probability of feeding back a prediction, ramped up
    spec_time_masks: int = 2
    spec_time_width: int = 25  # frames
    spec_freq_masks: int = 2
    spec_freq_width: int = 8  # mel bins
    patience: int | None = None
    min_freq: int = 1
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0 = torch's default
    resume: bool = False  # continue the run in `out` from last.pt
    # Start from another run's best.pt (same vocabulary): e.g. LoRA on a trained frozen-encoder
    # run, whose weights all carry over and whose adapters start at zero.
    init: str = ""
    max_minutes: float = 0.0  # stop before an epoch that would end past this budget; 0 = none
    evaluate_test: bool = True
    # Recipe techniques (hark_export/techniques.py), all off by default:
    balance: bool = False  # draw scenes with weights that even out the categories
    filter_captions: bool = False  # drop too-short and near-duplicate references
    curriculum: int = 0  # the first N epochs on simple scenes only (1 event, then up to 2...)
    rare_word_weight: float = 0.0  # token loss weighted by word frequency ** -this
    unlikelihood: float = 0.0  # weight of the unlikelihood term against repeated words
    scst_epochs: int = 0  # self-critical fine-tuning epochs after the cross-entropy stage
    scst_lr: float = 2e-5
    scst_samples: int = 5  # sampled captions per clip, each rewarded against greedy's CIDEr-D


def tiny(width: int = 32, layers: int = 1) -> dict[str, dict]:
    """Model options of each architecture at toy size (`width` features, `layers` decoder
    layers where an architecture has several): the test suites' models and, at width 48,
    the daemon's fixture bundles."""
    w, h = width, 2 * width
    return {
        "baseline": {"channels": [8, 16, 16], "d_model": w, "embed": w, "hidden": h},
        "improved": {"channels": [8, 16, 16, 16], "d_model": w, "enc_hidden": w, "segments": 4,
                     "context": w, "enc_layers": 1, "embed": w, "hidden": h, "layers": layers},
        "attention": {"channels": [8, 16, 16, 16], "d_model": w, "attn_dim": w, "embed": w,
                      "hidden": h},
        "transformer": {"channels": [8, 16, 16], "d_model": w, "heads": 4, "enc_layers": 1,
                        "dec_layers": layers, "d_ff": h},
    }


def model_config(arch: str, overrides: dict | None = None) -> ModelConfig:
    """The architecture's config with `overrides` applied (lists become tuples)."""
    cls = MODEL_CONFIGS[arch]
    names = {f.name for f in fields(cls)}
    unknown = set(overrides or {}) - names
    if unknown:
        raise ValueError(f"unknown {arch} model options: {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in (overrides or {}).items()}
    return cls(**values)


def to_dict(config) -> dict:
    """A config as a JSON-friendly dict."""
    return asdict(config)
