"""What `hark-eval` shows beyond the metrics: where the decoder listens (its attention over
the spectrogram, word by word), how the encoder lays the sounds out (a t-SNE map of clip
embeddings coloured by category), how each category fares, and the worst captions beside
their references and the tags the model heard.
"""

from pathlib import Path

import numpy as np
import torch

from hark_export.data import Clip, normalise_caption
from hark_export.model import Attention, Transformer, greedy_decode
from hark_export.progress import progress


def _figure(*args, **kwargs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt, plt.subplots(*args, **kwargs)


@torch.no_grad()
def attention_map(model, mel: np.ndarray) -> tuple[list[int], np.ndarray] | None:
    """Greedy token ids of one clip and the decoder's attention over the memory at each of
    those steps [L, S]: the Bahdanau weights (attention, pretrained) or the last layer's
    cross-attention averaged over heads (transformer); None for models without attention."""
    if isinstance(model, Attention):
        target = model
    elif isinstance(model, Transformer):
        target = model.dec[-1]
    else:
        return None
    log = []
    target.attention_log = log
    try:
        ids = greedy_decode(model, torch.from_numpy(np.asarray(mel, np.float32))[None])[0]
    finally:
        target.attention_log = None
    weights = torch.stack([w[0] for w in log[: len(ids)]]).float().numpy() if ids else \
        np.zeros((0, 1))
    return ids, weights


def plot_attention(mel: np.ndarray, words: list[str], weights: np.ndarray, seconds: float,
                   title: str, path: Path) -> None:
    """The log-mel spectrogram above the attention of each word over the same time axis."""
    plt, (fig, (top, bottom)) = _figure(2, 1, figsize=(8, 2.2 + 0.22 * max(len(words), 4)),
                                        sharex=True,
                                        gridspec_kw={"height_ratios": [2, max(len(words), 4) / 4]})
    top.imshow(mel, origin="lower", aspect="auto", extent=[0, seconds, 0, mel.shape[0]],
               cmap="magma")
    top.set_ylabel("mel band")
    top.set_title(title, fontsize=9)
    bottom.imshow(weights, aspect="auto", extent=[0, seconds, len(words), 0], cmap="Blues",
                  vmin=0)
    bottom.set_yticks(np.arange(len(words)) + 0.5, words, fontsize=8)
    bottom.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


@torch.no_grad()
def clip_summaries(model, mels: list[np.ndarray], n: int = 3
                   ) -> tuple[np.ndarray, list[list[tuple[str, float]]]]:
    """From one encoder pass per clip: its embedding, the decoder's memory averaged over time
    [clips, D], and the tag head's n most probable labels (none without a tag head)."""
    rows, heard = [], []
    for mel in progress(mels, "embeddings and tags", unit="clip"):
        memory = model.encode(torch.from_numpy(np.asarray(mel, np.float32))[None])
        rows.append(memory[0].mean(dim=0).float().numpy())
        if not model.has_tag_head:
            heard.append([])
            continue
        p = torch.sigmoid(model.tag_logits(memory))[0].numpy()
        heard.append([(model.tag_labels[j], round(float(p[j]), 3))
                      for j in np.argsort(-p, kind="stable")[:n]])
    return np.stack(rows), heard


def plot_embedding_map(embeddings: np.ndarray, clips: list[Clip], path: Path,
                       most: int = 20) -> int:
    """A t-SNE map of the clips that hold exactly one category, coloured by it (the `most`
    commonest categories; the rest grey). Returns how many clips it shows."""
    from sklearn.manifold import TSNE
    single = [i for i, c in enumerate(clips) if len(set(c.tags)) == 1]
    if len(single) < 5:
        return 0
    xy = TSNE(perplexity=min(30.0, (len(single) - 1) / 3), init="pca", random_state=0
              ).fit_transform(embeddings[single])
    cats = [clips[i].tags[0] for i in single]
    names, counts = np.unique(cats, return_counts=True)
    shown = list(names[np.argsort(-counts, kind="stable")][:most])
    plt, (fig, ax) = _figure(figsize=(9, 7))
    rest = [k for k, c in enumerate(cats) if c not in shown]
    ax.scatter(xy[rest, 0], xy[rest, 1], s=8, c="lightgrey", label="other")
    colours = plt.get_cmap("tab20")
    for n, cat in enumerate(shown):
        k = [j for j, c in enumerate(cats) if c == cat]
        ax.scatter(xy[k, 0], xy[k, 1], s=10, color=colours(n % 20), label=cat)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of clip embeddings (memory averaged over time), {len(single)} "
                 "single-category clips", fontsize=9)
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return len(single)


def per_category(clips: list[Clip], captions: list[str], cider: list[float],
                 sbert: list[float], synonyms: dict[str, set[str]]) -> list[dict]:
    """Per category of the clips' tags: clips, mean CIDEr-D and SBERT similarity of their
    captions, and (for categories with synonyms) the share of captions naming it."""
    rows = []
    for cat in sorted({t for c in clips for t in c.tags}):
        idx = [i for i, c in enumerate(clips) if cat in c.tags]
        row = {"category": cat, "clips": len(idx),
               "cider_d": float(np.mean([cider[i] for i in idx])),
               "sbert_sim": float(np.mean([sbert[i] for i in idx]))}
        if cat in synonyms:
            row["named"] = float(np.mean([bool(set(captions[i].split()) & synonyms[cat])
                                          for i in idx]))
        rows.append(row)
    return rows


def failures(clips: list[Clip], captions: list[str], cider: list[float],
             heard: list[list[tuple[str, float]]] | None, k: int = 10) -> list[dict]:
    """The k worst captions by CIDEr-D with their references, true categories and the
    model's most probable tags."""
    order = np.argsort(cider, kind="stable")[:k]
    return [{"clip": clips[i].id, "caption": captions[i], "cider_d": float(cider[i]),
             "categories": clips[i].tags,
             "references": [normalise_caption(r) for r in clips[i].captions],
             "tags": heard[i] if heard else []} for i in order]


def markdown(name: str, categories: list[dict], worst: list[dict], attention: list[str],
             embedding: str, shown: int) -> list[str]:
    """The report's diagnostics section of one model."""
    lines = ["", f"## {name}: diagnostics", ""]
    if attention:
        lines += ["### Where the decoder listens", "",
                  "Each word of the greedy caption (rows) against time: the attention weights "
                  "over the encoder's frames, under the clip's log-mel spectrogram.", ""]
        lines += [f"![attention]({a})" for a in attention] + [""]
    if embedding:
        lines += ["### Clip embeddings", "",
                  f"![embedding map]({embedding})", "",
                  f"t-SNE of the {shown} test clips that hold a single category: clips of one "
                  "category that sit together are told apart by the encoder before any "
                  "word is decoded.", ""]
    if categories:
        named = any("named" in r for r in categories)
        lines += ["### Per category", "",
                  "| category | clips | CIDEr-D | SBERT-sim |" + (" named |" if named else ""),
                  "|---|---:|---:|---:|" + ("---:|" if named else "")]
        for r in categories:
            cell = (f" {100 * r['named']:.0f} % |" if "named" in r else " – |") if named else ""
            lines.append(f"| {r['category']} | {r['clips']} | {r['cider_d']:.3f} | "
                         f"{r['sbert_sim']:.3f} |{cell}")
        lines.append("")
    lines += ["### Failure analysis: the worst captions by CIDEr-D", ""]
    for w in worst:
        tags = ", ".join(f"{t} {p:.2f}" for t, p in w["tags"]) or "–"
        lines.append(f"- `{w['clip']}` ({', '.join(w['categories']) or 'no category'}): "
                     f"**{w['caption'] or '(empty)'}** (CIDEr-D {w['cider_d']:.2f}; "
                     f"tags heard: {tags})")
        lines += [f"  - {r}" for r in w["references"]]
    return lines + [""]
