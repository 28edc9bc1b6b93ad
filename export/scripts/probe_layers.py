"""Which of YAMNet's layers (or CED's blocks) hears hark's categories best: a linear probe per
layer.

    python export/scripts/probe_layers.py data/real [--out reports/probe-layers.md] \
        [--combine 9s,12,13 ...] [--encoder ced]

For every clip of a `hark-data real` corpus, YAMNet (frozen, with the silence tail hark's
encoder adds) runs once; the outputs of layers 6-13 are averaged over frequency and time (and,
as a second form, their standard deviation over time appended). A class-balanced linear
classifier (AdamW, dropout 0.3 on the inputs, 300 full-batch steps, seed 0) is trained on the
train split's clips and scored on the val and test splits: the share of clips whose category
it names, and the mean of the per-category shares. `--combine` adds rows for layers side by
side ("9s,12,13": layer 9 with its standard deviation, 12 and 13 means). Chose the `yamnet-mid`
encoder: layer 12 (the last before the embeddings) names ~10 points more held-out clips than
the embeddings; and `yamnet-deep`: layer 9 beside 12 and 13 names ~4 points more than those two.
About 5 minutes on one core for 2,200 clips. With `--encoder ced`, CED-Tiny's blocks 0-11 (the
last after its final norm), each clip padded with silence to 10 s as hark's CED encoder does;
a block's features are its 4 frequency tokens per time patch side by side (768, what the
decoder reads), averaged over the clip's own time patches (and their standard deviation).
"""

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hark_export import data
from hark_export.ced import DEPTH, PATCH, load_ced
from hark_export.yamnet import load_yamnet

FIRST = {"yamnet": 6, "ced": 0}  # YAMNet's layers 6-11 are 512 wide at 1/16 of the frame
# rate, 12-13 1024 at 1/32; CED's blocks all 192 x 4 at 1/16


def ced_features(corpus: Path, rows: list[dict]) -> dict[str, list[np.ndarray]]:
    """Per clip id, per CED block 0..11: [mean over the clip's time patches, std over them]."""
    enc, _, frontend, _ = load_ced("ced")
    out = {}
    with torch.no_grad():
        for r in rows:
            mel = torch.from_numpy(np.asarray(data.features(corpus / r["path_16000"], frontend),
                                              dtype=np.float32))[None]
            patches = max(1, min(mel.shape[2], enc.MIN_FRAMES) // PATCH)  # the clip's own
            feats = []
            for tokens in enc.ced(enc.padded(mel), tuple(range(DEPTH))):
                f = enc.side_by_side(tokens)[0, :patches]  # (Tp, 768)
                feats.append(np.concatenate([f.mean(0).numpy(),
                                             f.std(0, unbiased=False).numpy()]))
            out[r["id"]] = feats
    return out


def layer_features(corpus: Path, rows: list[dict]) -> dict[str, list[np.ndarray]]:
    """Per clip id, per layer FIRST..13: [mean over time (C), std over time (C)]."""
    enc, _, frontend, _ = load_yamnet()
    out = {}
    with torch.no_grad():
        for r in rows:
            mel = torch.from_numpy(np.asarray(data.features(corpus / r["path_16000"], frontend),
                                              dtype=np.float32))[None]
            x, feats = enc.with_tail(mel).unsqueeze(1), []
            for i, layer in enumerate(enc.yamnet.layers):
                x = layer(x)
                if i >= FIRST["yamnet"]:
                    f = x.mean(2)[0]  # (C, T')
                    feats.append(np.concatenate([f.mean(1).numpy(),
                                                 f.std(1, unbiased=False).numpy()]))
            out[r["id"]] = feats
    return out


def probe(x: dict[str, np.ndarray], y: dict[str, np.ndarray], n_classes: int) -> dict:
    """Train on x["train"], return {split: (hit rate, mean per-category hit rate)}."""
    mu, sd = x["train"].mean(0), x["train"].std(0) + 1e-6
    norm = lambda a: torch.tensor((a - mu) / sd, dtype=torch.float32)  # noqa: E731
    torch.manual_seed(0)
    linear = torch.nn.Linear(x["train"].shape[1], n_classes)
    counts = np.bincount(y["train"], minlength=n_classes)
    weight = torch.tensor(len(y["train"]) / n_classes / np.maximum(counts, 1), dtype=torch.float32)
    optimizer = torch.optim.AdamW(linear.parameters(), 1e-3, weight_decay=0.01)
    inputs, targets = norm(x["train"]), torch.tensor(y["train"])
    for _ in range(300):
        optimizer.zero_grad()
        F.cross_entropy(linear(F.dropout(inputs, 0.3)), targets, weight=weight).backward()
        optimizer.step()
    scores = {}
    with torch.no_grad():
        for split in ("val", "test"):
            p, t = linear(norm(x[split])).argmax(1).numpy(), y[split]
            scores[split] = ((p == t).mean(),
                             np.mean([(p[t == c] == c).mean() for c in np.unique(t)]))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="a hark-data real corpus (clips.csv)")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--combine", action="append", default=[], metavar="LAYERS",
                        help='layers side by side, e.g. "9s,12,13" (s: with the std over time)')
    parser.add_argument("--encoder", choices=("yamnet", "ced"), default="yamnet")
    args = parser.parse_args()
    first = FIRST[args.encoder]
    torch.set_num_threads(1)
    rows = list(csv.DictReader(open(args.corpus / "clips.csv", encoding="utf-8")))
    categories = sorted({r["category"] for r in rows})
    feats = (ced_features if args.encoder == "ced" else layer_features)(args.corpus, rows)
    splits = {s: [r for r in rows if r["split"] == s] for s in ("train", "val", "test")}
    y = {s: np.array([categories.index(r["category"]) for r in rs]) for s, rs in splits.items()}
    lines = ["| layer | width | pooling | named (val) | per category (val) | named (test) | "
             "per category (test) |", "|---|---:|---|---:|---:|---:|---:|"]
    for j in range(len(feats[rows[0]["id"]])):
        width = len(feats[rows[0]["id"]][j]) // 2
        for pooling, cut in (("mean", width), ("mean + std", 2 * width)):
            x = {s: np.stack([feats[r["id"]][j][:cut] for r in rs]) for s, rs in splits.items()}
            s = probe(x, y, len(categories))
            last = {"yamnet": " (embeddings)", "ced": " (final)"}[args.encoder] \
                if j == len(feats[rows[0]["id"]]) - 1 else ""
            lines.append(f"| {first + j}{last} | {width} "
                         f"| {pooling} | {100 * s['val'][0]:.1f} % | {100 * s['val'][1]:.1f} % "
                         f"| {100 * s['test'][0]:.1f} % | {100 * s['test'][1]:.1f} % |")
            print(lines[-1], flush=True)
    for combo in args.combine:
        parts = [(int(p.rstrip("s")), p.endswith("s")) for p in combo.split(",")]

        def features(r):
            return np.concatenate([f if std else f[:len(f) // 2]
                                   for f, std in ((feats[r["id"]][n - first], std)
                                                  for n, std in parts)])
        x = {s: np.stack([features(r) for r in rs]) for s, rs in splits.items()}
        s = probe(x, y, len(categories))
        names = " + ".join(f"{n}{' (mean + std)' if std else ''}" for n, std in parts)
        width = sum(len(feats[rows[0]["id"]][n - first]) // 2 for n, _ in parts)
        lines.append(f"| {names} | {width} | side by side | {100 * s['val'][0]:.1f} % "
                     f"| {100 * s['val'][1]:.1f} % | {100 * s['test'][0]:.1f} % "
                     f"| {100 * s['test'][1]:.1f} % |")
        print(lines[-1], flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
