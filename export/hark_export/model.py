"""The caption models: four seed architectures and a pretrained-encoder variant.

Every model is a `Captioner` with the decoding contract of the model bundle (docs/BUNDLE.md):

    memory = model.encode(mel)                    # mel [B, n_mels, T] -> memory [B, S, D]
    states = model.init_state(memory)             # tuple of tensors, see model.state_specs()
    logits, *states = model.step(tokens, memory, *states)   # tokens [B] -> logits [B, V]

`decode(memory, tokens)` is the teacher-forced forward used in training; stepping through the
same tokens gives the same logits. `step` has no Python branching on tensor values, so it
traces for ONNX export.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from hark_export.config import (AttentionConfig, BaselineConfig, ImprovedConfig, ModelConfig,
                                PretrainedConfig, TransformerConfig)
from hark_export.data import BOS, EOS


@dataclass(frozen=True)
class StateSpec:
    """One decoder state: its name, shape (str entries are named dynamic axes), the axis that
    beam search reorders, how it starts ("zeros", or "memory": computed by `init_state` from
    the encoder output) and its dtype."""

    name: str
    shape: tuple
    batch_axis: int
    init: str
    dtype: str = "float32"


class ConvEncoder(nn.Module):
    """CNN over the log-mel that pools frequency but keeps the time axis.

    Each block is conv3x3-BN-ReLU-maxpool(2 in frequency, p in time). The remaining frequency
    bins are flattened into the channels (so pitch survives), projected to `d_out` and
    layer-normalised.
    Pooling time away entirely made the seed models caption every clip alike (mode collapse).
    """

    def __init__(self, n_mels: int, channels: tuple, time_pool: tuple, d_out: int,
                 dropout: float):
        super().__init__()
        layers, c_in = [], 1
        for c, p in zip(channels, time_pool):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(), nn.MaxPool2d((2, p))]
            c_in = c
        self.blocks = nn.Sequential(*layers)
        self.proj = nn.Linear(c_in * (n_mels >> len(channels)), d_out)
        # Unnormalised, the memory grows during training until the decoders' tanh
        # initial states saturate and stop passing gradient: the baseline then ignores audio.
        self.norm = nn.LayerNorm(d_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, n_mels, T] -> [B, S, d_out], S = T // prod(time_pool)."""
        x = self.blocks(mel.unsqueeze(1))  # (B, C, F', S)
        x = x.permute(0, 3, 1, 2).flatten(2)  # (B, S, C*F')
        return self.drop(self.norm(F.relu(self.proj(x))))


def segment_mean(memory: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of `memory` over `k` consecutive equal time slices: (B, S, D) -> (B, k, D).

    Built from arange/compare/matmul rather than adaptive pooling so it exports with a
    dynamic S.
    """
    s = memory.shape[1]
    slice_of = torch.arange(s, device=memory.device) * k // s  # (S,)
    weights = (slice_of.unsqueeze(0) == torch.arange(k, device=memory.device).unsqueeze(1))
    weights = weights.to(memory.dtype)  # (k, S)
    weights = weights / weights.sum(1, keepdim=True).clamp(min=1.0)
    return torch.einsum("ks,bsd->bkd", weights, memory)


def pick(x: torch.Tensor, index: torch.Tensor | None, dim: int = 0) -> torch.Tensor:
    """Rows of x along `dim` in the order of `index` (None: x itself)."""
    return x if index is None else x.index_select(dim, index)


class Captioner(nn.Module):
    """Base class: the decoding contract and the training forward."""

    config: ModelConfig
    frontend_overrides: dict = {}  # front-end parameters the encoder requires, if any
    memory_dim: int = 0  # D of the memory
    tag_labels: list[str] = []  # the tag head's labels (the dataset's labels.txt)

    def tag_heads(self) -> list[dict]:
        """The bundle's [[tags]] heads this model exports, in encoder-output order: name,
        labels, encoder output name, labels file and default threshold."""
        if not self.has_tag_head:
            return []
        return [{"name": "hark", "labels": list(self.tag_labels), "output": "tags",
                 "file": "labels.txt", "threshold": 0.5}]

    def encode_with_tags(self, mel: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """memory [B, S, D] and each of `tag_heads()`'s probabilities [B, n_labels]."""
        memory, tags, _ = self.encode_for_bundle(mel)
        return memory, tags

    def encode_for_bundle(self, mel: torch.Tensor):
        """What the bundle's encoder graph gives, from one encoder pass: memory, the tag
        heads' probabilities and the sound embedding [B, E] that learned sounds compare
        (None when the encoder has none; `has_sound_embedding`)."""
        memory = self.encode(mel)
        tags = [torch.sigmoid(self.tag_logits(memory))] if self.has_tag_head else []
        return memory, tags, None

    has_sound_embedding = False

    @property
    def has_tag_head(self) -> bool:
        """Whether `build_model` gave the model a tag head (config `n_tags`)."""
        return "tag_head" in self._modules

    def tag_logits(self, memory: torch.Tensor) -> torch.Tensor:
        """Clip-level tag logits [B, n_tags] from memory [B, S, D]: mean and max over time,
        so a short sound in a long window still counts."""
        pooled = torch.cat([memory.mean(dim=1), memory.amax(dim=1)], dim=1)  # (B, 2D)
        return self.tag_head(pooled)

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, n_mels, T] -> memory [B, S, D]."""
        raise NotImplementedError

    def init_state(self, memory: torch.Tensor) -> tuple:
        """Initial decoder states for `memory`, in `state_specs()` order."""
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, memory: torch.Tensor, *states):
        """One decoding step: tokens [B] -> (logits [B, V], *new_states)."""
        raise NotImplementedError

    def decode(self, memory: torch.Tensor, tokens: torch.Tensor,
               clip_index: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits [N, L, V] for input tokens [N, L].

        Caption i belongs to clip clip_index[i] of memory [B, S, D] (None: N = B, one caption
        per clip), so per-clip work (initial states, keys) is done once per clip.
        """
        raise NotImplementedError

    def state_specs(self) -> list[StateSpec]:
        """Declarations of the decoder states."""
        raise NotImplementedError

    def forward(self, mel: torch.Tensor, tokens: torch.Tensor,
                clip_index: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [N, L, V] for captions tokens [N, L] of clips mel [B, ...]; caption i belongs
        to clip clip_index[i], so each clip is encoded once however many captions it has."""
        return self.decode(self.encode(mel), tokens, clip_index)


class LSTMCaptioner(Captioner):
    """Shared parts of the baseline and improved models: an LSTM decoder whose (h, c) start
    from an audio summary; with `feed_summary` the summary is also concatenated to every input
    (carried as a decoder state, so a step never recomputes it from the memory)."""

    feed_summary = False
    summary_dim = 0

    def _init_lstm(self, cfg, init_in: int):
        self.summary_dim = init_in
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed)
        # Normalised before the tanh: otherwise training drives the initial state into
        # saturation, where it stops depending on the audio and the decoder mode-collapses.
        self.init = nn.Sequential(nn.Linear(init_in, 2 * cfg.layers * cfg.hidden),
                                  nn.LayerNorm(2 * cfg.layers * cfg.hidden))
        fed = init_in if self.feed_summary else 0
        self.lstm = nn.LSTM(cfg.embed + fed, cfg.hidden, cfg.layers,
                            batch_first=True, dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.head = nn.Linear(cfg.hidden, cfg.vocab_size)
        self.drop = nn.Dropout(cfg.dropout)

    def summary(self, memory: torch.Tensor) -> torch.Tensor:
        """The fixed-size audio summary [B, init_in] the initial state is computed from."""
        raise NotImplementedError

    def init_state(self, memory):
        b, cfg = memory.shape[0], self.config
        summary = self.summary(memory)
        hc = torch.tanh(self.init(summary))  # (B, 2 * layers * hidden)
        hc = hc.view(b, 2, cfg.layers, cfg.hidden).permute(1, 2, 0, 3)  # (2, layers, B, hidden)
        states = (hc[0].contiguous(), hc[1].contiguous())
        return states + (summary,) if self.feed_summary else states

    def decode(self, memory, tokens, clip_index=None):
        h, c, *fed = (pick(s, clip_index, dim=spec.batch_axis)
                      for s, spec in zip(self.init_state(memory), self.state_specs()))
        x = self.drop(self.embed(tokens))  # (N, L, embed)
        if fed:
            x = torch.cat([x, fed[0].unsqueeze(1).expand(-1, x.shape[1], -1)], dim=2)
        out, _ = self.lstm(x, (h, c))
        return self.head(self.drop(out))

    def step(self, tokens, memory, h, c, *fed):
        x = self.embed(tokens)  # (B, embed)
        if fed:
            x = torch.cat([x, fed[0]], dim=1)
        out, (h, c) = self.lstm(x.unsqueeze(1), (h, c))  # out (B, 1, hidden)
        return (self.head(out[:, 0]), h, c, *fed)

    def state_specs(self):
        shape = (self.config.layers, "batch", self.config.hidden)
        specs = [StateSpec("h", shape, 1, "memory"), StateSpec("c", shape, 1, "memory")]
        if self.feed_summary:
            specs.append(StateSpec("summary", ("batch", self.summary_dim), 0, "memory"))
        return specs


class Baseline(LSTMCaptioner):
    """3-layer CNN + LSTM decoder. The audio reaches the decoder only through its initial
    state, computed from the memory averaged over a few time slices (so order survives)."""

    def __init__(self, cfg: BaselineConfig):
        super().__init__()
        self.config = cfg
        self.encoder = ConvEncoder(cfg.n_mels, cfg.channels, cfg.time_pool, cfg.d_model,
                                   cfg.dropout)
        self.memory_dim = cfg.d_model
        self._init_lstm(cfg, cfg.segments * cfg.d_model)

    def encode(self, mel):
        return self.encoder(mel)

    def summary(self, memory):
        return segment_mean(memory, self.config.segments).flatten(1)  # (B, segments * D)


class Improved(LSTMCaptioner):
    """4-layer CNN + bidirectional LSTM over the audio; the BiLSTM's outputs averaged over a
    few time slices (so order survives) and projected make the clip's summary, which starts
    the decoder and is fed with every token."""

    feed_summary = True

    def __init__(self, cfg: ImprovedConfig):
        super().__init__()
        self.config = cfg
        self.encoder = ConvEncoder(cfg.n_mels, cfg.channels, cfg.time_pool, cfg.d_model,
                                   cfg.dropout)
        self.rnn = nn.LSTM(cfg.d_model, cfg.enc_hidden, cfg.enc_layers, batch_first=True,
                           bidirectional=True, dropout=cfg.dropout if cfg.enc_layers > 1 else 0.0)
        # Averages rather than the BiLSTM's end states: every frame gets gradient directly,
        # where end states pass it back through the whole clip (the end-state version gave
        # one caption to every test clip after a 25-minute run).
        self.summarise = nn.Sequential(
            nn.Linear(cfg.segments * 2 * cfg.enc_hidden, cfg.context), nn.LayerNorm(cfg.context))
        self.memory_dim = 2 * cfg.enc_hidden
        self._init_lstm(cfg, cfg.context)

    def encode(self, mel):
        memory, _ = self.rnn(self.encoder(mel))  # (B, S, 2 * enc_hidden)
        return memory

    def summary(self, memory):
        return self.summarise(segment_mean(memory, self.config.segments).flatten(1))


class Attention(Captioner):
    """CNN encoder + Bahdanau attention + LSTM decoder.

    At each step the previous hidden state attends over the memory (additive scores
    v . tanh(W_k m + W_q h)); the context joins the token embedding as the LSTM input and the
    new hidden state as the input of the output layer.
    """

    attention_log: list | None = None  # set by diagnostics.attention_map to read the weights

    def __init__(self, cfg: AttentionConfig, encoder: nn.Module | None = None,
                 encoder_dim: int | None = None):
        super().__init__()
        self.config = cfg
        if encoder is None:
            encoder = ConvEncoder(cfg.n_mels, cfg.channels, cfg.time_pool, cfg.d_model,
                                  cfg.dropout)
            encoder_dim = cfg.d_model
        self.encoder = encoder
        self.memory_dim = cfg.d_model
        self.adapt = (nn.Identity() if encoder_dim == cfg.d_model
                      else nn.Sequential(nn.Linear(encoder_dim, cfg.d_model), nn.ReLU()))
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed)
        self.init = nn.Linear(cfg.d_model, 2 * cfg.hidden)
        self.w_k = nn.Linear(cfg.d_model, cfg.attn_dim, bias=False)
        self.w_q = nn.Linear(cfg.hidden, cfg.attn_dim)
        self.v = nn.Linear(cfg.attn_dim, 1, bias=False)
        self.cell = nn.LSTMCell(cfg.embed + cfg.d_model, cfg.hidden)
        self.head = nn.Linear(cfg.hidden + cfg.d_model, cfg.vocab_size)
        self.drop = nn.Dropout(cfg.dropout)

    def encode(self, mel):
        return self.adapt(self.encoder(mel))

    def init_state(self, memory):
        hc = torch.tanh(self.init(memory.mean(dim=1)))  # (B, 2 * hidden)
        h, c = hc.chunk(2, dim=1)
        # The keys W_k m are the same at every step: computed once, with the memory, and
        # carried as a state (they were 45 % of a step's multiply-adds).
        return h.contiguous(), c.contiguous(), self.w_k(memory)

    def _step(self, emb, memory, keys, h, c):
        """One step given the embedded token and the projected keys W_k m [B, S, A]."""
        scores = self.v(torch.tanh(keys + self.w_q(h).unsqueeze(1))).squeeze(2)  # (B, S)
        alpha = torch.softmax(scores, dim=1)
        if self.attention_log is not None:
            self.attention_log.append(alpha)
        ctx = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)  # (B, D)
        h, c = self.cell(torch.cat([emb, ctx], dim=1), (h, c))
        return self.head(self.drop(torch.cat([h, ctx], dim=1))), h, c

    def step(self, tokens, memory, h, c, keys):
        return (*self._step(self.embed(tokens), memory, keys, h, c), keys)

    def decode(self, memory, tokens, clip_index=None):
        h, c, keys = (pick(s, clip_index) for s in self.init_state(memory))  # keys (N, S, A)
        memory = pick(memory, clip_index)  # (N, S, D)
        emb = self.drop(self.embed(tokens))  # (N, L, E)
        logits = []
        for t in range(tokens.shape[1]):
            out, h, c = self._step(emb[:, t], memory, keys, h, c)
            logits.append(out)
        return torch.stack(logits, dim=1)  # (B, L, V)

    def state_specs(self):
        shape = ("batch", self.config.hidden)
        return [StateSpec("h", shape, 0, "memory"), StateSpec("c", shape, 0, "memory"),
                StateSpec("keys", ("batch", "steps", self.config.attn_dim), 0, "memory")]


def sinusoids(length: int, dim: int, device=None) -> torch.Tensor:
    """Sinusoidal position encodings [length, dim] (length may be a traced dynamic size)."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                     * (-math.log(10000.0) / dim))
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=1)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, heads, T, D / heads)."""
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           keep: torch.Tensor | None = None, log: list | None = None) -> torch.Tensor:
    """Scaled dot-product attention of q (B, H, Tq, dh) over k, v (B, H, Tk, dh) -> (B, Tq, D).

    `keep` (broadcastable to (B, H, Tq, Tk)) is True where attention is allowed; every query
    must keep at least one key. Plain matmul/softmax so it exports to any ONNX runtime.
    `log`, if given, receives the last query's weights averaged over heads (B, Tk).
    """
    att = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, Tq, Tk)
    if keep is not None:
        att = att.masked_fill(~keep, -1e9)
    weights = torch.softmax(att, dim=-1)
    if log is not None:
        log.append(weights.mean(dim=1)[:, -1])
    y = weights @ v  # (B, H, Tq, dh)
    b, h, t, dh = y.shape
    return y.transpose(1, 2).reshape(b, t, h * dh)  # (B, Tq, D)


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.heads = cfg.heads
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(),
                                nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=2)  # 3 x (B, S, D)
        x = x + self.drop(self.out(attend(*(split_heads(t, self.heads) for t in (q, k, v)))))
        return x + self.drop(self.ff(self.ln2(x)))


class DecoderLayer(nn.Module):
    """Pre-norm transformer decoder layer: causal self-attention, cross-attention, MLP."""

    attention_log: list | None = None  # set by diagnostics.attention_map to read the weights

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.heads = cfg.heads
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(cfg.d_model) for _ in range(3))
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.self_out = nn.Linear(cfg.d_model, cfg.d_model)
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.cross_out = nn.Linear(cfg.d_model, cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(),
                                nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def cross_kv(self, memory):
        """Cross-attention keys and values of the memory, each (B, H, S, dh)."""
        k, v = self.kv(memory).chunk(2, dim=2)
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def self_qkv(self, x):
        """Self-attention q, k, v of x (B, L, D), each (B, H, L, dh)."""
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=2)
        return tuple(split_heads(t, self.heads) for t in (q, k, v))

    def forward(self, x, q, self_k, self_v, keep, cross_k, cross_v):
        """x (B, L, D) with its self-attention queries q, attending to self_k/self_v
        (B, H, Tk, dh) where `keep` and to the memory's cross_k/cross_v. The caller supplies
        the keys and values so full-sequence and cached decoding share this code."""
        x = x + self.drop(self.self_out(attend(q, self_k, self_v, keep)))
        q = split_heads(self.q(self.ln2(x)), self.heads)
        x = x + self.drop(self.cross_out(attend(q, cross_k, cross_v, log=self.attention_log)))
        return x + self.drop(self.ff(self.ln3(x)))


class Transformer(Captioner):
    """CNN front + transformer encoder (sinusoidal positions) + transformer decoder (learned
    positions). Decoder states: per layer a fixed-size self-attention cache k/v
    [B, H, max_len, dh] written at the step index, the memory's cross-attention k/v
    [B, H, S, dh] (computed once from the memory), and the step index itself [B]."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.config = cfg
        self.front = ConvEncoder(cfg.n_mels, cfg.channels, cfg.time_pool, cfg.d_model,
                                 cfg.dropout)
        self.enc = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.enc_ln = nn.LayerNorm(cfg.d_model)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.dec = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.dec_ln = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)
        self.drop = nn.Dropout(cfg.dropout)
        self.memory_dim = cfg.d_model

    def encode(self, mel):
        x = self.front(mel)  # (B, S, D)
        x = self.drop(x + sinusoids(x.shape[1], x.shape[2], x.device))
        for layer in self.enc:
            x = layer(x)
        return self.enc_ln(x)

    def init_state(self, memory):
        b, cfg = memory.shape[0], self.config
        cache = torch.zeros(b, cfg.heads, cfg.max_len, cfg.d_model // cfg.heads,
                            device=memory.device, dtype=memory.dtype)
        states = []
        for layer in self.dec:
            states += [cache, cache.clone(), *layer.cross_kv(memory)]
        return (*states, torch.zeros(b, dtype=torch.long, device=memory.device))

    def decode(self, memory, tokens, clip_index=None):
        length = tokens.shape[1]
        x = self.drop(self.embed(tokens) + self.pos.weight[:length])  # (B, L, D)
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        for layer in self.dec:
            q, k, v = layer.self_qkv(x)
            cross_k, cross_v = (pick(t, clip_index) for t in layer.cross_kv(memory))
            x = layer(x, q, k, v, causal, cross_k, cross_v)
        return self.head(self.dec_ln(x))

    def step(self, tokens, memory, *states):
        *layer_states, pos = states
        slots = torch.arange(self.config.max_len, device=tokens.device)
        write = (slots.unsqueeze(0) == pos.unsqueeze(1)).to(memory.dtype)  # (B, max_len)
        write = write[:, None, :, None]  # (B, 1, max_len, 1)
        keep = (slots.unsqueeze(0) <= pos.unsqueeze(1))[:, None, None, :]  # (B, 1, 1, max_len)
        x = (self.embed(tokens) + self.pos(pos)).unsqueeze(1)  # (B, 1, D)
        new_states = []
        for i, layer in enumerate(self.dec):
            k_cache, v_cache, cross_k, cross_v = layer_states[4 * i: 4 * i + 4]
            q, k, v = layer.self_qkv(x)  # (B, H, 1, dh) each
            k_cache = k_cache * (1 - write) + k * write
            v_cache = v_cache * (1 - write) + v * write
            x = layer(x, q, k_cache, v_cache, keep, cross_k, cross_v)
            new_states += [k_cache, v_cache, cross_k, cross_v]
        logits = self.head(self.dec_ln(x[:, 0]))
        return (logits, *new_states, pos + 1)

    def state_specs(self):
        cfg = self.config
        dh = cfg.d_model // cfg.heads
        specs = []
        for i in range(cfg.dec_layers):
            specs += [StateSpec(f"self_k{i}", ("batch", cfg.heads, cfg.max_len, dh), 0, "zeros"),
                      StateSpec(f"self_v{i}", ("batch", cfg.heads, cfg.max_len, dh), 0, "zeros"),
                      StateSpec(f"cross_k{i}", ("batch", cfg.heads, "steps", dh), 0, "memory"),
                      StateSpec(f"cross_v{i}", ("batch", cfg.heads, "steps", dh), 0, "memory")]
        return specs + [StateSpec("pos", ("batch",), 0, "zeros", "int64")]


class PretrainedEncoder(nn.Module):
    """A frozen pretrained encoder mel [B, n_mels, T] -> [B, S, out_dim]; only LoRA adapters
    or its last `tuned_blocks` blocks (CED) train, if any, and its BatchNorm statistics stay
    frozen in training mode."""

    def __init__(self, net: nn.Module, out_dim: int, lora_targets: list[str], rank: int,
                 alpha: int, tuned_blocks: int = 0):
        super().__init__()
        self.out_dim = out_dim
        for p in net.parameters():
            p.requires_grad_(False)
        if tuned_blocks:
            if rank or not hasattr(net, "tune"):
                raise ValueError("train_blocks: only the CED encoder, and without LoRA")
            for module in net.tune(tuned_blocks):
                module.requires_grad_(True)
        if rank > 0:
            from peft import LoraConfig, inject_adapter_in_model
            net = inject_adapter_in_model(
                LoraConfig(r=rank, lora_alpha=alpha, target_modules=lora_targets), net)
        self.net = net

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, mel):
        return self.net(mel)

    def frozen_part(self, mel):
        """What a frozen encoder's cache holds: its output, or the input of its tuned blocks."""
        return self.net.frozen_part(mel) if hasattr(self.net, "frozen_part") else self.net(mel)

    def tuned_part(self, cached):
        return self.net.tuned_part(cached) if hasattr(self.net, "tuned_part") else cached


class AisfxNet(nn.Module):
    """The aisfx (MIT) sound-effects CNN without its clip-level max pooling, so time is kept:
    mel [B, 96, T] (44.1 kHz, 1024-sample hop) -> [B, T // 8, 512]."""

    def __init__(self):
        super().__init__()
        from aisfx.inference import get_path_modelWeights
        from aisfx.models.cnn2d import EmbeddingNet
        # The checkpoint ships inside the installed package and pickles numpy scalars, which
        # torch's weights-only loader refuses; aisfx's own loader predates that default.
        weights, _ = torch.load(get_path_modelWeights(), map_location="cpu", weights_only=False)
        self.net = EmbeddingNet("max", 3, 1, 64)
        self.net.load_state_dict({k[len("embedding_net."):]: v for k, v in weights.items()
                                  if k.startswith("embedding_net.")})

    def forward(self, mel):
        x = mel.transpose(1, 2).unsqueeze(1)  # (B, 1, T, F): aisfx wants time before frequency
        for block, pool in ((self.net.conv_block1, (2, 2)), (self.net.conv_block2, (2, 2)),
                            (self.net.conv_block3, (2, 2)), (self.net.conv_block4, (1, 1))):
            x = block(x, pool_size=pool, pool_type="max")
        return x.mean(dim=3).transpose(1, 2)  # (B, S, 512)


# aisfx's own features are log10(1e4 * mel + 1) / 9.4578 at 44.1 kHz with a 2048-sample window
# and 1024-sample hop, 96 HTK mel bands. ln(mel + 1e-4) is an affine function of that, so the
# dsp front end reproduces it up to the norm_mean/norm_std below.
AISFX_FRONTEND = {"sample_rate": 44100, "n_fft": 2048, "win_length": 2048, "hop_length": 1024,
                  "n_mels": 96, "f_min": 0.0, "f_max": 22050.0, "mel_scale": "htk",
                  "log_offset": 1e-4, "norm_mean": -4 * math.log(10),
                  "norm_std": 9.457798957824707 * math.log(10)}


def load_pretrained_encoder(spec: str) -> tuple[nn.Module, int, dict, list[str]]:
    """(module mel -> [B, S, D], D, front-end overrides, LoRA target module names).

    `spec` is "aisfx", a YAMNET_TAPS key ("yamnet", "yamnet-mid", "yamnet-deep"), a CED_TAPS
    key ("ced", "ced-mid") or "package.module:function", where the function returns the same
    4-tuple, so any torch audio encoder can be plugged in. An encoder with an AudioSet head
    has `audioset(features)` ([B, S or 1, classes] probabilities) and `class_names()`.
    """
    if spec == "aisfx":
        return AisfxNet(), 512, dict(AISFX_FRONTEND), ["conv1", "conv2"]
    if spec.startswith("yamnet"):
        from hark_export.yamnet import load_yamnet
        return load_yamnet(spec)
    if spec.startswith("ced"):
        from hark_export.ced import load_ced
        return load_ced(spec)
    import importlib
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)()


class Pretrained(Attention):
    """The attention decoder on top of a frozen pretrained encoder (+ optional LoRA).

    Without LoRA, the frozen part of the encoder (all of it, or the blocks before the
    `train_blocks` tuned ones) runs once per clip and is cached: with `from_encoded` set,
    `encode` takes its outputs [B, D, S] instead of a mel.
    """

    def __init__(self, cfg: PretrainedConfig):
        net, dim, frontend, targets = load_pretrained_encoder(cfg.encoder)
        if not cfg.n_mels:  # the encoder's own band count, recorded in the run's config
            cfg.n_mels = frontend.get("n_mels", ModelConfig.n_mels)
        self.has_audioset = hasattr(net, "audioset")
        if cfg.audioset_features and not self.has_audioset:
            raise ValueError(f"audioset_features: encoder {cfg.encoder!r} has no AudioSet head "
                             "(yamnet and ced have)")
        with torch.no_grad():
            extra = net.audioset(torch.zeros(1, 1, dim)).shape[-1] if cfg.audioset_features \
                else 0
        super().__init__(cfg, PretrainedEncoder(net, dim, targets, cfg.lora_rank,
                                                cfg.lora_alpha, cfg.train_blocks), dim + extra)
        self.frontend_overrides = frontend
        self.frozen_encoder = cfg.lora_rank == 0
        self.from_encoded = False
        self.feature_drop = nn.Dropout(cfg.feature_dropout)

    def audioset(self, features):
        """The encoder's AudioSet probabilities of features [B, S, D_enc]: per position
        [B, S, classes] (YAMNet's 0.96 s patches) or per window [B, 1, classes] (CED)."""
        return self.encoder.net.audioset(features)

    def _memory(self, features, audioset=None):
        if self.config.audioset_features:
            audioset = self.audioset(features) if audioset is None else audioset
            features = torch.cat([features, audioset.expand(-1, features.shape[1], -1)], dim=2)
        return self.adapt(self.feature_drop(features))

    def encode(self, mel):
        if self.from_encoded:
            return self._memory(self.encoder.tuned_part(mel.transpose(1, 2)))  # (B, D, S)
        return self._memory(self.encoder(mel))

    def tag_heads(self) -> list[dict]:
        heads = super().tag_heads()
        if self.has_audioset:
            heads.append({"name": "audioset", "labels": self.encoder.net.class_names(),
                          "output": "audioset",
                          "file": "audioset_labels.txt", "threshold": 0.3})
        return heads

    @property
    def has_sound_embedding(self) -> bool:
        return hasattr(self.encoder.net, "features_and_embedding")

    def encode_for_bundle(self, mel):
        """Adds the encoder's own AudioSet head (per class its most probable patch for YAMNet,
        the window's score for CED) and CED's sound embedding."""
        if self.has_sound_embedding:
            features, embedding = self.encoder.net.features_and_embedding(mel)  # (B, S, D_enc)
        else:
            features, embedding = self.encoder(mel), None
        audioset = self.audioset(features) if self.has_audioset else None
        memory = self._memory(features, audioset)
        tags = [torch.sigmoid(self.tag_logits(memory))] if self.has_tag_head else []
        if audioset is not None:
            tags.append(audioset.amax(dim=1))
        return memory, tags, embedding


ARCHITECTURES = {"baseline": Baseline, "improved": Improved, "attention": Attention,
                 "transformer": Transformer, "pretrained": Pretrained}


def build_model(cfg: ModelConfig) -> Captioner:
    """The model for a config (with a tag head when `cfg.n_tags`)."""
    model = ARCHITECTURES[cfg.arch](cfg)
    if cfg.n_tags:
        model.tag_head = nn.Linear(2 * model.memory_dim, cfg.n_tags)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def greedy_decode(model: Captioner, mel: torch.Tensor,
                  max_len: int | None = None) -> list[list[int]]:
    """Greedy token ids (without <bos>/<eos>) for each clip of mel [B, n_mels, T], decoded
    through the step interface exactly as the daemon does."""
    max_len = max_len or model.config.max_len
    memory = model.encode(mel)
    states = model.init_state(memory)
    tokens = torch.full((mel.shape[0],), BOS, dtype=torch.long, device=mel.device)
    out = []
    for _ in range(max_len - 1):  # the <bos> already used one position
        logits, *states = model.step(tokens, memory, *states)
        tokens = logits.argmax(dim=1)
        out.append(tokens)
        if bool((torch.stack(out, 1) == EOS).any(1).all()):
            break
    ids = torch.stack(out, 1).tolist()
    return [row[: row.index(EOS)] if EOS in row else row for row in ids]
