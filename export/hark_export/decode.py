"""Reference decoding: the daemon's decoding strategies (daemon/src/decode/) in Python.

This is a line-by-line port of the Rust `decode` module, so a bundle decoded here and by
`hark caption` gives the same tokens: same logit processing (repetition penalty -> bans of
pad/bos, of the end token before `min_len`, of repeated n-grams and of anything but the end
token at `max_len` -> log-softmax), same beam walk (candidates ranked by summed log-prob,
ties to the lower hypothesis index then the lower token id; a group stops once `width`
hypotheses ended), same length normalisation (`logprob / len^length_penalty`, the end token
counted) and the same SplitMix64 sampler. Scores are float32 like the Rust ones.

The model is reached only through a `Stepper` (init / step / select / vocab), so the same
search drives a PyTorch model (`TorchStepper`), an ONNX bundle (`export.OnnxModel.stepper`)
or a scripted distribution in the tests.
"""

import math
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
import torch

from hark_export.data import BOS, EOS, PAD

F32 = np.float32
NEG_INF = F32(-np.inf)
STRATEGIES = ("greedy", "beam", "diverse_beam", "sample", "sample_rerank")
# The keys each strategy carries in a manifest's [decoding] table (serde's tagged enum).
STRATEGY_KEYS = {"greedy": (), "beam": ("beam_size",),
                 "diverse_beam": ("beam_size", "groups", "diversity_penalty"),
                 "sample": ("temperature", "top_k", "top_p"),
                 "sample_rerank": ("samples", "temperature", "top_p")}


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the start, end and padding tokens."""

    bos: int
    eos: int
    pad: int


# hark's own vocabularies (data.Vocab): <pad> 0, <bos> 1, <eos> 2.
SPECIAL = SpecialTokens(bos=BOS, eos=EOS, pad=PAD)


@dataclass
class DecodeParams:
    """Every decoding parameter (the daemon's `DecodeParams` with its `Strategy` flattened).

    Only the strategy's own keys are written to a manifest (`to_manifest`).
    """

    strategy: str = "greedy"
    beam_size: int = 3
    groups: int = 1
    diversity_penalty: float = 0.5
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.9
    samples: int = 8
    min_len: int = 1
    max_len: int = 30
    length_penalty: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram: int = 0
    seed: int = 0
    alternatives: int = 0

    def validate(self) -> None:
        """Raises ValueError naming the key, with the daemon's rules."""
        def bad(key, allowed):
            raise ValueError(f"decoding.{key}: must be {allowed}")
        if self.strategy not in STRATEGIES:
            bad("strategy", " | ".join(STRATEGIES))
        if not 1 <= self.max_len <= 512:
            bad("max_len", "in 1..=512")
        if self.min_len > self.max_len:
            bad("min_len", "at most max_len")
        if not (np.isfinite(self.length_penalty) and self.length_penalty >= 0):
            bad("length_penalty", "a finite number >= 0")
        if not (np.isfinite(self.repetition_penalty) and self.repetition_penalty >= 1):
            bad("repetition_penalty", "a finite number >= 1")
        if self.strategy == "beam" and not 1 <= self.beam_size <= 64:
            bad("beam_size", "in 1..=64")
        if self.strategy == "diverse_beam":
            if not (self.groups >= 1 and 1 <= self.beam_size <= 64
                    and self.beam_size % self.groups == 0):
                bad("beam_size", "in 1..=64 and a multiple of groups")
            if not (np.isfinite(self.diversity_penalty) and self.diversity_penalty >= 0):
                bad("diversity_penalty", "a finite number >= 0")
        if self.strategy == "sample_rerank" and not 1 <= self.samples <= 64:
            bad("samples", "in 1..=64")
        if self.strategy in ("sample", "sample_rerank"):
            if not (np.isfinite(self.temperature) and self.temperature > 0):
                bad("temperature", "a finite number > 0")
            if not 0 < self.top_p <= 1:
                bad("top_p", "in (0, 1]")

    def to_manifest(self) -> dict:
        """The [decoding] table: the strategy, its own keys, the shared keys."""
        shared = ("min_len", "max_len", "length_penalty", "repetition_penalty",
                  "no_repeat_ngram", "seed", "alternatives")
        keys = ("strategy",) + STRATEGY_KEYS[self.strategy] + shared
        return {k: getattr(self, k) for k in keys}

    @classmethod
    def from_manifest(cls, table: dict) -> "DecodeParams":
        """Parameters from a [decoding] table (missing keys take the defaults)."""
        names = {f.name for f in fields(cls)}
        unknown = set(table) - names
        if unknown:
            raise ValueError(f"decoding: unknown keys {sorted(unknown)}")
        return cls(**table)


@dataclass
class Hypothesis:
    """A decoded caption: generated tokens (no bos/eos), summed log-prob (eos included) and
    the ranking score `logprob / len^length_penalty`."""

    tokens: list[int]
    logprob: float
    score: float


class Stepper(Protocol):
    """A decoder that advances a batch of hypotheses one token (the daemon's `Stepper`)."""

    def init(self, batch: int): ...
    def step(self, tokens: list[int], state) -> tuple[np.ndarray, object]: ...
    def select(self, state, rows: list[int]): ...
    def vocab(self) -> int: ...


class TorchStepper:
    """`Stepper` over a PyTorch `Captioner` and one clip's encoder memory [1, S, D].

    Initial states are computed once with batch 1 and gathered, as the daemon does with the
    encoder's `init_*` outputs.
    """

    def __init__(self, model, memory: torch.Tensor):
        self.model, self.memory = model, memory
        self.specs = model.state_specs()
        with torch.no_grad():
            self.init_states = model.init_state(memory)
        self._tiled = None

    def init(self, batch):
        return self.select(self.init_states, [0] * batch)

    @torch.no_grad()
    def step(self, tokens, state):
        batch = len(tokens)
        if self._tiled is None or self._tiled.shape[0] != batch:
            self._tiled = self.memory.expand(batch, -1, -1)
        out = self.model.step(torch.tensor(tokens, dtype=torch.long), self._tiled, *state)
        return out[0].float().numpy(), tuple(out[1:])

    def select(self, state, rows):
        index = torch.tensor(rows, dtype=torch.long)
        return tuple(s.index_select(spec.batch_axis, index) for s, spec in zip(state, self.specs))

    def vocab(self):
        return self.model.config.vocab_size


# ---- logit processing (daemon/src/decode/logits.rs) ----

def log_softmax(row: np.ndarray) -> np.ndarray:
    """float32 log-softmax; a row of only -inf stays -inf."""
    m = row.max()
    if not np.isfinite(m):
        return row
    # cumsum adds sequentially, like the Rust fold (np.sum would add pairwise).
    total = np.cumsum(np.exp(row - m), dtype=F32)[-1]
    return row - (m + F32(np.log(total)))


def process_row(row: np.ndarray, history: list[int], p: DecodeParams,
                special: SpecialTokens) -> np.ndarray:
    """Log-probabilities of the next token of the hypothesis `history` (its generated
    tokens); banned tokens get -inf. `row` is a float32 copy of the logits."""
    if p.repetition_penalty != 1.0:
        penalty = F32(p.repetition_penalty)
        for t in set(history):
            row[t] = row[t] / penalty if row[t] > 0 else row[t] * penalty
    for t in (special.pad, special.bos):
        if t < len(row):
            row[t] = NEG_INF
    if len(history) < p.min_len:
        row[special.eos] = NEG_INF
    n = p.no_repeat_ngram
    if n > 0 and len(history) + 1 >= n:
        prefix = history[len(history) + 1 - n:]
        for i in range(len(history) - n + 1):
            if history[i:i + n - 1] == prefix:
                row[history[i + n - 1]] = NEG_INF
    if len(history) + 1 >= p.max_len:
        eos = row[special.eos]
        row[:] = NEG_INF
        row[special.eos] = eos if np.isfinite(eos) else F32(0.0)
    return log_softmax(row)


def normalised(logprob, length: int, length_penalty: float):
    """Length-normalised score, float32: logprob / max(len, 1)^length_penalty."""
    return F32(logprob) / (F32(max(length, 1)) ** F32(length_penalty))


# ---- (diverse) beam search (daemon/src/decode/search.rs) ----

@dataclass
class _Live:
    tokens: list[int]
    logprob: np.float32


def beam(stepper: Stepper, special: SpecialTokens, p: DecodeParams, beam_size: int,
         groups: int, diversity_penalty: float) -> list[Hypothesis]:
    """Beam search of `beam_size` hypotheses in `groups` groups (greedy: 1 and 1).

    Group g > 0 ranks a token `diversity_penalty` lower for each earlier group that chose it
    at this step; hypotheses keep their model log-probability.
    """
    width = beam_size // groups
    vocab = stepper.vocab()
    dp = F32(diversity_penalty)
    live = [[_Live([], F32(0.0))] for _ in range(groups)]
    state = stepper.init(groups)
    last = [special.bos] * groups
    finished: list[list[Hypothesis]] = [[] for _ in range(groups)]
    while any(live):
        logits, state = stepper.step(last, state)
        logits = np.asarray(logits, dtype=F32).reshape(-1, vocab)
        rows, next_live = [], []
        chosen_now = np.zeros(vocab, dtype=F32)
        row_base = 0
        for g, group in enumerate(live):
            if not group:  # this group has ended
                next_live.append([])
                continue
            scores, hyp_ids, token_ids = [], [], []
            for h, hyp in enumerate(group):
                lp = process_row(logits[row_base + h].copy(), hyp.tokens, p, special)
                ok = np.flatnonzero(np.isfinite(lp))
                scores.append((hyp.logprob + lp[ok]) - dp * chosen_now[ok])
                hyp_ids.append(np.full(len(ok), h))
                token_ids.append(ok)
            scores, hyp_ids, token_ids = (np.concatenate(x) for x in (scores, hyp_ids, token_ids))
            # Best score first; ties: lower hypothesis index, then lower token id.
            order = np.lexsort((token_ids, hyp_ids, -scores))
            kept = []
            for i in order:
                if len(kept) == width or len(finished[g]) >= width:
                    break
                score, h, t = scores[i], int(hyp_ids[i]), int(token_ids[i])
                parent = group[h]
                lp = (score - parent.logprob) + dp * chosen_now[t]
                if t == special.eos:
                    logprob = parent.logprob + lp
                    finished[g].append(Hypothesis(list(parent.tokens), float(logprob), float(
                        normalised(logprob, len(parent.tokens) + 1, p.length_penalty))))
                else:
                    kept.append(_Live(parent.tokens + [t], parent.logprob + lp))
                    rows.append(row_base + h)
            if len(finished[g]) >= width:
                del rows[len(rows) - len(kept):]
                kept = []
            for k in kept:
                chosen_now[k.tokens[-1]] += 1
            row_base += len(group)
            next_live.append(kept)
        live = next_live
        if not rows:
            break
        state = stepper.select(state, rows)
        last = [h.tokens[-1] for g in live for h in g]
    return [h for g in finished for h in g]


# ---- sampling (daemon/src/decode/sample.rs) ----

MASK64 = (1 << 64) - 1


@dataclass
class SplitMix64:
    """The daemon's seedable generator: identical draws for identical seeds, everywhere."""

    state: int

    def next_f64(self) -> float:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        return (z >> 11) / float(1 << 53)


def draw(lp: np.ndarray, temperature: float, top_k: int, top_p: float, rng: SplitMix64) -> int:
    """A token from log-probs `lp`, tempered, truncated to the top_k most probable (0 = all)
    and to the smallest set reaching top_p."""
    finite = np.flatnonzero(np.isfinite(lp))
    order = finite[np.lexsort((finite, -lp[finite]))].tolist()
    if top_k > 0:
        order = order[:top_k]
    temp = F32(temperature)
    top = lp[order[0]] / temp
    probs = [math.exp(float(lp[t] / temp - top)) for t in order]
    total = sum(probs)
    cumulative, keep = 0.0, len(probs)
    for i in range(len(probs)):
        probs[i] /= total
        cumulative += probs[i]
        if cumulative >= float(F32(top_p)):
            keep = i + 1
            break
    u = rng.next_f64() * sum(probs[:keep])
    for i in range(keep):
        if u < probs[i]:
            return order[i]
        u -= probs[i]
    return order[keep - 1]


def sample(stepper: Stepper, special: SpecialTokens, p: DecodeParams, n: int,
           temperature: float, top_k: int, top_p: float) -> list[Hypothesis]:
    """`n` ancestral samples decoded as one batch; log-probs are the untempered model's."""
    vocab = stepper.vocab()
    rng = SplitMix64(p.seed)
    state = stepper.init(n)
    live = [_Live([], F32(0.0)) for _ in range(n)]
    last = [special.bos] * n
    done = []
    while live:
        logits, state = stepper.step(last, state)
        logits = np.asarray(logits, dtype=F32).reshape(-1, vocab)
        rows, nxt = [], []
        for i, hyp in enumerate(live):
            row = process_row(logits[i].copy(), hyp.tokens, p, special)
            if not np.isfinite(row).any():
                continue  # every token banned: this sample cannot continue
            t = draw(row, temperature, top_k, top_p, rng)
            hyp.logprob = hyp.logprob + row[t]
            if t == special.eos:
                done.append(Hypothesis(hyp.tokens, float(hyp.logprob), float(
                    normalised(hyp.logprob, len(hyp.tokens) + 1, p.length_penalty))))
            else:
                hyp.tokens.append(t)
                rows.append(i)
                nxt.append(hyp)
        live = nxt
        if not rows:
            break
        state = stepper.select(state, rows)
        last = [h.tokens[-1] for h in live]
    return done


def fluent(tokens: list[int]) -> bool:
    """No token directly repeats and no bigram occurs twice."""
    bigrams = list(zip(tokens, tokens[1:]))
    return all(a != b for a, b in bigrams) and len(set(bigrams)) == len(bigrams)


def decode(stepper: Stepper, special: SpecialTokens, p: DecodeParams) -> list[Hypothesis]:
    """Hypotheses best first: at least one, at most 1 + p.alternatives, distinct."""
    p.validate()
    if p.strategy == "greedy":
        hyps = beam(stepper, special, p, 1, 1, 0.0)
    elif p.strategy == "beam":
        hyps = beam(stepper, special, p, p.beam_size, 1, 0.0)
    elif p.strategy == "diverse_beam":
        hyps = beam(stepper, special, p, p.beam_size, p.groups, p.diversity_penalty)
    elif p.strategy == "sample":
        hyps = sample(stepper, special, p, 1 + p.alternatives, p.temperature, p.top_k, p.top_p)
    else:
        every = sample(stepper, special, p, p.samples, p.temperature, 0, p.top_p)
        hyps = [h for h in every if fluent(h.tokens)] or every
    hyps = sorted(hyps, key=lambda h: -h.score)  # stable: ties keep the strategy's order
    seen, out = set(), []
    for h in hyps:
        if tuple(h.tokens) not in seen:
            seen.add(tuple(h.tokens))
            out.append(h)
    return out[: 1 + p.alternatives]


@torch.no_grad()
def decode_mel(model, mel: np.ndarray, special: SpecialTokens,
               p: DecodeParams) -> list[Hypothesis]:
    """Decodes one clip's normalised log-mel [n_mels, frames] with a PyTorch model."""
    memory = model.encode(torch.from_numpy(np.asarray(mel, dtype=F32))[None])
    return decode(TorchStepper(model, memory), special, p)
