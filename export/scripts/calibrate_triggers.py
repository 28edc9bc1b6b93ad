"""How well do trigger phrases find their sounds? Each category's name, and a paraphrase of
it, scored by `hark caption --trigger` on the held-out single-sound clips of a `hark-data real`
corpus: average precision per phrase, precision and recall at one threshold for all, and the
threshold that maximises the mean F1 (the default a trigger would start from), and the area
under each phrase's ROC curve; how much adding the tag head's evidence (the daemon's
`TAG_WEIGHT` × the log-odds of the label a phrase names) changes the mean AP; and the weight
added when the window's caption or an alternative says the phrase (`in_caption` of `hark
caption --trigger`: its words or their synonyms, the bundle's `[triggers] synonyms`, which
`--write-bundle` fills from the categories' synonyms in sounds.toml). Choose the weights and
threshold on the validation split, then measure them on the test split:

    python export/scripts/calibrate_triggers.py ... --split val --tag-weights 1,0,0.5,2 --write-bundle
    python export/scripts/calibrate_triggers.py ... --split test --tag-weights 1,0 \
        --caption-weights C --threshold T

    python export/scripts/calibrate_triggers.py --bundle daemon/assets/model \
        --corpus data/real --out reports/triggers [--hark target/debug/hark]

Writes OUT/TRIGGERS.md (the tables), OUT/pr-curves.png and OUT/roc-curves.png (docs/triggers/
holds the last run on the shipped model). A phrase is scored for every clip
(its whole first window), positives are the clips of its category; phrases with words the
model never learnt are listed and left out.
"""

import argparse
import csv
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from hark_export.evaluate import HARK
from hark_export.hearing import average_precision, tag_probabilities
from hark_export.real import load_table, write_wav


def phrases_for(categories: list[str], table) -> dict[str, list[str]]:
    """Per category: its name, and the first caption phrase of the table ("a dog barks")."""
    out = {}
    for c in categories:
        say = table.categories[c]["say"][0].split("|")
        out[str(c)] = [str(c), f"{say[0]} {say[1]}"]
    return out


def tag_label(phrase: str, labels: list[str]) -> str | None:
    """The tag-head label a phrase names: its first word that is one ("a dog barks" → dog)."""
    return next((w for w in phrase.lower().split() if w in labels), None)


def with_tags(scores: dict, probs: np.ndarray, labels: list[str], weight: float) -> dict:
    """Each phrase's score plus `weight` × the log-odds of the tag head's probability for the
    label it names (unchanged when it names none): the caption model's and the tag head's
    evidence added."""
    out = {}
    for ph, s in scores.items():
        label = tag_label(ph, labels)
        if label is None or weight == 0:
            out[ph] = s
            continue
        p = np.clip(probs[:, labels.index(label)], 1e-6, 1 - 1e-6)
        out[ph] = s + weight * np.log(p / (1 - p))
    return out


def known(phrase: str, vocab: set[str]) -> bool:
    return all(w in vocab for w in phrase.lower().split())


def pr_at(scores: np.ndarray, positive: np.ndarray, threshold: float) -> tuple[float, float]:
    fired = scores >= threshold
    tp = (fired & positive).sum()
    precision = tp / fired.sum() if fired.sum() else float("nan")
    return precision, tp / positive.sum()


def roc(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """False and true positive rates over every threshold, and the area under them (ties
    counted half, as the Mann-Whitney statistic does)."""
    order = np.argsort(-scores, kind="stable")
    hits = positive[order]
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(hits.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~hits) / max((~hits).sum(), 1)])
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return fpr, tpr, float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return fpr, tpr, float(greater + 0.5 * ties)


def write_triggers(bundle: Path, **values) -> None:
    """Sets keys of the bundle manifest's [triggers], keeping the others."""
    import tomllib

    from hark_export.bundle import MANIFEST, write_manifest
    manifest = tomllib.loads((bundle / MANIFEST).read_text())
    manifest.setdefault("triggers", {}).update(values)
    write_manifest(bundle, manifest)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--hark", type=Path, default=Path(os.environ.get("HARK", HARK)))
    p.add_argument("--tag-weights", default="0,0.25,0.5,1,2",
                   help="weights of the tag head's log-odds to compare (the first one is used "
                        "for the tables)")
    p.add_argument("--caption-weights", default="0,1,2,3,4,5,6,8",
                   help="weights added when the caption says the phrase; the one whose best "
                        "threshold gives the highest mean F1 of the name phrases is used (0 is "
                        "the score without it)")
    p.add_argument("--write-bundle", action="store_true",
                   help="write the synonyms (before scoring), the threshold, the first tag weight "
                        "and the chosen caption weight into the bundle's manifest ([triggers]), "
                        "where the daemon reads its trigger defaults")
    p.add_argument("--threshold", type=float, default=None,
                   help="the threshold of the tables (default: the one maximising the mean F1 "
                        "of the name phrases on this split; give the one found on another split "
                        "to measure it here)")
    args = p.parse_args()
    weights = [float(w) for w in args.tag_weights.split(",")]
    caption_weights = [float(w) for w in args.caption_weights.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.corpus / "clips.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == args.split]
    truth = np.array([r["category"] for r in rows])
    categories = sorted(set(truth))
    vocab = set((args.bundle / "vocab.txt").read_text().split())
    table = load_table()
    if args.write_bundle:
        # The categories' synonyms, so that the daemon (and the scoring below) knows which
        # caption words say a phrase's sound.
        write_triggers(args.bundle, synonyms=[list(c["synonyms"])
                                              for c in table.categories.values()])
    wanted = phrases_for(categories, table)
    unknown = sorted({ph for v in wanted.values() for ph in v if not known(ph, vocab)})
    phrases = [ph for v in wanted.values() for ph in v if known(ph, vocab)]
    # --privacy caption: speech clips are scored like any other (the daemon would redact them).
    # The bundle's own decoding and alternatives, as the daemon's: the caption and its
    # alternatives are what `in_caption` reads.
    cmd = [str(args.hark), "caption", "--bundle", str(args.bundle), "--json",
           "--privacy", "caption"] + [a for ph in phrases for a in ("--trigger", ph)] + \
        [str(args.corpus / r["path_16000"]) for r in rows]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"hark caption failed: {proc.stderr.strip()[-1000:]}")
    first = {}
    for line in proc.stdout.splitlines():
        w = json.loads(line)
        first.setdefault(w["file"], w)
    windows = [first[str(args.corpus / r["path_16000"])] for r in rows]
    # Silent windows score nothing: the lowest possible score.
    scores = {ph: np.array([next((x["score"] for x in w.get("phrases", []) if x["phrase"] == ph),
                                 -np.inf) for w in windows]) for ph in phrases}
    said = {ph: np.array([any(x["phrase"] == ph and x["in_caption"] for x in w.get("phrases", []))
                          for w in windows]) for ph in phrases}

    # The phrase's score under a window of digital silence: what the model expects of the
    # phrase before it hears anything. Subtracted, it leaves how much the audio raises the
    # phrase (a pointwise mutual information), comparable across phrases of any form.
    tmp = tempfile.TemporaryDirectory()
    silence = Path(tmp.name) / "silence.wav"
    write_wav(silence, np.zeros(16000 * 10, np.float32), 16000)
    base = subprocess.run([str(args.hark), "caption", "--bundle", str(args.bundle), "--json",
                           "--silence-dbfs", "-200", "--alternatives", "0", "--privacy", "caption"]
                          + [a for ph in phrases for a in ("--trigger", ph)] + [str(silence)],
                          capture_output=True, text=True)
    if base.returncode != 0:
        raise SystemExit(f"hark caption failed: {base.stderr.strip()[-1000:]}")
    prior = {x["phrase"]: x["score"] for x in json.loads(base.stdout.splitlines()[0])["phrases"]}
    raw = scores
    scores = {ph: s - prior[ph] for ph, s in raw.items()}
    # The tag head's evidence for the category a phrase names, compared at several weights.
    labels, probs = tag_probabilities(args.bundle, [args.corpus / r["path_16000"] for r in rows])
    combined = {}
    for w in weights:
        sc = with_tags(scores, probs, labels, w)
        combined[w] = {kind: float(np.mean([average_precision(sc[ph], truth == c)
                                            for c in categories for ph in wanted[c][k:k + 1]
                                            if ph in sc]))
                       for k, kind in enumerate(("name", "paraphrase"))}
    tagged = with_tags(scores, probs, labels, weights[0])

    # One default threshold for every trigger: the one that maximises the mean F1 over the
    # categories' name phrases; the caption weight, the one whose best threshold does best.
    names = [c for c in categories if c in tagged]
    grid = np.arange(-3.0, 12.01, 0.05)

    def mean_f1(sc, t):
        f1 = []
        for c in names:
            prec, rec = pr_at(sc[c], truth == c, t)
            f1.append(0.0 if not prec or np.isnan(prec) or not rec else 2 * prec * rec / (prec + rec))
        return float(np.mean(f1))

    def with_caption(w):
        return {ph: s + w * said[ph] for ph, s in tagged.items()}
    by_caption = {}
    for cw in caption_weights:
        sc = with_caption(cw)
        t = max(grid, key=lambda t: mean_f1(sc, t)) if args.threshold is None else args.threshold
        ap = float(np.mean([average_precision(sc[c], truth == c) for c in names]))
        by_caption[cw] = (t, mean_f1(sc, t), ap)
    caption_weight = max(by_caption, key=lambda w: by_caption[w][1])
    scores = with_caption(caption_weight)
    best = by_caption[caption_weight][0]
    said_rate = {c: (said[c][truth == c].mean(), said[c][truth != c].mean()) for c in names}

    lines = [f"# Trigger phrases on held-out single sounds ({args.split} split)", "",
             f"{len(rows)} clips, {len(names)} categories whose name the model knows. Score: the "
             "phrase's length-normalised log-probability as the start of the clip's caption "
             "(`hark caption --trigger`) minus the same under ten seconds of digital silence "
             "(how much the audio raises the phrase). AP: average precision of the score over "
             "all clips, the "
             "category's clips positive. At the threshold "
             f"**{best:.2f}** ("
             + ("the one maximising the mean F1 of the name phrases on this split"
                if args.threshold is None else "given: chosen on another split")
             + f"; mean F1 of the names {mean_f1(scores, best):.3f}) and caption weight "
             f"**{caption_weight:g}**: precision and recall.", "",
             "| category | phrase | AP | ROC AUC | precision | recall | paraphrase | AP | ROC AUC | precision | recall |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    aps = {"name": [], "paraphrase": [], "raw": []}
    aucs = {"name": [], "paraphrase": []}
    for c in categories:
        cells = [c]
        for kind, ph in zip(("name", "paraphrase"), wanted[c]):
            if ph not in scores:
                cells += [f"“{ph}” (unknown word)", "—", "—", "—", "—"]
                continue
            ap = average_precision(scores[ph], truth == c)
            auc = roc(scores[ph], truth == c)[2]
            aucs[kind].append(auc)
            aps["raw"].append(average_precision(raw[ph], truth == c))
            prec, rec = pr_at(scores[ph], truth == c, best)
            aps[kind].append(ap)
            cells += [f"“{ph}”", f"{ap:.2f}", f"{auc:.2f}",
                      "—" if np.isnan(prec) else f"{100 * prec:.0f} %", f"{100 * rec:.0f} %"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Mean AP: names {np.mean(aps['name']):.3f} over {len(aps['name'])} phrases, "
              f"paraphrases {np.mean(aps['paraphrase']):.3f} over {len(aps['paraphrase'])} "
              f"(all phrases without the silence baseline: {np.mean(aps['raw']):.3f}). "
              f"Mean ROC AUC: names {np.nanmean(aucs['name']):.3f}, paraphrases "
              f"{np.nanmean(aucs['paraphrase']):.3f}.",
              "", "Adding the tag head's evidence: the score plus w × the log-odds of the tag "
              "head's probability for the label the phrase names (phrases naming no label keep "
              "their score); mean AP by w:", "", "| w | names | paraphrases |", "|---:|---:|---:|"]
    lines += [f"| {w:g} | {v['name']:.3f} | {v['paraphrase']:.3f} |" for w, v in combined.items()]
    lines += ["", f"The tables above use w = {weights[0]:g}.", "",
              "Adding the caption: the score plus c when the window's caption or one of its "
              "alternatives says the phrase (its words or their synonyms). A category's name is "
              "said by the captions of "
              f"{100 * np.mean([v[0] for v in said_rate.values()]):.1f} % of its clips on average "
              f"and of {100 * np.mean([v[1] for v in said_rate.values()]):.1f} % of other clips. "
              "Names' mean F1 at each c's best threshold, and mean AP:", "",
              "| c | threshold | mean F1 | mean AP |", "|---:|---:|---:|---:|"]
    lines += [f"| {w:g} | {t:.2f} | {f1:.3f} | {ap:.3f} |" for w, (t, f1, ap) in by_caption.items()]
    lines += ["", f"The tables above use c = {caption_weight:g}.",
              "", f"Left out (a word the model never learnt): {', '.join(unknown) or 'none'}.",
              "", "![precision-recall](pr-curves.png) ![ROC](roc-curves.png)"]
    (args.out / "TRIGGERS.md").write_text("\n".join(lines) + "\n")
    if args.write_bundle:
        write_triggers(args.bundle, threshold=round(float(best), 2), tag_weight=weights[0],
                       caption_weight=caption_weight)
        print(f"{args.bundle}: [triggers] threshold = {best:.2f}, tag_weight = {weights[0]:g}, "
              f"caption_weight = {caption_weight:g}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 7))
    for c in names:
        s, pos = scores[c], truth == c
        order = np.argsort(-s, kind="stable")
        hits = pos[order]
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        recall = np.cumsum(hits) / max(hits.sum(), 1)
        ax.plot(recall, precision, lw=0.8, alpha=0.7)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"{args.bundle.name}: each category's name as a trigger phrase")
    fig.tight_layout()
    fig.savefig(args.out / "pr-curves.png", dpi=110)
    fig, ax = plt.subplots(figsize=(8, 7))
    for c in names:
        fpr, tpr, _ = roc(scores[c], truth == c)
        ax.plot(fpr, tpr, lw=0.8, alpha=0.7)
    ax.plot([0, 1], [0, 1], "k--", lw=0.6)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{args.bundle.name}: ROC of each category's name as a trigger phrase")
    fig.tight_layout()
    fig.savefig(args.out / "roc-curves.png", dpi=110)
    print((args.out / "TRIGGERS.md").read_text())


if __name__ == "__main__":
    main()
