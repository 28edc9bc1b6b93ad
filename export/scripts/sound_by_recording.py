"""Learned sounds through the shipped bundle: a category by example, and this very sound, not
its kind — how well does a sound learned from a few clips of one source recording (the user's
doorbell) find that recording again under another room and microphone, against other
recordings of its category and everything else, and how often does it fire on mixed scenes
that do not hold its category?

    python export/scripts/sound_by_recording.py --bundle daemon/assets/model \
        --corpus data/real --room data/real-room --scenes data/scenes --out reports/sounds

Everything goes through the bundle's own encoder graph and [sounds] reference, as the daemon
scores windows (hark_export.sounds): embeddings are its `embedding` output, detectors the
probe against its negatives, the threshold its default for the number of examples.

0. A category by example: the episodes of export/scripts/sounds_by_example.py on the clean
   test split (categories with at least 6 recordings there; k = 1, 3, 5 clips from k distinct
   recordings; every clip outside those recordings scored, positive when of the category),
   scored by the bundle's probe, and beside it by the bundle's own tag head (the category's
   probability): mean AP, and at the bundle's threshold for k the pooled precision, the mean
   recall and the share of other clips that fire.
1. For each test recording with at least K + 1 clips, `--draws` seeded sets of K of its clips
   from the clean corpus are the examples; every test clip of the room corpus (export/scripts/
   room_corpus.py: the same clips replayed through rooms and microphones) outside the
   examples is scored: positive when of the same recording. AP over that pool, and over its
   same-category part only (the neighbour's doorbell).
2. At the bundle's threshold: the recall on the recording's other clips, the share of the
   pool's negatives that fire, and firings per hour on the scenes of `--scenes`'s test split
   (10 s each) whose tags do not hold the recording's category (false alarms), beside those
   whose tags do (the same kind of sound, possibly this very recording).

Writes OUT/SOUND-BY-RECORDING.md and OUT/sound-by-recording.json.
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from hark_export.bundle import OnnxModel  # noqa: E402
from hark_export.data import features  # noqa: E402
from hark_export.hearing import average_precision  # noqa: E402
from hark_export.progress import progress  # noqa: E402
from hark_export.real import load_corpus  # noqa: E402
from hark_export.sounds import (KS, centred, embed, encoder_outputs, episodes,  # noqa: E402
                                fit_probe, probe_scores, rng_for)


def by_category(model: OnnxModel, clean: list[dict], x: np.ndarray, tags: np.ndarray,
                negatives: np.ndarray, draws: int) -> dict:
    """Per k: the probe's and the tag head's mean AP over categories, and the probe's pooled
    precision, mean recall and false-alarm share at the bundle's threshold for k."""
    labels = (model.dir / model.manifest["tags"][0]["labels"]).read_text().split("\n")
    s = model.manifest["sounds"]
    out = {}
    for k in KS:
        threshold = [t for n, t in zip(s["examples"], s["thresholds"]) if n <= k][-1]
        probe_ap, tag_ap, tp, fp, recall, fa = {}, {}, 0, 0, [], []
        for ep in episodes(clean, "test", lambda k: 6, draws):
            if ep["k"] != k:
                continue
            scores = probe_scores(fit_probe(x[ep["examples"]], negatives), x[ep["pool"]])
            pos, c = ep["positive"], ep["category"]
            probe_ap.setdefault(c, []).append(average_precision(scores, pos))
            tag_ap.setdefault(c, []).append(
                average_precision(tags[ep["pool"], labels.index(c)], pos))
            fired = scores >= threshold
            tp, fp = tp + (fired & pos).sum(), fp + (fired & ~pos).sum()
            recall.append(fired[pos].mean())
            fa.append(fired[~pos].mean())
        out[k] = {"probe_map": float(np.mean([np.mean(v) for v in probe_ap.values()])),
                  "tag_head_map": float(np.mean([np.mean(v) for v in tag_ap.values()])),
                  "categories": len(probe_ap), "threshold": threshold,
                  "precision": float(tp / max(tp + fp, 1)), "recall": float(np.mean(recall)),
                  "false_alarms": float(np.mean(fa))}
    return out


def scene_embeddings(model: OnnxModel, scenes: Path) -> tuple[np.ndarray, list[set[str]]]:
    rows = [json.loads(line) for line in (scenes / "test.jsonl").read_text().splitlines()]
    enc = model.manifest["encoder"]
    out = []
    for r in progress(rows, "scene embeddings", unit="scene"):
        mel = features(scenes / r["audio"], model.manifest["frontend"])
        out.append(model.encoder.run(["embedding"], {enc["input"]: mel[None]})[0][0])
    return np.asarray(out, np.float64), [set(r["tags"]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True, help="a hark-data real corpus")
    parser.add_argument("--room", type=Path, required=True, help="its room_corpus.py version")
    parser.add_argument("--scenes", type=Path, required=True, help="a hark-data scenes set")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--draws", type=int, default=10)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = OnnxModel(args.bundle)
    ref = np.fromfile(args.bundle / model.manifest["sounds"]["file"], "<f4").astype(np.float64)
    ref = ref.reshape(-1, model.manifest["sounds"]["dim"])
    mean, negatives = ref[0], ref[1:]
    s = model.manifest["sounds"]
    threshold = [t for k, t in zip(s["examples"], s["thresholds"]) if k <= args.examples][-1]

    clean = [r for r in load_corpus(args.corpus) if r["split"] == "test"]
    room = {r["id"]: r for r in load_corpus(args.room) if r["split"] == "test"}
    clean = [r for r in clean if r["id"] in room]
    pool_rows = [room[r["id"]] for r in clean]
    raw, tags = encoder_outputs(model, args.corpus, clean, ["embedding", "tags"])
    parts = model.manifest["sounds"].get("parts", 1)
    x_clean = centred(raw, mean, parts)
    category = by_category(model, clean, x_clean, tags, negatives, args.draws)
    x_room = centred(embed(model, args.room, pool_rows, "embedding"), mean, parts)
    x_scenes, scene_tags = scene_embeddings(model, args.scenes)
    x_scenes = centred(x_scenes, mean, parts)
    hours = len(x_scenes) * 10 / 3600

    rec = np.array([r["recording"] for r in clean])
    cat = np.array([r["category"] for r in clean])
    results = []
    for recording in sorted(set(rec)):
        own = np.flatnonzero(rec == recording)
        if len(own) < args.examples + 1:
            continue
        c = cat[own[0]]
        without = np.array([c not in t for t in scene_tags])
        for d in range(args.draws):
            examples = rng_for("recording", recording, d).choice(own, args.examples, replace=False)
            pool = np.setdiff1d(np.arange(len(clean)), examples)
            theta = fit_probe(x_clean[examples], negatives)
            scores, positive = probe_scores(theta, x_room[pool]), rec[pool] == recording
            kind = cat[pool] == c
            fired = scores >= threshold
            on_scenes = probe_scores(theta, x_scenes) >= threshold
            results.append({
                "recording": recording, "category": c, "draw": d,
                "ap": average_precision(scores, positive),
                "ap_same_category": average_precision(scores[kind], positive[kind])
                if (kind & ~positive).any() else None,
                "recall": float(fired[positive].mean()),
                "fires_on_other_clips": float(fired[~positive].mean()),
                "fires_on_same_category": float(fired[~positive & kind].mean())
                if (~positive & kind).any() else None,
                "false_alarms_per_hour": float(on_scenes[without].sum() / (without.sum() * 10 / 3600)),
                "firings_per_hour_with_category": float(on_scenes[~without].sum()
                                                        / max((~without).sum() * 10 / 3600, 1e-9)),
            })
    by_rec = {}
    for r in results:
        by_rec.setdefault(r["recording"], []).append(r)

    def mean_of(key):
        vals = [np.mean([r[key] for r in rs if r[key] is not None])
                for rs in by_rec.values() if any(r[key] is not None for r in rs)]
        return float(np.mean(vals))

    summary = {k: mean_of(k) for k in ("ap", "ap_same_category", "recall", "fires_on_other_clips",
                                        "fires_on_same_category", "false_alarms_per_hour",
                                        "firings_per_hour_with_category")}
    seconds = time.perf_counter() - started
    lines = [
        "# Learned sounds through the shipped bundle", "",
        "## This very sound: a learned recording under another room and microphone", "",
        f"Bundle {model.manifest['name']}, {args.examples} examples from the clean corpus, "
        f"{args.draws} draws per recording; {len(by_rec)} test recordings with at least "
        f"{args.examples + 1} clips; pool: the {len(clean)} room-corpus test clips outside the "
        f"examples; threshold {threshold} (the bundle's for {args.examples} examples); scenes: "
        f"{len(x_scenes)} test scenes ({hours:.1f} h). Run time {seconds:.0f} s.", "",
        "| measure (mean over recordings) | value |", "|---|---:|",
        f"| AP, this recording against every other clip | {summary['ap']:.3f} |",
        f"| AP, against other recordings of its category only | {summary['ap_same_category']:.3f} |",
        f"| recall at the threshold | {summary['recall']:.3f} |",
        f"| share of other clips that fire | {100 * summary['fires_on_other_clips']:.2f} % |",
        f"| share of same-category clips of other recordings that fire | "
        f"{100 * summary['fires_on_same_category']:.2f} % |",
        f"| false alarms per hour of scenes without its category | "
        f"{summary['false_alarms_per_hour']:.2f} |",
        f"| firings per hour of scenes with its category | "
        f"{summary['firings_per_hour_with_category']:.1f} |", "",
        "## A category by example (clean test split)", "",
        f"{category[1]['categories']} categories, {args.draws} draws per k; the probe against "
        "the bundle's negatives at the bundle's threshold for k; beside it, the bundle's tag "
        "head (the category's probability) on the same pools.", "",
        "| k | probe mean AP | tag head mean AP | threshold | precision | recall | other clips "
        "that fire |", "|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {k} | {r['probe_map']:.3f} | {r['tag_head_map']:.3f} | {r['threshold']} | "
          f"{r['precision']:.2f} | {r['recall']:.2f} | {100 * r['false_alarms']:.2f} % |"
          for k, r in category.items()], "",
        "## This very sound, per recording", "",
        "| recording | category | AP | AP within category | recall | false alarms / h |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for recording, rs in by_rec.items():
        within = [r["ap_same_category"] for r in rs if r["ap_same_category"] is not None]
        lines.append(f"| {recording} | {rs[0]['category']} | {np.mean([r['ap'] for r in rs]):.3f} "
                     f"| {f'{np.mean(within):.3f}' if within else '—'} "
                     f"| {np.mean([r['recall'] for r in rs]):.2f} "
                     f"| {np.mean([r['false_alarms_per_hour'] for r in rs]):.2f} |")
    text = "\n".join(lines) + "\n"
    (args.out / "SOUND-BY-RECORDING.md").write_text(text)
    (args.out / "sound-by-recording.json").write_text(json.dumps(
        {"summary": summary, "threshold": threshold, "category": category, "results": results},
        indent=1))
    print(text)


if __name__ == "__main__":
    main()
