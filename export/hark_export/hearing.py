"""`hark-eval-sounds`: does a bundle hear the right sound in recordings it has never heard?

    hark-eval-sounds --bundle B [--bundle B2 ...] --corpus CORPUS --out DIR [--split test]

For every single-sound clip of the corpus split (held-out source recordings of
`hark-data real`), the bundle's best caption, made by the daemon itself (`hark caption
--json`), is checked for a word naming the clip's category (its `synonyms` in sounds.toml):
the keyword hit rate, overall and per category. The tag head's probabilities (through
onnxruntime on the daemon's own features) give each category's average precision and their
mean (mAP) over categories with test clips. The category a caption names first against the
true one makes the confusion plot.

Writes DIR/sounds.json (every clip: caption, hit, named categories, top tags) and
DIR/SOUNDS.md (the tables) and DIR/confusion-<bundle>.png. With `--card`, the results also
go into each bundle's MODEL_CARD.md (section "Held-out single sounds", replaced on a re-run)
and the bundle's manifest is re-hashed.
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np

from hark_export.data import logmel, normalise_caption, read_audio
from hark_export.evaluate import HARK, hark_caption
from hark_export.progress import progress
from hark_export.real import load_corpus, load_table


def named_categories(caption: str, synonyms: dict[str, set[str]]) -> list[str]:
    """Categories a caption names, in the order their first word appears."""
    words = normalise_caption(caption).split()
    found = []
    for w in words:
        for cat, syn in synonyms.items():
            if w in syn and cat not in found:
                found.append(cat)
    return found


# Words that join one event to another: a caption holding one says a window has several.
SEQUENCE_WORDS = {"then", "followed", "while", "after", "before", "meanwhile", "again"}
# Function words that may repeat in a fluent caption.
FUNCTION_WORDS = {"a", "an", "the", "is", "are", "and", "then", "while", "with", "in", "on",
                  "of", "by", "at", "to", "from", "as", "its", "it", "some", "followed",
                  "being", "into", "over", "up", "down", "off", "out"}


def caption_shape(caption: str, truth: str, synonyms: dict[str, set[str]]) -> dict:
    """How a caption of a one-sound clip describes it: the categories it invents (named but
    not `truth`), whether it tells several events (a sequence word or two categories named),
    and the content words it repeats ("a cow moos then a cow moos")."""
    words = normalise_caption(caption).split()
    named = named_categories(caption, synonyms)
    content = [w for w in words if w not in FUNCTION_WORDS]
    return {"invented": [c for c in named if c != truth],
            "several": bool(SEQUENCE_WORDS & set(words)) or len(named) > 1,
            "repeated": sorted({w for w in content if content.count(w) > 1})}


def shape_rates(shapes: list[dict]) -> dict:
    """The share of captions that invent a category, tell several events, repeat a word."""
    n = max(len(shapes), 1)
    return {"invented_rate": sum(bool(s["invented"]) for s in shapes) / n,
            "several_rate": sum(s["several"] for s in shapes) / n,
            "repeated_rate": sum(bool(s["repeated"]) for s in shapes) / n}


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the precision-recall curve as the mean precision at each positive
    (scikit-learn's average_precision_score without interpolation)."""
    order = np.argsort(-scores, kind="stable")
    hits = positive[order].astype(float)
    if hits.sum() == 0:
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def tag_probabilities(bundle: Path, audio: list[Path]) -> tuple[list[str], np.ndarray]:
    """(labels, probabilities [clips, labels]) of the bundle's first tag head, the whole clip
    as one window, features by the dsp crate and the graph by onnxruntime."""
    import tomllib

    from hark_export.bundle import MANIFEST, _session
    manifest = tomllib.loads((bundle / MANIFEST).read_text())
    heads = manifest.get("tags", [])
    if not heads:
        return [], np.zeros((len(audio), 0))
    head = heads[0]
    labels = (bundle / head["labels"]).read_text().splitlines()
    session = _session(bundle / manifest["encoder"]["file"])
    probs = []
    for a in progress(audio, "tag probabilities", unit="clip"):
        mel = logmel(*read_audio(a), manifest["frontend"])
        out = session.run([head["output"]],
                          {manifest["encoder"]["input"]: mel[None].astype(np.float32)})
        probs.append(out[0].reshape(-1))
    return labels, np.array(probs)


def speech_detection(windows: list[dict], truth: list[str], bundle: Path) -> dict | None:
    """The daemon's speech verdict (`privacy.speech`) against the truth: speech detected when
    the first tag head with a `speech` label puts it among a window's tags (at the bundle's
    thresholds), as `TagConfig::speech` decides; None when no head has the label."""
    import tomllib

    from hark_export.bundle import MANIFEST
    manifest = tomllib.loads((bundle / MANIFEST).read_text())
    head = next((h["name"] for h in manifest.get("tags", [])
                 if "speech" in (bundle / h["labels"]).read_text().lower().split("\n")), None)
    if head is None:
        return None
    return speech_scores([any(t["source"] == head and t["label"].lower() == "speech"
                              for t in w["tags"]) for w in windows], truth)


def speech_scores(said: list[bool], truth: list[str]) -> dict:
    """Precision and recall of speech verdicts against the clips' categories, and which
    other categories were taken for speech."""
    is_speech = [t == "speech" for t in truth]
    tp = sum(s and p for s, p in zip(said, is_speech))
    false_pos: dict[str, int] = {}
    for s, t in zip(said, truth):
        if s and t != "speech":
            false_pos[t] = false_pos.get(t, 0) + 1
    return {"speech_clips": sum(is_speech), "other_clips": len(truth) - sum(is_speech),
            "detected": sum(said), "true_positives": tp,
            "precision": tp / sum(said) if sum(said) else float("nan"),
            "recall": tp / sum(is_speech) if sum(is_speech) else float("nan"),
            "false_positives": dict(sorted(false_pos.items(), key=lambda kv: -kv[1]))}


def speech_lines(s: dict) -> list[str]:
    """The speech-detection paragraph of SOUNDS.md and the model card."""
    fp = ", ".join(f"{k} {v}" for k, v in s["false_positives"].items()) or "none"
    return [f"Speech detection (the `privacy.speech` gate: the `speech` tag at the bundle's "
            f"threshold): precision **{100 * s['precision']:.1f} %**, recall "
            f"**{100 * s['recall']:.1f} %** on {s['speech_clips']} speech clips (espeak-ng "
            f"voices and voices recorded in the Debian packages) against {s['other_clips']} other "
            f"sounds; other sounds taken for speech: {fp}."]


def confusion_plot(truth: list[str], named: list[str], categories: list[str], path: Path,
                   title: str) -> None:
    """Row-normalised confusion of the true category against the one the caption names first
    ("none" when it names none)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    # Columns: the split's categories, then any other one a caption names, then none.
    cols = categories + sorted(set(named) - set(categories) - {"none"}) + ["none"]
    m = np.zeros((len(categories), len(cols)))
    for t, n in zip(truth, named):
        m[categories.index(t), cols.index(n)] += 1
    m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(12, 11))
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
    ax.set_yticks(range(len(categories)), categories, fontsize=7)
    ax.set_xlabel("category the caption names first")
    ax.set_ylabel("true category")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(bundle: Path, rows: list[dict], corpus: Path, hark: Path, out: Path) -> dict:
    """Keyword hits, per-category rates, tag APs and the confusion plot of one bundle."""
    table = load_table()
    synonyms = table.synonyms()
    audio = [corpus / r["path_16000"] for r in rows]
    windows = hark_caption(bundle, audio, [], hark)
    captions = [w["text"] for w in windows]
    truth = [r["category"] for r in rows]
    hits = [bool(set(normalise_caption(c).split()) & synonyms[t]) for c, t in zip(captions, truth)]
    named = [(named_categories(c, synonyms) or ["none"])[0] for c in captions]
    shapes = [caption_shape(c, t, synonyms) for c, t in zip(captions, truth)]
    labels, probs = tag_probabilities(bundle, audio)
    categories = sorted(set(truth))
    per_cat = {}
    for cat in categories:
        idx = [i for i, t in enumerate(truth) if t == cat]
        ap = (average_precision(probs[:, labels.index(cat)], np.array([t == cat for t in truth]))
              if cat in labels else float("nan"))
        per_cat[cat] = {"clips": len(idx),
                        "recordings": len({rows[i]["recording"] for i in idx}),
                        "hit_rate": float(np.mean([hits[i] for i in idx])), "tag_ap": ap}
    aps = [v["tag_ap"] for v in per_cat.values() if not np.isnan(v["tag_ap"])]
    confusion_plot(truth, named, categories, out / f"confusion-{bundle.name}.png",
                   f"{bundle.name}: held-out single sounds")
    clips = []
    for i, r in enumerate(rows):
        top = np.argsort(-probs[i])[:3] if len(labels) else []
        clips.append({"id": r["id"], "category": truth[i], "caption": captions[i],
                      "hit": hits[i], "named": named[i], **shapes[i],
                      "tags": [[labels[j], round(float(probs[i, j]), 3)] for j in top]})
    return {"bundle": str(bundle), "clips": len(rows),
            "speech": speech_detection(windows, truth, bundle),
            "hit_rate": float(np.mean(hits)),
            "category_mean_hit_rate": float(np.mean([v["hit_rate"] for v in per_cat.values()])),
            "tag_map": float(np.mean(aps)) if aps else None, **shape_rates(shapes),
            "categories": per_cat, "per_clip": clips}


def label_words(label: str) -> set[str]:
    """The words of an AudioSet class name ("Cattle, bovinae" → {"cattle", "bovinae"})."""
    return set(normalise_caption(label).split())


def tagger(rows: list[dict], corpus: Path, top: int = 3) -> dict:
    """CED-Tiny's own AudioSet head, zero-shot, judged by the captions' rule: a clip counts
    when a word of its `top` highest class names names its category. The row a captioner
    built on CED must beat."""
    import torch

    from hark_export.ced import load_ced
    from hark_export.data import features
    enc, _, frontend, _ = load_ced("ced")
    names = enc.class_names()
    synonyms = load_table().synonyms()
    hits, per_cat, clips = [], {}, []
    with torch.no_grad():
        for r in progress(rows, "CED AudioSet head"):
            mel = torch.from_numpy(np.asarray(features(corpus / r["path_16000"], frontend),
                                              dtype=np.float32))[None]
            probs = enc.audioset(enc(mel))[0, 0].numpy()
            labels = [names[j] for j in np.argsort(-probs)[:top]]
            hit = bool(set().union(*map(label_words, labels)) & synonyms[r["category"]])
            hits.append(hit)
            per_cat.setdefault(r["category"], []).append(hit)
            clips.append({"id": r["id"], "category": r["category"], "labels": labels, "hit": hit})
    return {"bundle": f"CED-Tiny AudioSet head, top {top} labels (zero-shot)",
            "clips": len(rows), "hit_rate": float(np.mean(hits)),
            "category_mean_hit_rate": float(np.mean([np.mean(v) for v in per_cat.values()])),
            "per_category": {c: float(np.mean(v)) for c, v in per_cat.items()}, "per_clip": clips}


def report(results: list[dict], split: str, out: Path, tags: dict | None = None) -> None:
    lines = [f"# Held-out single sounds ({split} split)", "",
             "Keyword hit: the best caption (`hark caption`, the bundle's default decoding) "
             "contains a word naming the clip's category (sounds.toml synonyms). Tag AP: "
             "average precision of the tag head's probability for the category over all clips. "
             "Every clip holds one sound, so a caption that names another category invents it, "
             "one with a sequence word (then, while, after, …) or two categories tells several "
             "events, and one with a content word twice repeats itself.",
             "", "| bundle | clips | keyword hit | mean of per-category hit rates | tag mAP "
             "| invents a category | tells several events | repeats a word |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        tag_map = f"{r['tag_map']:.3f}" if r["tag_map"] is not None else "—"
        lines.append(f"| {Path(r['bundle']).name} | {r['clips']} | {100 * r['hit_rate']:.1f} % | "
                     f"{100 * r['category_mean_hit_rate']:.1f} % | {tag_map} | "
                     f"{100 * r['invented_rate']:.1f} % | {100 * r['several_rate']:.1f} % | "
                     f"{100 * r['repeated_rate']:.1f} % |")
    if tags:
        lines.append(f"| {tags['bundle']} | {tags['clips']} | {100 * tags['hit_rate']:.1f} % | "
                     f"{100 * tags['category_mean_hit_rate']:.1f} % | — | — | — | — |")
    for r in results:
        name = Path(r["bundle"]).name
        lines += ["", f"## {name}", ""]
        if r.get("speech"):
            lines += speech_lines(r["speech"]) + [""]
        lines += [f"![confusion](confusion-{name}.png)", "",
                  "| category | clips | recordings | keyword hit | tag AP |",
                  "|---|---:|---:|---:|---:|"]
        for cat, v in r["categories"].items():
            ap = "—" if np.isnan(v["tag_ap"]) else f"{v['tag_ap']:.3f}"
            lines.append(f"| {cat} | {v['clips']} | {v['recordings']} | "
                         f"{100 * v['hit_rate']:.0f} % | {ap} |")
        misses = [c for c in r["per_clip"] if not c["hit"]][:25]
        lines += ["", "Misses (first 25): true category → caption", ""]
        lines += [f"- {c['category']} → “{c['caption']}” (tags {c['tags']})" for c in misses]
    (out / "SOUNDS.md").write_text("\n".join(lines) + "\n")


CARD_SECTION = "## Held-out single sounds"


def update_card(bundle: Path, r: dict, split: str) -> None:
    """Puts `r`'s summary and per-category table into the bundle's MODEL_CARD.md (replacing
    an earlier one) and re-hashes the manifest."""
    import tomllib

    from hark_export.bundle import MANIFEST, write_manifest
    card = bundle / "MODEL_CARD.md"
    text = card.read_text()
    if CARD_SECTION in text:  # drop the old section, up to the next "## " heading
        head, _, rest = text.partition(CARD_SECTION)
        nxt = rest.find("\n## ")
        text = head + (rest[nxt + 1:] if nxt >= 0 else "")
    tag_map = "—" if r["tag_map"] is None else f"{r['tag_map']:.3f}"
    lines = [CARD_SECTION, "",
             f"`hark-eval-sounds` on the {r['clips']} single-sound clips of the corpus's {split} "
             "split (source recordings never heard in training), each file captioned whole by "
             "`hark caption` with the bundle's default decoding: the caption names the clip's "
             f"category (a synonym from sounds.toml) for **{100 * r['hit_rate']:.1f} %** of "
             f"clips ({100 * r['category_mean_hit_rate']:.1f} % averaged over categories); "
             f"the tag head's mean average precision over categories is {tag_map}."
             + (f" Each clip holds one sound: {100 * r['invented_rate']:.1f} % of captions name "
                f"a category that is not there, {100 * r['several_rate']:.1f} % tell several "
                f"events and {100 * r['repeated_rate']:.1f} % repeat a content word."
                if "invented_rate" in r else ""), ""]
    if r.get("speech"):
        lines += speech_lines(r["speech"]) + [""]
    lines += ["| category | clips | recordings | keyword hit | tag AP |", "|---|---:|---:|---:|---:|"]
    for cat, v in r["categories"].items():
        ap = "—" if np.isnan(v["tag_ap"]) else f"{v['tag_ap']:.2f}"
        lines.append(f"| {cat} | {v['clips']} | {v['recordings']} | "
                     f"{100 * v['hit_rate']:.0f} % | {ap} |")
    card.write_text(text.rstrip() + "\n\n" + "\n".join(lines) + "\n")
    write_manifest(bundle, tomllib.loads((bundle / MANIFEST).read_text()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hark-eval-sounds", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, action="append", required=True)
    parser.add_argument("--corpus", type=Path, required=True, help="a `hark-data real` folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hark", type=Path, default=Path(os.environ.get("HARK", HARK)))
    parser.add_argument("--tagger", action="store_true",
                        help="add CED-Tiny's own AudioSet head (top 3 labels) as a row")
    parser.add_argument("--card", action="store_true",
                        help="write the results into each bundle's MODEL_CARD.md")
    args = parser.parse_args(argv)
    rows = [r for r in load_corpus(args.corpus) if r["split"] == args.split]
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for b in args.bundle:
        r = evaluate(b, rows, args.corpus, args.hark, args.out)
        print(f"{b.name}: keyword hit {100 * r['hit_rate']:.1f} % of {r['clips']} clips, "
              f"per-category mean {100 * r['category_mean_hit_rate']:.1f} %, "
              f"tag mAP {r['tag_map'] if r['tag_map'] is None else round(r['tag_map'], 3)}")
        results.append(r)
        if args.card:
            update_card(b, r, args.split)
    tags = tagger(rows, args.corpus) if args.tagger else None
    if tags:
        print(f"{tags['bundle']}: keyword hit {100 * tags['hit_rate']:.1f} %, "
              f"per-category mean {100 * tags['category_mean_hit_rate']:.1f} %")
    (args.out / "sounds.json").write_text(json.dumps(results + ([tags] if tags else []),
                                                     indent=1) + "\n")
    report(results, args.split, args.out, tags)
    print(f"wrote {args.out / 'sounds.json'} and {args.out / 'SOUNDS.md'}")


if __name__ == "__main__":
    main()
