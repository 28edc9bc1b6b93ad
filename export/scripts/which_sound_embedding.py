"""Which of CED-Tiny's blocks, pooled how, should learned sounds compare? Measured for both
things a learned sound is for, on one split of the real-sound corpus (choose on val, report on
test):

- this very sound: 3 examples from one source recording (clean), positives its other clips
  under another room and microphone (export/scripts/room_corpus.py), negatives every other
  clip of that room corpus; AP over the pool, and within the recording's category only;
- a category by example: the episodes of hark_export.sounds.episodes (k = 1, 3, 5 clips from
  k recordings), AP over the other clips of the split.

Each embedding is scored by the learned sounds' probe (hark_export.sounds.fit_probe against
200 train clips, on embeddings centred on 200 others and scaled to unit length). Embeddings:
per block b, `all{b}` the mean of every token of the window (a clip shorter than 10 s is padded
with silence to it, as CED wants), `own{b}` the mean over the clip's own time patches only,
`max{b}` their maximum; `a+b` puts two side by side. fp32 PyTorch CED (the bundle's int8
weights move the APs by about 0.01).

    python export/scripts/which_sound_embedding.py --corpus data/real --room data/real-room \
        --split val [own11 own8+own11 ...]
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hark_export.ced import CED_FRONTEND, DEPTH, FREQ_PATCHES, MAX_TIME_PATCHES, PATCH, WIDTH, \
    load_ced  # noqa: E402
from hark_export.data import logmel, read_audio  # noqa: E402
from hark_export.hearing import average_precision  # noqa: E402
from hark_export.progress import progress  # noqa: E402
from hark_export.real import load_corpus  # noqa: E402
from hark_export.scenes import room  # noqa: E402
from hark_export.sounds import centred, episodes, fit_probe, probe_scores, rng_for  # noqa: E402

BLOCKS = tuple(range(4, DEPTH))


def pooled(encoder, samples: np.ndarray, rate: int) -> dict[str, np.ndarray]:
    """Every candidate embedding of one clip."""
    mel = torch.from_numpy(logmel(samples, rate, CED_FRONTEND))[None]
    own = max(1, min(mel.shape[2] // PATCH, MAX_TIME_PATCHES))
    with torch.no_grad():
        tokens = encoder.ced(encoder.padded(mel), BLOCKS)
    out = {}
    for b, t in zip(BLOCKS, tokens):
        grid = encoder.side_by_side(t)[0].reshape(-1, FREQ_PATCHES, WIDTH)  # (Tp, 4, D)
        out[f"all{b}"] = grid.reshape(-1, WIDTH).mean(0).numpy()
        out[f"own{b}"] = grid[:own].reshape(-1, WIDTH).mean(0).numpy()
        out[f"max{b}"] = grid[:own].reshape(-1, WIDTH).amax(0).numpy()
    return out


def embeddings(encoder, root, rows, copies: int = 0) -> dict[str, np.ndarray]:
    """Per candidate, [N, 1 + copies, D]: each clip, then `copies` versions of it in a
    synthetic room (the trainer's `scenes.room`, seeded per clip)."""
    out = {}
    for r in progress(rows, f"embeddings {root.name}", unit="clip"):
        x, rate = read_audio(root / r["path_16000"])
        versions = [x] + [room(x, rng_for("room copy", r["id"], j)) for j in range(copies)]
        for v in versions:
            for k, e in pooled(encoder, v, rate).items():
                out.setdefault(k, []).append(e)
    return {k: np.asarray(v, np.float64).reshape(len(rows), 1 + copies, -1)
            for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--room", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--room-copies", type=int, default=0,
                        help="add each example's versions in N synthetic rooms as positives")
    parser.add_argument("names", nargs="*", help="embeddings (default: all, own, max per block)")
    args = parser.parse_args()
    encoder = load_ced("ced")[0].eval()
    corpus = load_corpus(args.corpus)
    room_rows = {r["id"]: r for r in load_corpus(args.room) if r["split"] == args.split}
    clean = [r for r in corpus if r["split"] == args.split and r["id"] in room_rows]
    train = [r for r in corpus if r["split"] == "train"]
    train = [train[i] for i in np.random.default_rng(0).choice(len(train), 400, replace=False)]
    x_clean = embeddings(encoder, args.corpus, clean, args.room_copies)
    x_room = {k: v[:, 0] for k, v in
              embeddings(encoder, args.room, [room_rows[r["id"]] for r in clean]).items()}
    x_train = {k: v[:, 0] for k, v in embeddings(encoder, args.corpus, train).items()}
    rec = np.array([r["recording"] for r in clean])
    cat = np.array([r["category"] for r in clean])

    def variant(name):
        """(clean [N, 1 + copies, D], room [N, D], negatives [200, D]), centred as the
        daemon does (each block on its own)."""
        parts = name.split("+")
        mean = np.hstack([x_train[p][:200].mean(0) for p in parts])
        clean_x, room_x, train_x = (np.concatenate([x[p] for p in parts], axis=-1)
                                    for x in (x_clean, x_room, x_train))
        return (centred(clean_x, mean, len(parts)), centred(room_x, mean, len(parts)),
                centred(train_x, mean, len(parts))[200:])

    def examples_of(xc, chosen):
        return xc[chosen].reshape(-1, xc.shape[-1])  # each example and its room copies

    def very_sound(xc, xr, negatives, k=3):
        aps, within = {}, {}
        for recording in sorted(set(rec)):
            own = np.flatnonzero(rec == recording)
            if len(own) < k + 1:
                continue
            for d in range(args.draws):
                examples = rng_for("recording", recording, d).choice(own, k, replace=False)
                pool = np.setdiff1d(np.arange(len(clean)), examples)
                s = probe_scores(fit_probe(examples_of(xc, examples), negatives), xr[pool])
                pos, kind = rec[pool] == recording, cat[pool] == cat[own[0]]
                aps.setdefault(recording, []).append(average_precision(s, pos))
                if (kind & ~pos).any():
                    within.setdefault(recording, []).append(
                        average_precision(s[kind], pos[kind]))
        return (np.mean([np.mean(v) for v in aps.values()]),
                np.mean([np.mean(v) for v in within.values()]))

    def by_category(xc, negatives):
        aps = {}
        for ep in episodes(clean, args.split, lambda k: 6, args.draws):
            s = probe_scores(fit_probe(examples_of(xc, ep["examples"]), negatives),
                             xc[ep["pool"], 0])
            aps.setdefault(ep["k"], {}).setdefault(ep["category"], []).append(
                average_precision(s, ep["positive"]))
        return [np.mean([np.mean(v) for v in c.values()]) for _, c in sorted(aps.items())]

    copies = f", {args.room_copies} room copies per example" if args.room_copies else ""
    print(f"| embedding ({args.split}{copies}) | this very sound AP | within its category | "
          "category k=1 | k=3 | k=5 |\n|---|---:|---:|---:|---:|---:|")
    for name in args.names or [f"{p}{b}" for b in BLOCKS for p in ("all", "own", "max")]:
        xc, xr, negatives = variant(name)
        ap, within = very_sound(xc, xr, negatives)
        print(f"| {name} | {ap:.3f} | {within:.3f} | "
              + " | ".join(f"{v:.3f}" for v in by_category(xc, negatives)) + " |", flush=True)


if __name__ == "__main__":
    main()
