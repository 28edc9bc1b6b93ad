"""Rust decoding vs the PyTorch reference on a whole test split, and alternatives per clip.

    python -m hark_export.agreement --data data/synth --runs runs --bundles bundles \\
        --hark target/debug/hark --out report.json

For each architecture (run `RUNS/<arch>`, fp32 bundle `BUNDLES/synth-<arch>`) on every clip of
the split:

1. Agreement. The greedy and beam-3 decodes of `fixtures.DECODINGS` made by `hark caption
   --json` (tract) against the PyTorch reference of `fixtures.references` (the run's checkpoint
   stepped by `decode.py`, the daemon's algorithms, over the Rust dsp's log-mel): clips whose
   best token sequences are identical, whose alternatives are identical too, and the largest
   score difference where they agree. Each disagreement is rescored in PyTorch: both token
   sequences are teacher-forced through the reference with the same logit processing, giving
   the log-probability margin between the two tokens where they first part and the gap between
   their final scores. A margin or gap below NEAR_TIE is a near-tie that float rounding
   (tract vs PyTorch, ~1e-6 on logits) can flip; a larger one would be a bug.
2. Alternatives. `hark caption --json` with the ALTERNATIVES strategies (plain beam 6 as the
   baseline, diverse beam, sample-and-rerank; five alternatives each): distinct captions per
   clip among best + alternatives, the share of clips with at least two, and degenerate output
   (empty captions, a directly repeated word or a repeated bigram, mean length in words).

Writes OUT (JSON: every number and every disagreement) and prints both tables in Markdown.
"""

import argparse
import datetime
import json
import os
import shlex
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

from hark_export.bundle import MANIFEST
from hark_export.data import features, load_split
from hark_export.decode import (F32, SPECIAL, DecodeParams, SpecialTokens, Stepper, normalised,
                                process_row)
from hark_export.evaluate import HARK, diversity, hark_caption, hark_flags
from hark_export.references import DECODINGS, reference_params, references, torch_stepper
from hark_export.train import load_checkpoint

ARCHS = ("baseline", "improved", "attention", "transformer")
# `hark caption` options of the alternatives comparison; the rest are each bundle's [decoding].
ALTERNATIVES = {
    "beam-6": {"strategy": "beam", "beam_size": 6, "alternatives": 5},
    "diverse_beam": {"strategy": "diverse_beam", "beam_size": 6, "groups": 3,
                     "diversity_penalty": 1.0, "alternatives": 5},
    "sample_rerank": {"strategy": "sample_rerank", "samples": 16, "top_p": 0.9, "seed": 0,
                      "alternatives": 5},
}
NEAR_TIE = 1e-3  # log-probability; float rounding moves logits by ~1e-6, this leaves margin
EXAMPLES = 5  # disagreements shown per architecture and strategy


# ---- agreement ----

def compare(refs: list[dict], rust: list[dict]) -> dict:
    """Counts of one decoding: `refs` are reference entries ({tokens, text, score,
    alternatives: [{text, score}]}), `rust` the `hark caption --json` objects of the same clips.
    """
    assert len(refs) == len(rust), (len(refs), len(rust))
    agree = [r["tokens"] == h["tokens"] for r, h in zip(refs, rust)]
    alts = [a and [x["text"] for x in r["alternatives"]] == [x["text"] for x in h["alternatives"]]
            for a, r, h in zip(agree, refs, rust)]
    score_diff = [abs(r["score"] - h["score"]) for a, r, h in zip(agree, refs, rust) if a]
    n = len(refs)
    return {"clips": n, "agree": sum(agree), "agree_pct": 100 * sum(agree) / max(n, 1),
            "alternatives_agree": sum(alts),
            "max_score_diff": max(score_diff, default=0.0),
            "disagree": [i for i, a in enumerate(agree) if not a]}


def token_logprobs(stepper: Stepper, special: SpecialTokens, p: DecodeParams,
                   tokens: list[int]) -> list[np.float32]:
    """Log-probability of each token of `tokens` and then of the end token, teacher-forced
    with the search's logit processing (what the search adds up for this hypothesis)."""
    state, last, out = stepper.init(1), special.bos, []
    for i, t in enumerate(tokens + [special.eos]):
        logits, state = stepper.step([last], state)
        row = np.asarray(logits, dtype=F32).reshape(-1)
        out.append(process_row(row.copy(), tokens[:i], p, special)[t])
        last = t
    return out


def parting(a: list[int], b: list[int]) -> int:
    """First position where two token sequences (each followed by the end token) differ."""
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


def rescore(stepper_for, mel: np.ndarray, p: DecodeParams, ref: list[int],
            rust: list[int]) -> dict:
    """Both decodes of one clip scored by the reference: where they part, the margin there
    (reference token minus hark's token, same prefix) and the final score gap."""
    lp = {k: token_logprobs(stepper_for(mel), SPECIAL, p, t)
          for k, t in (("ref", ref), ("rust", rust))}
    k = parting(ref, rust)
    score = {key: float(normalised(np.cumsum(v, dtype=F32)[-1], len(v), p.length_penalty))
             for key, v in lp.items()}
    return {"step": k, "step_margin": float(lp["ref"][k] - lp["rust"][k]),
            "reference_score": score["ref"], "rust_score_in_reference": score["rust"],
            "score_gap": score["ref"] - score["rust"]}


def near_tie(x: dict, strategy: str) -> bool:
    """Greedy takes the arg-max at every step, so the margin where the decodes part decides
    it; beam search ranks by final score (and prunes on partial sums), so either counts."""
    gaps = [x["step_margin"]] + ([x["score_gap"]] if strategy != "greedy" else [])
    return min(abs(g) for g in gaps) < NEAR_TIE


def measure_agreement(run: Path, bundle: Path, clips: list[Path], hark: Path) -> dict:
    """Every decoding of DECODINGS: reference vs hark on `clips`, disagreements rescored."""
    model, *_ = load_checkpoint(run / "best.pt")
    stepper_for = torch_stepper(model)
    ref = references(bundle, clips, stepper_for)["clips"]
    manifest = tomllib.loads((bundle / MANIFEST).read_text())
    out = {}
    for key, (_, flags) in DECODINGS.items():
        rust = hark_caption(bundle, clips, flags, hark)
        c = compare([r[key] for r in ref], rust)
        p = reference_params(manifest["decoding"], key)
        examples = []
        for i in c.pop("disagree"):
            x = rescore(stepper_for, features(clips[i], manifest["frontend"]), p,
                        ref[i][key]["tokens"], rust[i]["tokens"])
            examples.append({"clip": clips[i].name, "reference": ref[i][key]["text"],
                             "hark": rust[i]["text"], "hark_score": rust[i]["score"],
                             **x, "near_tie": near_tie(x, p.strategy)})
        out[key] = {**c, "hark_args": flags, "near_ties": sum(e["near_tie"] for e in examples),
                    "disagreements": examples}
    return out


# ---- alternatives ----

def alternative_stats(captions: list[list[str]]) -> dict:
    """Per clip its best caption then its alternatives -> distinct-caption and degeneracy
    statistics (repetition and length via `evaluate.diversity`, over every caption).

    The decoder drops duplicate token sequences, so the distinct count is mostly how many
    hypotheses came back; `within_distinct_2` (distinct bigrams / bigrams among one clip's
    captions, averaged) says how much they differ, and `unique_best_pct` (distinct best
    captions over the split) exposes a mode-collapsed model.
    """
    every = [c for cs in captions for c in cs]
    distinct = [len(set(cs)) for cs in captions]
    d = diversity(every)
    n = len(captions)
    return {"clips": n, "captions": len(every),
            "mean_distinct": float(np.mean(distinct)) if n else 0.0,
            "two_or_more_pct": 100 * sum(k >= 2 for k in distinct) / max(n, 1),
            "within_distinct_2": float(np.mean([diversity(cs)["distinct_2"] for cs in captions]))
            if n else 0.0,
            "unique_best_pct": 100 * diversity([cs[0] for cs in captions])["unique_captions"],
            "empty": sum(c.strip() == "" for c in every),
            "repeated_pct": 100 * d["repetition_rate"], "mean_length": d["mean_length"]}


def measure_alternatives(bundle: Path, clips: list[Path], hark: Path) -> dict:
    """ALTERNATIVES through `hark caption --json` on `clips`."""
    out = {}
    for name, given in ALTERNATIVES.items():
        DecodeParams(**given).validate()
        rust = hark_caption(bundle, clips, hark_flags(given), hark)
        caps = [[w["text"]] + [a["text"] for a in w["alternatives"]] for w in rust]
        out[name] = {**alternative_stats(caps), "hark_args": hark_flags(given),
                     "example": {"clip": clips[0].name, "captions": caps[0]}}
    return out


# ---- the report ----

def markdown(report: dict) -> str:
    """Both tables, then the first disagreements of each architecture and strategy."""
    lines = ["| arch | decoding | clips | identical tokens | % | alternatives identical "
             "| max \\|Δscore\\| (identical) | disagreements: near-ties / other |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    shown = []
    for arch, by_key in report["agreement"].items():
        for key, r in by_key.items():
            other = len(r["disagreements"]) - r["near_ties"]
            lines.append(f"| {arch} | {key} | {r['clips']} | {r['agree']} | "
                         f"{r['agree_pct']:.1f} % | {r['alternatives_agree']} | "
                         f"{r['max_score_diff']:.1e} | {r['near_ties']} / {other} |")
            shown += [(arch, key, e) for e in r["disagreements"][:EXAMPLES]]
    if shown:
        lines += ["", "Disagreements (score gap and margin where they part: PyTorch, "
                      "reference minus hark's sequence):", ""]
        for arch, key, e in shown:
            kind = "near-tie" if e["near_tie"] else "NOT a near-tie"
            lines.append(f"- {arch} {key} `{e['clip']}` ({kind}: margin at token {e['step']} "
                         f"{e['step_margin']:.1e}, score gap {e['score_gap']:.1e}): "
                         f"reference \"{e['reference']}\" / hark \"{e['hark']}\"")
    lines += ["", "| arch | decoding | clips | mean distinct captions | clips with ≥ 2 "
                  "| distinct-2 within a clip | unique best captions "
                  "| empty | repeated word/bigram | mean length (words) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for arch, by_name in report["alternatives"].items():
        for name, s in by_name.items():
            lines.append(f"| {arch} | {name} | {s['clips']} | {s['mean_distinct']:.2f} | "
                         f"{s['two_or_more_pct']:.1f} % | {s['within_distinct_2']:.2f} | "
                         f"{s['unique_best_pct']:.1f} % | {s['empty']} | "
                         f"{s['repeated_pct']:.1f} % | {s['mean_length']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """`python -m hark_export.agreement`: measure, write OUT, print the Markdown tables."""
    parser = argparse.ArgumentParser(prog="hark_export.agreement",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset (its test split)")
    parser.add_argument("--runs", type=Path, required=True, help="folder of RUNS/<arch>")
    parser.add_argument("--bundles", type=Path, required=True,
                        help="folder of fp32 bundles BUNDLES/synth-<arch>")
    parser.add_argument("--hark", type=Path, default=Path(os.environ.get("HARK", HARK)))
    parser.add_argument("--out", type=Path, required=True, help="JSON report")
    parser.add_argument("--arch", action="append", choices=ARCHS, help="default: all four")
    parser.add_argument("--split", default="test")
    parser.add_argument("--clips", type=int, default=0, help="first N clips only (0 = all)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    clips = [c.audio for c in load_split(args.data, args.split)][: args.clips or None]
    report = {"date": datetime.date.today().isoformat(),
              "command": shlex.join(["python", "-m", "hark_export.agreement",
                                     *(argv if argv is not None else sys.argv[1:])]),
              "split": args.split, "clips": len(clips), "near_tie": NEAR_TIE,
              "agreement": {}, "alternatives": {}, "seconds": {}}
    for arch in args.arch or ARCHS:
        t = time.time()
        bundle = args.bundles / f"synth-{arch}"
        report["agreement"][arch] = measure_agreement(args.runs / arch, bundle, clips, args.hark)
        report["alternatives"][arch] = measure_alternatives(bundle, clips, args.hark)
        report["seconds"][arch] = round(time.time() - t, 1)
        print(f"{arch}: " + ", ".join(f"{k} {r['agree']}/{r['clips']}"
                                      for k, r in report["agreement"][arch].items())
              + f"; {report['seconds'][arch]:.0f} s", file=sys.stderr, flush=True)
    report["seconds"]["total"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
