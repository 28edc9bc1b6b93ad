"""Recipe techniques from the captioning literature, each behind its own `hark-train` flag
and measured against the plain recipe (export/README.md, "Recipe techniques").

- `--balance`: category-balanced sampling of the training scenes;
- `--filter-captions`: references that are too short or near-duplicates are dropped;
- `--curriculum N`: the first N epochs see simple scenes only;
- `--rare-word-weight A`: a token's loss weighted by its word's frequency ** -A, against
  generic captions that use only the commonest words;
- `--unlikelihood B`: plus B times token-level unlikelihood (Welleck et al. 2020): at each
  position the words already said, other than the target, are pushed down, against the
  repetitive captions ("a dog barks and a dog barks") that maximum likelihood favours;
- `--scst-epochs N`: self-critical sequence training after the cross-entropy stage (sampled
  captions rewarded by CIDEr-D against the greedy caption's, Rennie et al. 2017).
"""

from collections import Counter
from dataclasses import replace

import torch
import torch.nn.functional as F

from hark_export.data import (BOS, EOS, PAD, SPECIALS, Clip, Vocab, normalise_caption,
                              pad_mels)
from hark_export.metrics import CiderD

MIN_WORDS = 3


def filter_captions(clips: list[Clip]) -> tuple[list[Clip], int]:
    """Clips with references of fewer than MIN_WORDS words and repeats of the same bag of
    words dropped (each clip keeps at least its first caption); and how many were dropped."""
    out, dropped = [], 0
    for clip in clips:
        kept, seen = [], set()
        for caption in clip.captions:
            words = normalise_caption(caption).split()
            bag = frozenset(words)
            if len(words) >= MIN_WORDS and bag not in seen:
                kept.append(caption)
                seen.add(bag)
        kept = kept or clip.captions[:1]
        dropped += len(clip.captions) - len(kept)
        out.append(replace(clip, captions=kept))
    return out, dropped


def balanced_weights(clips: list[Clip]) -> torch.Tensor:
    """A sampling weight per clip: the mean over its categories of 1 / that category's clip
    count, so every category is drawn about equally often; untagged clips (silence) get the
    mean weight of the tagged ones."""
    counts = Counter(t for clip in clips for t in set(clip.tags))
    weights = [sum(1.0 / counts[t] for t in set(c.tags)) / len(set(c.tags)) if c.tags else 0.0
               for c in clips]
    tagged = [w for w in weights if w > 0]
    mean = sum(tagged) / len(tagged) if tagged else 1.0
    return torch.tensor([w or mean for w in weights], dtype=torch.double)


def single_tag_balance(clips: list[Clip], labels: list[str]) -> torch.Tensor:
    """Per label [n_labels]: the mean count of the one-category clips over this label's count
    (1 for labels with none), so each category weighs the same in `--single-tag-weight`."""
    counts = Counter(c.tags[0] for c in clips if len(set(c.tags)) == 1)
    mean = sum(counts.values()) / max(1, len(counts))
    return torch.tensor([mean / counts[t] if counts[t] else 1.0 for t in labels])


def curriculum_indices(clips: list[Clip], epoch: int, epochs: int) -> list[int]:
    """The clips epoch `epoch` trains on while the curriculum lasts (`epoch` < `epochs`):
    scenes with at most epoch + 1 categories (silent scenes count as simple)."""
    limit = epoch + 1
    return [i for i, c in enumerate(clips) if len(set(c.tags)) <= limit] if epoch < epochs \
        else list(range(len(clips)))


def token_weights(vocab: Vocab, captions: list[str], alpha: float) -> torch.Tensor:
    """Per-token loss weights [V]: (word count / median count) ** -alpha, scaled so the
    training tokens' mean weight is 1 (the loss keeps its size); specials weigh 1."""
    counts = Counter(vocab.stoi.get(w, 3) for c in captions for w in normalise_caption(c).split())
    counts[EOS] = len(captions)
    n = torch.tensor([float(counts.get(i, 0)) for i in range(len(vocab))])
    median = n[len(SPECIALS):].median().clamp(min=1.0)
    weights = (n.clamp(min=1.0) / median) ** -alpha
    weights[:len(SPECIALS)] = 1.0
    weights = weights / ((weights * n).sum() / n.sum())
    weights[PAD] = 0.0
    return weights


def weighted_token_loss(logits, targets, weights, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy per token weighted by its target word's weight, averaged over tokens."""
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=PAD,
                           label_smoothing=label_smoothing, reduction="none")
    mask = targets.flatten() != PAD
    return (loss * weights[targets.flatten()]).sum() / mask.sum().clamp(min=1)


def unlikelihood_loss(logits, targets) -> torch.Tensor:
    """Mean over target tokens of -sum log(1 - p(c)) over the candidates c: the words of the
    same caption before that position, except the position's own target."""
    n, length, vocab = logits.shape
    earlier = torch.ones(length, length, dtype=torch.bool, device=targets.device).tril(-1)
    candidates = targets[:, None, :].expand(n, length, length)  # [n, t, j] = targets[n, j]
    drop = ~earlier | (candidates == targets[:, :, None]) | (candidates < len(SPECIALS))
    candidates = candidates.masked_fill(drop, PAD)
    negative = torch.zeros(n, length, vocab, device=logits.device).scatter_(2, candidates, 1.0)
    negative[..., PAD] = 0.0
    probs = F.softmax(logits.float(), dim=2)
    per_token = -(torch.log1p(-probs.clamp(max=1 - 1e-5)) * negative).sum(2)
    mask = targets != PAD
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def decode_batch(model, memory: torch.Tensor, max_len: int, sample: bool):
    """Token ids [N, L] and their summed log-probabilities [N] (grad flows when sampling),
    greedy or sampled from the model's distribution, stepping like the daemon."""
    states = model.init_state(memory)
    tokens = torch.full((memory.shape[0],), BOS, dtype=torch.long, device=memory.device)
    done = torch.zeros_like(tokens, dtype=torch.bool)
    out, logp_sum = [], torch.zeros(memory.shape[0], device=memory.device)
    for _ in range(max_len - 1):
        logits, *states = model.step(tokens, memory, *states)
        logp = F.log_softmax(logits.float(), dim=1)
        tokens = (torch.multinomial(logp.exp(), 1)[:, 0] if sample else logp.argmax(1))
        tokens = torch.where(done, torch.full_like(tokens, PAD), tokens)
        logp_sum = logp_sum + torch.where(done, 0.0, logp.gather(1, tokens[:, None])[:, 0])
        out.append(tokens)
        done = done | (tokens == EOS)
        if bool(done.all()):
            break
    return torch.stack(out, 1), logp_sum


class SCST:
    """Self-critical sequence training: for each clip, `samples` captions are drawn from the
    model and each is pushed up or down by how much its CIDEr-D beats the greedy caption's
    (the baseline, decoded without gradients)."""

    def __init__(self, vocab: Vocab, corpus: list[list[str]], samples: int, max_len: int):
        self.vocab, self.samples, self.max_len = vocab, samples, max_len
        self.cider = CiderD([[normalise_caption(r) for r in refs] for refs in corpus])

    def loss(self, model, x: torch.Tensor, references: list[list[str]]):
        """(policy-gradient loss, mean sampled reward, mean greedy reward) of one batch."""
        memory = model.encode(x)
        with torch.no_grad():
            greedy, _ = decode_batch(model, memory, self.max_len, sample=False)
        sampled, logp = decode_batch(model, memory.repeat_interleave(self.samples, 0),
                                     self.max_len, sample=True)
        k = self.samples
        sampled_ids, base, reward = sampled.tolist(), [], []
        for i, (g, rs) in enumerate(zip(greedy.tolist(), references)):
            captions = [self.vocab.decode(t) for t in [g] + sampled_ids[i * k:(i + 1) * k]]
            first, *rest = self.cider.scores(captions, [normalise_caption(r) for r in rs])
            base.append(first)
            reward += rest
        advantage = torch.tensor([r - base[i // k] for i, r in enumerate(reward)],
                                 device=logp.device)
        lengths = (sampled != PAD).sum(1).clamp(min=1).float()
        loss = -(advantage * logp / lengths).mean()
        return loss, sum(reward) / len(reward), sum(base) / len(base)


@torch.no_grad()
def greedy_cider(model, loader, scst: SCST) -> float:
    """Mean CIDEr-D of greedy captions over a loader whose batches carry their references."""
    model.eval()
    total, count = 0.0, 0
    for x, refs in loader:
        ids, _ = decode_batch(model, model.encode(x), scst.max_len, sample=False)
        for g, r in zip(ids.tolist(), refs):
            total += scst.cider.score(scst.vocab.decode(g), [normalise_caption(c) for c in r])
            count += 1
    return total / max(count, 1)


def scst_collate(batch):
    """(inputs [B, F, T_max], references) for SCST: clips with their caption texts."""
    xs, refs = zip(*batch)
    return pad_mels(list(xs)), list(refs)


class ClipsWithReferences(torch.utils.data.Dataset):
    """A CaptionDataset's inputs with each clip's reference texts (SCST's reward needs them)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i][0], self.dataset.clips[i].captions
