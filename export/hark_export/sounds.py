"""What a bundle needs for learned sounds ("this is our doorbell") besides its encoder's sound
embedding: the train clips' mean to centre on, negatives for the probe and a default threshold
per number of examples, computed through the bundle's own encoder graph.

    hark-sounds-reference BUNDLE [BUNDLE ...] --corpus data/real [--negatives 200]

A learned sound is a logistic probe: the user's k examples against the bundle's negatives
(random train clips of any category: hark cannot know the user's category), on embeddings
centred on the train mean and scaled to unit length block by block (`centred`), the two
classes weighted equally. The
daemon fits the same probe (daemon/src/sounds/) and fires above the threshold stored here,
chosen on the corpus's val split as the lowest whose precision pooled over episodes reaches
`TARGET_PRECISION` (home automation wants few false alarms). export/scripts/sounds_by_example.py
chose the embedding, the scorer and `PROBE_L2` by measurement.

Writes BUNDLE/sounds.f32 (little-endian float32 rows of the embedding's width: the mean, then
the negatives, `centred`) and the manifest's [sounds] table; rehashes [files].
"""

import argparse
import os
import sys
import tomllib
import zlib
from pathlib import Path

import numpy as np

from hark_export.bundle import MANIFEST, OnnxModel, validate_bundle, write_manifest
from hark_export.data import features
from hark_export.progress import progress
from hark_export.real import load_corpus

REFERENCE = "sounds.f32"
KS = (1, 3, 5)  # example counts a threshold is calibrated for
PROBE_L2 = 1e-2  # weight decay on unit-length inputs, chosen on val by sounds_by_example.py
TARGET_PRECISION = 0.9
NEWTON_STEPS = 50


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def centred(x: np.ndarray, mean: np.ndarray, parts: int = 1) -> np.ndarray:
    """Embeddings [..., D] as learned sounds compare them: centred on the train `mean`, each of
    `parts` equal slices (one encoder block's vector each) scaled to unit length, then the
    whole (so each block weighs the same whatever the scale of its values)."""
    x = np.concatenate([unit(p) for p in np.split(x - mean, parts, axis=-1)], axis=-1)
    return x / np.sqrt(parts)


def fit_probe(pos: np.ndarray, neg: np.ndarray, l2: float = PROBE_L2) -> np.ndarray:
    """Weights [D + 1] (bias last) of an L2-regularised logistic regression of `pos` against
    `neg`, the two classes weighted equally (k examples against hundreds of negatives); the
    bias is not regularised. Newton's method, as the daemon fits it: the loss is strictly
    convex, so both reach the same optimum."""
    x = np.hstack([np.vstack([pos, neg]), np.ones((len(pos) + len(neg), 1))])
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    w = np.where(y == 1, 0.5 / len(pos), 0.5 / len(neg))
    reg = np.full(x.shape[1], l2)
    reg[-1] = 0.0
    theta = np.zeros(x.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1 / (1 + np.exp(-(x @ theta)))
        grad = x.T @ (w * (p - y)) + reg * theta
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-7:
            break
    return theta


def probe_scores(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(x @ theta[:-1] + theta[-1])))


def rng_for(*key) -> np.random.Generator:
    """A generator seeded by the key's text, so draws do not depend on iteration order."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def episodes(rows: list[dict], split: str, min_recordings, draws: int,
             extra=None) -> list[dict]:
    """Example sets and scored pools (indices into rows) of a split: for each category with
    `min_recordings(k)` source recordings there and each k, `draws` seeded sets of one clip
    from each of k distinct recordings; the pool is every clip of the split outside them.
    `extra(rng, category)` adds keys to each episode, drawn from its generator after the
    examples."""
    idx = np.array([i for i, r in enumerate(rows) if r["split"] == split])
    cat = np.array([r["category"] for r in rows])
    rec = np.array([r["recording"] for r in rows])
    out = []
    for c in sorted(set(cat[idx])):
        recordings = sorted(set(rec[idx][cat[idx] == c]))
        for k in KS:
            if len(recordings) < min_recordings(k):
                continue
            for d in range(draws):
                rng = rng_for(split, c, k, d)
                chosen = rng.choice(recordings, k, replace=False)
                examples = np.array([rng.choice(idx[rec[idx] == x]) for x in chosen])
                pool = idx[~np.isin(rec[idx], chosen)]
                out.append({"category": c, "k": k, "draw": d, "examples": examples,
                            "pool": pool, "positive": cat[pool] == c,
                            **(extra(rng, c) if extra else {})})
    return out


def pooled_precision(scored: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> np.ndarray:
    """Per threshold of `grid`: the precision of every episode's firings pooled (1 where
    nothing fires)."""
    tp = fp = 0
    for s, pos in scored:
        t, f = np.sort(s[pos]), np.sort(s[~pos])
        tp = tp + len(t) - np.searchsorted(t, grid, "left")
        fp = fp + len(f) - np.searchsorted(f, grid, "left")
    return np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)


def precise_threshold(scored: list) -> float | None:
    """The lowest threshold whose pooled precision reaches TARGET_PRECISION (None: none)."""
    grid = np.unique(np.quantile(np.concatenate([s for s, _ in scored]),
                                 np.linspace(0, 1, 1001)))
    ok = np.flatnonzero(pooled_precision(scored, grid) >= TARGET_PRECISION)
    return float(grid[ok[0]]) if len(ok) else None


def encoder_outputs(model: OnnxModel, corpus: Path, rows: list[dict],
                    names: list[str]) -> list[np.ndarray]:
    """The bundle's encoder outputs `names` ([1, n] each) for each clip, as the daemon
    computes them: one [N, n] array per name."""
    enc = model.manifest["encoder"]
    out = [[] for _ in names]
    for r in progress(rows, "sound embeddings", unit="clip"):
        mel = features(corpus / r["path_16000"], model.manifest["frontend"])
        for acc, value in zip(out, model.encoder.run(names, {enc["input"]: mel[None]})):
            acc.append(value[0])
    return [np.asarray(a, np.float64) for a in out]


def embed(model: OnnxModel, corpus: Path, rows: list[dict], output: str) -> np.ndarray:
    """The bundle's sound embedding [N, E] of each clip, as the daemon computes it."""
    return encoder_outputs(model, corpus, rows, [output])[0]


def reference(model: OnnxModel, corpus: Path, negatives: int, draws: int, parts: int = 1,
              output: str = "embedding") -> tuple[np.ndarray, dict]:
    """(the rows of sounds.f32, the [sounds] table) of a bundle, from a `hark-data real`
    corpus's train split (mean, negatives) and val split (thresholds); `parts`: the blocks
    side by side in the embedding (see `centred`)."""
    rows = [r for r in load_corpus(corpus) if r["split"] in ("train", "val")]
    x = embed(model, corpus, rows, output)
    train = np.array([r["split"] == "train" for r in rows])
    if train.sum() < negatives:
        raise ValueError(f"{corpus}: {train.sum()} train clips, fewer than the {negatives} "
                         "negatives asked for")
    if x.shape[1] % parts:
        raise ValueError(f"an embedding of {x.shape[1]} values does not split into {parts} parts")
    mean = x[train].mean(0)
    x = centred(x, mean, parts)
    neg = x[rng_for("negatives").choice(np.flatnonzero(train), negatives, replace=False)]
    thresholds = {}
    for k in KS:
        scored = [(probe_scores(fit_probe(x[ep["examples"]], neg), x[ep["pool"]]),
                   ep["positive"])
                  for ep in episodes(rows, "val", lambda k: k + 1, draws) if ep["k"] == k]
        t = precise_threshold(scored) if scored else None
        if t is not None:
            thresholds[k] = round(t, 4)
    if not thresholds:
        raise ValueError(f"{corpus}: no val episode reaches precision {TARGET_PRECISION}: "
                         "the corpus's val split is too small to calibrate a threshold")
    table = {"output": output, "file": REFERENCE, "dim": int(x.shape[1]), "parts": parts,
             "negatives": negatives, "probe_l2": PROBE_L2,
             "examples": list(thresholds), "thresholds": list(thresholds.values())}
    return np.vstack([mean, neg]).astype("<f4"), table


def add_reference(bundle: Path, corpus: Path, negatives: int = 200, draws: int = 10,
                  parts: int | None = None) -> dict:
    """Writes BUNDLE/sounds.f32 and [sounds]; returns the table. `parts` defaults to the
    bundle's current [sounds] parts, else 1."""
    model = OnnxModel(bundle)
    if parts is None:
        parts = model.manifest.get("sounds", {}).get("parts", 1)
    names = [o.name for o in model.encoder.get_outputs()]
    if "embedding" not in names:
        raise ValueError(f"{bundle}: its encoder has no \"embedding\" output (only CED bundles "
                         "exported by this hark-export have one): re-export it")
    rows, table = reference(model, corpus, negatives, draws, parts)
    rows.tofile(Path(bundle) / REFERENCE)
    manifest = tomllib.loads((Path(bundle) / MANIFEST).read_text())
    manifest["sounds"] = table
    write_manifest(bundle, manifest)
    validate_bundle(bundle)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", type=Path, nargs="+")
    parser.add_argument("--corpus", type=Path, required=True, help="a hark-data real corpus")
    parser.add_argument("--negatives", type=int, default=200)
    parser.add_argument("--draws", type=int, default=10, help="example draws per category and k")
    parser.add_argument("--parts", type=int, help="encoder blocks side by side in the embedding "
                        "(hark-export writes it; default: the bundle's [sounds] parts, else 1)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for bundle in args.bundles:
        try:
            table = add_reference(bundle, args.corpus, args.negatives, args.draws, args.parts)
        except ValueError as e:
            sys.exit(f"hark-sounds-reference: {e}")
        print(f"{bundle}: [sounds] {table}")


if __name__ == "__main__":
    main()
