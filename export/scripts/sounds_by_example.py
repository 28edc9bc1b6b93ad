"""Teach hark a sound by example: how well do k recordings of a sound find it again, by which
embedding of the pretrained encoders and which scorer, and at what default threshold.

    python export/scripts/sounds_by_example.py --corpus data/real --out reports/sounds \
        [--draws 10] [--negatives 200]

1. Every clip of a `hark-data real` corpus is embedded once by CED-Tiny (the clip padded with
   silence to 10 s, as hark's CED encoder does) and by YAMNet (with its silence tail), cached
   in OUT/emb-ced.npz and OUT/emb-yamnet.npz. Representations (`REPRESENTATIONS`): CED's final
   block, its 4 frequency tokens side by side, averaged over the clip's own time patches (and
   with their std); the mean of every final token of the padded window (what CED's AudioSet
   head averages); CED's 527 AudioSet probabilities; block 7 (the `ced-mid` tap) for
   reference; YAMNet's embeddings (layer 13) averaged over time (and with the std), layer 12
   (the `yamnet-mid` tap) and its 521 AudioSet probabilities averaged over patches.
2. Episodes, on the test split: for each category with at least `MIN_RECORDINGS` source
   recordings there, for k = 1, 3, 5 and each of `--draws` seeded draws, one clip from each of
   k distinct recordings is the example set; every test clip not from those recordings is
   scored, positive when of the same category; the score's average precision is averaged over
   draws, then categories. Scorers (`SCORERS`): cosine to the nearest example or to the
   examples' mean, on the raw embedding or centred on the train split's mean (a vector hark
   could ship); a logistic probe of the k examples against `--negatives` random train clips
   of the other categories, or of any category (hark cannot know the user's category, so its
   shipped negatives may hold that sound).
3. Calibration: the same episodes on the val split (categories with at least k + 1 recordings
   there, so a positive remains) choose per k one threshold per scorer: the one maximising the
   mean F1 over episodes, and the lowest whose precision pooled over episodes is >= 0.9. Both
   are then measured on the test episodes.

Writes OUT/SOUNDS-measure.md (tables) and OUT/sounds-measure.json (every number).
"""

import argparse
import json
import os
import time
from pathlib import Path

# Thousands of small fits: a multithreaded BLAS only fights the other jobs (10x slower here).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hark_export import data, sounds  # noqa: E402
from hark_export.ced import FREQ_PATCHES, PATCH, WIDTH, load_ced  # noqa: E402
from hark_export.hearing import average_precision  # noqa: E402
from hark_export.real import load_corpus  # noqa: E402
from hark_export.sounds import (KS, PROBE_L2, TARGET_PRECISION, fit_probe, probe_scores,  # noqa: E402
                                unit)
from hark_export.yamnet import BLOCKS, load_yamnet  # noqa: E402

MIN_RECORDINGS = 6  # test recordings a category needs: 5 examples and at least one other
CED_MID = 7  # the block `ced-mid` taps beside the final one
# The probe's weight decay on unit-norm inputs (hark_export.sounds.PROBE_L2) was chosen here
# on val (1e-1 to 1e-4): 1e-2 is best with negatives of any category (weaker decay fits the
# look-alikes among them), within 0.02 AP of the best with other-category negatives.

# name -> (cache, arrays concatenated): what is compared as one embedding.
REPRESENTATIONS = {
    "ced final mean": ("ced", ("final_mean",)),
    "ced final mean+std": ("ced", ("final_mean", "final_std")),
    "ced head tokens": ("ced", ("head_tokens",)),
    "ced audioset": ("ced", ("audioset",)),
    "ced block 7 mean": ("ced", ("mid_mean",)),
    "yamnet emb mean": ("yamnet", ("emb_mean",)),
    "yamnet emb mean+std": ("yamnet", ("emb_mean", "emb_std")),
    "yamnet layer 12 mean": ("yamnet", ("l12_mean",)),
    "yamnet audioset": ("yamnet", ("audioset",)),
}


# ---- embeddings ----

def mel_of(corpus: Path, row: dict, frontend: dict) -> torch.Tensor:
    mel = data.features(corpus / row["path_16000"], frontend)
    return torch.from_numpy(np.asarray(mel, dtype=np.float32))[None]


def ced_embeddings(corpus: Path, rows: list[dict]) -> dict[str, np.ndarray]:
    enc, _, frontend, _ = load_ced("ced")
    out = {k: [] for k in ("final_mean", "final_std", "head_tokens", "audioset", "mid_mean")}
    for r in rows:
        mel = mel_of(corpus, r, frontend)
        # Only the patches covering real audio: the silence padding is the same for every clip
        # and would pull short clips together.
        own = max(1, min(mel.shape[2], enc.MAX_FRAMES) // PATCH)
        mid, final = enc.ced(enc.padded(mel), (CED_MID, 11))
        f = enc.side_by_side(final)[0, :own]
        out["final_mean"].append(f.mean(0))
        out["final_std"].append(f.std(0, unbiased=False))
        out["head_tokens"].append(final[0].mean(0))  # every token, padding included, as the head
        out["audioset"].append(enc.audioset(enc.side_by_side(final))[0, 0])
        out["mid_mean"].append(enc.side_by_side(mid)[0, :own].mean(0))
    assert out["final_mean"][0].shape[0] == FREQ_PATCHES * WIDTH
    return {k: torch.stack(v).numpy() for k, v in out.items()}


def yamnet_embeddings(corpus: Path, rows: list[dict]) -> dict[str, np.ndarray]:
    enc, _, frontend, _ = load_yamnet("yamnet")
    layer12, layer13 = len(BLOCKS) - 1, len(BLOCKS)
    out = {k: [] for k in ("emb_mean", "emb_std", "l12_mean", "audioset")}
    for r in rows:
        f = enc.yamnet(enc.with_tail(mel_of(corpus, r, frontend)), (layer12, layer13))[0]
        emb = f[:, -1024:]
        out["emb_mean"].append(emb.mean(0))
        out["emb_std"].append(emb.std(0, unbiased=False))
        out["l12_mean"].append(f[:, :1024].mean(0))
        out["audioset"].append(enc.audioset(emb[None])[0].mean(0))
    return {k: torch.stack(v).numpy() for k, v in out.items()}


def cached_embeddings(name: str, corpus: Path, rows: list[dict], out: Path) -> dict:
    """The arrays of OUT/emb-NAME.npz, computed when missing or for other clips."""
    path, ids = out / f"emb-{name}.npz", np.array([r["id"] for r in rows])
    if path.is_file():
        cached = dict(np.load(path))
        if np.array_equal(cached.pop("ids"), ids):
            return cached
    start = time.perf_counter()
    with torch.no_grad():
        arrays = {"ced": ced_embeddings, "yamnet": yamnet_embeddings}[name](corpus, rows)
    print(f"{name}: {len(rows)} clips embedded in {time.perf_counter() - start:.0f} s", flush=True)
    np.savez(path, ids=ids, **arrays)
    return arrays


# ---- episodes ----

def episodes(rows: list[dict], split: str, min_recordings, draws: int, negatives: int) -> list:
    """hark_export.sounds.episodes, each with `negatives` random train clips of the other
    categories (`neg_other`) and of any category (`neg_any`) for the probe."""
    train = np.array([i for i, r in enumerate(rows) if r["split"] == "train"])
    cat = np.array([r["category"] for r in rows])

    def extra(rng, c):
        others = train[cat[train] != c]
        return {"neg_other": rng.choice(others, negatives, replace=False),
                "neg_any": rng.choice(train, negatives, replace=False)}

    return sounds.episodes(rows, split, min_recordings, draws, extra)


# ---- scorers ----

def probe_scorer(negatives: str):
    def score(v, ep):
        theta = fit_probe(v["centred"][ep["examples"]], v["centred"][ep[negatives]])
        return probe_scores(theta, v["centred"][ep["pool"]])
    return score


def nearest(space: str):
    return lambda v, ep: (v[space][ep["pool"]] @ v[space][ep["examples"]].T).max(1)


def centroid(space: str):
    return lambda v, ep: v[space][ep["pool"]] @ unit(v[space][ep["examples"]].mean(0))


SCORERS = {
    "cos nearest": nearest("raw"),
    "cos mean": centroid("raw"),
    "cos nearest (centred)": nearest("centred"),
    "cos mean (centred)": centroid("centred"),
    "probe (other-category negatives)": probe_scorer("neg_other"),
    "probe (any negatives)": probe_scorer("neg_any"),
}


def views(x: np.ndarray, train: np.ndarray) -> dict[str, np.ndarray]:
    """Unit-norm embeddings, raw and centred on the train split's mean."""
    return {"raw": unit(x), "centred": unit(x - x[train].mean(0))}


# ---- measures ----

def curves(scored: list[tuple[np.ndarray, np.ndarray]], thresholds: np.ndarray) -> dict:
    """Per threshold: precision pooled over episodes, mean recall, mean F1, mean false-alarm
    rate (share of negative clips that fire)."""
    tp, fp, recall, f1, fa = 0, 0, [], [], []
    for s, pos in scored:
        t = np.sort(s[pos])
        f = np.sort(s[~pos])
        hits = len(t) - np.searchsorted(t, thresholds, "left")
        false = len(f) - np.searchsorted(f, thresholds, "left")
        tp, fp = tp + hits, fp + false
        recall.append(hits / len(t))
        fa.append(false / max(len(f), 1))
        f1.append(2 * hits / np.maximum(len(t) + hits + false, 1))
    return {"precision": np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0),
            "recall": np.mean(recall, 0), "f1": np.mean(f1, 0), "false_alarm": np.mean(fa, 0)}


def choose_thresholds(scored: list) -> dict[str, float | None]:
    """On val: the threshold of the best mean F1, and the lowest reaching the target pooled
    precision (None when none does)."""
    grid = np.unique(np.quantile(np.concatenate([s for s, _ in scored]),
                                 np.linspace(0, 1, 1001)))
    c = curves(scored, grid)
    ok = np.flatnonzero(c["precision"] >= TARGET_PRECISION)
    return {"f1": float(grid[np.argmax(c["f1"])]),
            f"p{round(100 * TARGET_PRECISION)}": float(grid[ok[0]]) if len(ok) else None}


def at_threshold(scored: list, threshold: float | None) -> dict | None:
    if threshold is None:
        return None
    return {k: float(v[0]) for k, v in curves(scored, np.array([threshold])).items()}


def mean_ap(scored_eps: list) -> tuple[float, dict[str, float]]:
    """AP averaged over draws within a category, then over categories."""
    per_cat = {}
    for ep, (s, pos) in scored_eps:
        per_cat.setdefault(ep["category"], []).append(average_precision(s, pos))
    per_cat = {c: float(np.mean(v)) for c, v in per_cat.items()}
    return float(np.mean(list(per_cat.values()))), per_cat


def evaluate(v: dict, test_eps: list, val_eps: list) -> dict:
    """Per scorer, per k: test and val mean AP, thresholds chosen on val, measured on test."""
    out = {}
    for name, scorer in SCORERS.items():
        out[name] = {}
        for k in KS:
            test = [(ep, (scorer(v, ep), ep["positive"])) for ep in test_eps if ep["k"] == k]
            val = [(ep, (scorer(v, ep), ep["positive"])) for ep in val_eps if ep["k"] == k]
            test_map, per_cat = mean_ap(test)
            thresholds = choose_thresholds([sp for _, sp in val])
            out[name][k] = {"test_map": test_map, "val_map": mean_ap(val)[0],
                            "per_category": per_cat, "thresholds": thresholds,
                            "test_at": {rule: at_threshold([sp for _, sp in test], t)
                                        for rule, t in thresholds.items()}}
    return out


# ---- report ----

DEPLOYABLE = ("cos mean (centred)", "probe (any negatives)")  # need no category of the user's


def best(results: dict, encoder: str) -> tuple[str, str]:
    """(representation, scorer) of an encoder with the best val mean AP averaged over k."""
    options = [(rep, s) for rep in results if REPRESENTATIONS[rep][0] == encoder
               for s in results[rep]]
    return max(options, key=lambda o: np.mean([r["val_map"] for r in results[o[0]][o[1]].values()]))


def calibrated(results: dict) -> list[tuple[str, str]]:
    """What the threshold table shows: each encoder's best, and the deployable scorers on
    CED's best representation."""
    rep = best(results, "ced")[0]
    rows = [best(results, "ced")] + [(rep, s) for s in DEPLOYABLE] + [best(results, "yamnet")]
    return list(dict.fromkeys(rows))


def chance(eps: list) -> list[float]:
    """A random scorer's mean AP: the positive share of the pool, per k."""
    return [np.mean([ep["positive"].mean() for ep in eps if ep["k"] == k]) for k in KS]


def ap_lines(results: dict, test_eps: list, val_eps: list) -> list[str]:
    lines = ["| representation | scorer | " + " | ".join(f"k={k}" for k in KS) + " |",
             "|---|---|" + "---:|" * len(KS),
             "| (chance) | random | " + " | ".join(f"{t:.3f} ({v:.3f})" for t, v in
                                                 zip(chance(test_eps), chance(val_eps))) + " |"]
    for rep, by_scorer in results.items():
        for scorer, by_k in by_scorer.items():
            cells = " | ".join(f"{r['test_map']:.3f} ({r['val_map']:.3f})"
                               for r in by_k.values())
            lines.append(f"| {rep} | {scorer} | {cells} |")
    return lines


def threshold_lines(results: dict) -> list[str]:
    lines = ["| representation | scorer | k | rule | threshold | P | R | F1 | false alarms |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for rep, scorer in calibrated(results):
        for k in KS:
            r = results[rep][scorer][k]
            for rule, t in r["thresholds"].items():
                m = r["test_at"][rule]
                if m is None:
                    lines.append(f"| {rep} | {scorer} | {k} | {rule} | none | | | | |")
                    continue
                lines.append(f"| {rep} | {scorer} | {k} | {rule} | {t:.3f} "
                             f"| {m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} "
                             f"| {100 * m['false_alarm']:.1f} % |")
    return lines


def markdown(results: dict, test_eps: list, val_eps: list, seconds: dict) -> str:
    cats = sorted({ep["category"] for ep in test_eps})
    val_cats = {k: len({ep["category"] for ep in val_eps if ep["k"] == k}) for k in KS}
    rep, scorer = best(results, "ced")
    lines = ["# Teach hark a sound by example: measurements", "",
             f"Test split: {len(cats)} categories with >= {MIN_RECORDINGS} source recordings "
             f"({', '.join(cats)}), {max(ep['draw'] for ep in test_eps) + 1} draws per k. "
             f"Val categories (>= k + 1 recordings) per k: "
             f"{', '.join(f'k={k}: {n}' for k, n in val_cats.items())}. Probe weight decay "
             f"{PROBE_L2:g}. Run time (wall clock, one thread): embeddings {seconds['embed']:.0f} s"
             f"{' (cached)' if seconds['embed'] < 5 else ''}, episodes {seconds['eval']:.0f} s.",
             "", "## Mean detection AP on test (val in brackets)", "",
             *ap_lines(results, test_eps, val_eps),
             "", "## Thresholds chosen on val, measured on test", "",
             "Rules: `f1` maximises the mean F1 over val episodes; "
             f"`p{round(100 * TARGET_PRECISION)}` is the lowest threshold whose precision pooled "
             f"over val episodes is >= {TARGET_PRECISION}. On test: precision pooled over "
             "episodes; recall, F1 and false alarms (share of the pool's other clips that "
             "fire) averaged over episodes. Rows: each encoder's best by val AP, and the "
             "scorers that need no category of the user's sound on CED's best representation.",
             "", *threshold_lines(results),
             "", f"## Test AP per category: {rep}, {scorer}", "",
             "| category | " + " | ".join(f"k={k}" for k in KS) + " |",
             "|---|" + "---:|" * len(KS)]
    for c in cats:
        lines.append(f"| {c} | " + " | ".join(f"{results[rep][scorer][k]['per_category'][c]:.3f}"
                                            for k in KS) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a hark-data real corpus")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--draws", type=int, default=10, help="example draws per category and k")
    parser.add_argument("--negatives", type=int, default=200, help="train clips the probe sees")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = load_corpus(args.corpus)

    start = time.perf_counter()
    embeddings = {name: cached_embeddings(name, args.corpus, rows, args.out)
                  for name in ("ced", "yamnet")}
    seconds = {"embed": time.perf_counter() - start}

    start = time.perf_counter()
    train = np.array([r["split"] == "train" for r in rows])
    test_eps = episodes(rows, "test", lambda k: MIN_RECORDINGS, args.draws, args.negatives)
    val_eps = episodes(rows, "val", lambda k: k + 1, args.draws, args.negatives)
    results = {}
    for rep, (cache, parts) in REPRESENTATIONS.items():
        x = np.concatenate([embeddings[cache][p] for p in parts], axis=1)
        results[rep] = evaluate(views(x, train), test_eps, val_eps)
        print(rep, {s: [round(r["test_map"], 3) for r in by_k.values()]
                    for s, by_k in results[rep].items()}, flush=True)
    seconds["eval"] = time.perf_counter() - start

    text = markdown(results, test_eps, val_eps, seconds)
    (args.out / "SOUNDS-measure.md").write_text(text)
    (args.out / "sounds-measure.json").write_text(json.dumps(
        {"seconds": seconds, "draws": args.draws, "negatives": args.negatives,
         "probe_l2": PROBE_L2, "results": results}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
