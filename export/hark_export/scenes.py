"""Captioned scenes from the real-sound corpus (`hark-data scenes CORPUS --out DIR`).

A scene is 1-3 real clips of one split mixed at 16 kHz: a single sound (alone, or with silence
around it), a sequence, two sounds at once, an event over a background ambience, one short sound repeated, or near silence —
quiet and loud, over a faint noise floor, as a microphone hears them. Each gets five captions
from varied templates built from the clips' phrases ("a dog barks while rain falls", "a door
closes, then someone walks"), the categories it holds (the tag head's targets) and a `scene`
key naming its content. Categories are drawn with weights growing with the square root of
their number of source recordings, so thin categories (cat, frog, train, glass, cough) are
not drowned by big ones; scenes of a split use only that split's recordings.

`--augment` varies every use of a clip as another microphone and room would: its speed
(pitch and tempo together, ±15 %), a band limit (a muffled or a tinny microphone) and, for
the whole scene, a synthetic room's reverberation. A frozen encoder's outputs are cached once
per scene, so the decoder sees no other variation; augmented scenes, appended to a set
(`--append`), are how its clips are heard more than one way.

Output: the generic manifest layout the trainer reads (`{split}.jsonl` with `audio`,
`captions`, `scene`, `tags`), `labels.txt` (the categories, in the tag head's order),
`scenes.json` (counts per split, type and category) and the corpus's `summary.json` (as
`corpus.json`), `ATTRIBUTION.md` and `licences/`, which `hark-export` puts into the model card.
"""

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, fftconvolve, sosfilt

from hark_export.progress import progress
from hark_export.real import load_corpus, load_table

RATE = 16000
# Six scenes in ten hold one sound (single, raw, repeat), as most windows of a home do: with
# half (0.48 before), models captioned 64 % of lone real sounds as a sequence of events.
TYPES = {"single": 0.30, "raw": 0.20, "sequence": 0.14, "background": 0.18, "overlap": 0.04,
         "repeat": 0.10, "quiet": 0.04}
DISTANT = ["in the distance", "far away", "faintly"]
NEAR = ["nearby", "close by", "loudly"]
QUIET = ["silence", "it is quiet", "nothing can be heard",
         "near silence with faint background noise", "a quiet room with no distinct sounds"]

SINGLE = ["{s} {v}", "{s} {g}", "the sound of {s} {g}", "you can hear {s} {g}", "{s} {v} {m}"]
SEQUENCE2 = ["{s1} {v1}, then {s2} {v2}", "{s1} {v1} and then {s2} {v2}",
             "{s1} {v1} followed by {s2} {g2}", "{s1} {v1} before {s2} {v2}",
             "first {s1} {v1}, then {s2} {v2}", "{s1} {g1} followed by {s2} {g2}",
             "after {s1} {v1}, {s2} {v2}"]
SEQUENCE3 = ["{s1} {v1}, then {s2} {v2}, then {s3} {v3}",
             "{s1} {v1}, {s2} {v2} and then {s3} {v3}",
             "{s1} {v1} followed by {s2} {g2} and {s3} {g3}",
             "first {s1} {v1}, then {s2} {v2} and finally {s3} {v3}",
             "{s1} {g1}, then {s2} {g2}, then {s3} {g3}"]
BACKGROUND = ["{s1} {v1} while {sb} {vb}", "{s1} {v1} as {sb} {vb}",
              "{s1} {v1} over the sound of {sb} {gb}",
              "{s1} {v1} with {sb} {gb} in the background", "{sb} {vb} while {s1} {v1}",
              "{sb} {gb} and {s1} {g1}", "{s1} {g1} with {sb} {gb} in the background"]
BACKGROUND2 = ["{s1} {v1}, then {s2} {v2} while {sb} {vb}",
               "{sb} {vb} as {s1} {v1} and then {s2} {v2}",
               "{s1} {v1} and {s2} {v2} over the sound of {sb} {gb}",
               "{s1} {v1} followed by {s2} {g2} with {sb} {gb} in the background",
               "while {sb} {vb}, {s1} {v1} and then {s2} {v2}"]
OVERLAP = ["{s1} {v1} while {s2} {v2}", "{s1} {v1} as {s2} {v2}",
           "{s1} {g1} and {s2} {g2} at the same time",
           "{s1} {v1} and {s2} {v2} at the same time", "{s2} {v2} while {s1} {v1}"]
REPEAT = {2: ["{s} {v} twice", "{s} {v} two times", "{s} {v} once and then again",
              "{s} {g} twice", "{s} {v} and then {v} again"],
          3: ["{s} {v} three times", "{s} {v} repeatedly", "{s} {v} again and again",
              "{s} {v} several times", "{s} {g} three times"]}


def active_rms(x: np.ndarray) -> float:
    """RMS over the louder half of 20 ms blocks: the level of the sound while it sounds, so a
    sparse clip (one bark in silence) is not turned up until it clips."""
    block = RATE // 50
    n = max(1, len(x) // block)
    energy = np.sort((np.resize(x, n * block).reshape(n, block) ** 2).mean(axis=1))
    return float(np.sqrt(energy[n // 2:].mean() + 1e-20))


def at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * (10 ** (dbfs / 20) / active_rms(x))


def fit(x: np.ndarray, length: int, rng) -> np.ndarray:
    """`x` cropped (at a random offset) or looped to `length` samples."""
    if len(x) >= length:
        start = rng.integers(0, len(x) - length + 1)
        return x[start:start + length]
    return np.resize(x, length)  # a background loops; its pieces are long enough to hide it


def noise_floor(length: int, rng) -> np.ndarray:
    """Faint low-passed noise, -80 to -55 dBFS: no real microphone records digital silence."""
    white = rng.standard_normal(length).astype(np.float32)
    smooth = np.convolve(white, np.ones(8, np.float32) / 8, mode="same")
    return smooth * (10 ** (rng.uniform(-80, -55) / 20) / (smooth.std() + 1e-12))


def vary(x: np.ndarray, rng) -> np.ndarray:
    """`x` at another speed and through another microphone's band, each half of the time."""
    if rng.random() < 0.5:
        rate = rng.uniform(0.85, 1.15)
        n = max(1, int(len(x) / rate))
        x = np.interp(np.arange(n) * rate, np.arange(len(x)), x).astype(np.float32)
    if rng.random() < 0.5:
        if rng.random() < 0.5:  # muffled: a cheap or distant microphone, a wall between
            sos = butter(2, rng.uniform(1500, 5000), "lowpass", fs=RATE, output="sos")
        else:  # tinny: a small microphone without bass
            sos = butter(2, rng.uniform(150, 700), "highpass", fs=RATE, output="sos")
        x = sosfilt(sos, x).astype(np.float32)
    return x


def room(x: np.ndarray, rng) -> np.ndarray:
    """`x` in a room: exponentially decaying noise as the impulse response (reverberation
    time 0.2-0.9 s), mixed 0-10 dB below the direct sound."""
    rt60 = rng.uniform(0.2, 0.9)
    t = np.arange(int(rt60 * RATE)) / RATE
    ir = (rng.standard_normal(len(t)) * np.exp(-6.91 * t / rt60)).astype(np.float32)
    wet = fftconvolve(x, ir)[: len(x)].astype(np.float32)
    gain = 10 ** (-rng.uniform(0, 10) / 20) * np.sqrt(
        (x ** 2).mean() / ((wet ** 2).mean() + 1e-20))
    return x + gain * wet


class Pool:
    """The clips of one split, by category, with the category weights."""

    def __init__(self, rows: list[dict], corpus: Path, table, rng, augment: bool = False):
        self.corpus, self.table, self.rng, self.augment = corpus, table, rng, augment
        self.by_cat: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            self.by_cat[r["category"]].append(r)
        recs = {c: len({r["recording"] for r in rs}) for c, rs in self.by_cat.items()}
        self.cats = sorted(self.by_cat)
        w = np.array([np.sqrt(recs[c]) for c in self.cats])
        self.weights = w / w.sum()
        self.cache: dict[str, np.ndarray] = {}

    def kind(self, cat: str) -> str:
        return self.table.categories[cat]["kind"]

    def category(self, kind: str | None = None, exclude=(), short: bool = False) -> str | None:
        """A weighted random category of `kind` (any when None) not in `exclude`."""
        ok = np.array([(kind is None or self.kind(c) == kind) and c not in exclude
                       and (not short or any(r["seconds"] <= 1.5 for r in self.by_cat[c]))
                       for c in self.cats])
        if not ok.any():
            return None
        p = self.weights * ok
        return self.cats[self.rng.choice(len(self.cats), p=p / p.sum())]

    def clip(self, cat: str, short: bool = False) -> tuple[dict, np.ndarray]:
        rows = [r for r in self.by_cat[cat] if not short or r["seconds"] <= 1.5]
        row = rows[self.rng.integers(len(rows))]
        if row["id"] not in self.cache:
            x, sr = sf.read(self.corpus / row["path_16000"], dtype="float32")
            assert sr == RATE, f"{row['path_16000']}: {sr} Hz"
            self.cache[row["id"]] = x
        x = self.cache[row["id"]]
        return row, vary(x, self.rng) if self.augment else x

    def phrase(self, row: dict) -> dict:
        say = row["say"] or self.table.categories[row["category"]]["say"]
        s, v, g = say[self.rng.integers(len(say))].split("|")
        return {"s": s, "v": v, "g": g}


def _captions(templates: list[str], pool: Pool, rows: list[dict], extra: dict,
              n: int = 5) -> list[str]:
    """`n` distinct captions: templates drawn without replacement (then again), each filled
    with freshly drawn phrases of the scene's clips."""
    out: list[str] = []
    order = list(pool.rng.permutation(len(templates)))
    for attempt in range(40):
        if len(out) == n:
            break
        t = templates[order[attempt % len(order)]]
        fill = dict(extra)
        for i, row in enumerate(rows):
            p = pool.phrase(row)
            suffix = ("" if len(rows) == 1 else "b" if extra.get("_bg") == i else str(i + 1))
            fill.update({f"s{suffix}": p["s"], f"v{suffix}": p["v"], f"g{suffix}": p["g"]})
        text = " ".join(t.format(**fill).split())
        if text not in out:
            out.append(text)
    return out


def make_scene(pool: Pool) -> tuple[np.ndarray, list[str], list[str], str, str]:
    """(audio, captions, tags, scene key, scene type) of one random scene."""
    rng = pool.rng
    kind = rng.choice(list(TYPES), p=np.array(list(TYPES.values())) / sum(TYPES.values()))
    event_db = lambda: rng.uniform(-28, -14)  # noqa: E731 - a level, drawn per use

    if kind == "quiet":
        length = int(rng.uniform(2, 10) * RATE)
        texts = list(rng.permutation(QUIET))
        return noise_floor(length, rng), texts, [], "quiet", kind

    if kind in ("single", "raw"):
        cat = pool.category()
        row, x = pool.clip(cat)
        distant = rng.random() < 0.2
        y = at_level(x, rng.uniform(-42, -32) if distant else event_db())
        # "raw" is the clip alone, however short, as `hark caption` hears a file of one
        # sound; "single" puts silence around it, as a live window does.
        if kind == "raw":
            length = min(len(y), 10 * RATE)
        else:
            length = min(max(len(y) + int(rng.uniform(0.2, 1.5) * RATE), RATE), 10 * RATE)
        audio = np.zeros(length, np.float32)
        start = rng.integers(0, max(1, length - len(y)) + 1)
        seg = y[: length - start]
        audio[start:start + len(seg)] += seg
        m = DISTANT[rng.integers(3)] if distant else NEAR[rng.integers(3)]
        caps = _captions(SINGLE, pool, [row], {"m": m})
        return audio, caps, [cat], f"single:{cat}{':far' if distant else ''}", kind

    if kind == "repeat":
        cat = pool.category("event", short=True)
        if cat is None:
            return make_scene(pool)
        row, x = pool.clip(cat, short=True)
        count = int(rng.choice([2, 3]))
        y = at_level(x, event_db())
        gaps = [int(rng.uniform(0.3, 1.2) * RATE) for _ in range(count + 1)]
        audio = np.zeros(sum(gaps) + count * len(y), np.float32)
        t = gaps[0]
        for k in range(count):
            audio[t:t + len(y)] += y * rng.uniform(0.8, 1.0)
            t += len(y) + gaps[k + 1]
        caps = _captions(REPEAT[count], pool, [row], {})
        return audio, caps, [cat], f"repeat{count}:{cat}", kind

    if kind == "sequence":
        k = 3 if rng.random() < 0.3 else 2
        cats: list[str] = []
        for _ in range(k):
            c = pool.category(exclude=cats)
            if c is None:
                break
            cats.append(c)
        picked = [pool.clip(c) for c in cats]
        limit = int(10 * RATE / len(picked)) - int(0.3 * RATE)
        parts = [at_level(fit(x, min(len(x), limit), rng), event_db()) for _, x in picked]
        gaps = [int(rng.uniform(0.1, 0.8) * RATE) for _ in range(len(parts) + 1)]
        audio = np.zeros(sum(gaps) + sum(len(p) for p in parts), np.float32)
        t = gaps[0]
        for p, gap in zip(parts, gaps[1:]):
            audio[t:t + len(p)] += p
            t += len(p) + gap
        caps = _captions(SEQUENCE3 if len(parts) == 3 else SEQUENCE2, pool,
                         [r for r, _ in picked], {})
        return audio, caps, cats, "seq:" + ">".join(cats), kind

    if kind == "overlap":
        c1 = pool.category("event")
        c2 = pool.category("event", exclude=[c1])
        (r1, x1), (r2, x2) = pool.clip(c1), pool.clip(c2)
        length = int(rng.uniform(4, 10) * RATE)
        a = at_level(fit(x1, min(len(x1), length), rng), event_db())
        b = at_level(fit(x2, min(len(x2), length), rng), event_db())
        audio = np.zeros(length, np.float32)
        s1 = rng.integers(0, max(1, length - len(a)) + 1)
        audio[s1:s1 + len(a)] += a[: length - s1]
        # The second starts while the first still sounds.
        s2 = min(s1 + rng.integers(0, max(1, len(a) // 2) + 1), max(0, length - len(b)))
        audio[s2:s2 + len(b)] += b[: length - s2]
        caps = _captions(OVERLAP, pool, [r1, r2], {})
        return audio, caps, [c1, c2], "both:" + "+".join(sorted([c1, c2])), kind

    # background: an ambience through the whole scene, one or two events over it.
    cb = pool.category("background")
    if cb is None:
        return make_scene(pool)
    rb, xb = pool.clip(cb)
    n_events = 2 if rng.random() < 0.3 else 1
    cats = []
    for _ in range(n_events):
        c = pool.category("event", exclude=cats + [cb])
        if c is not None:
            cats.append(c)
    if not cats:
        return make_scene(pool)
    length = int(rng.uniform(5, 10) * RATE)
    bg_db = rng.uniform(-38, -22)
    audio = at_level(fit(xb, length, rng), bg_db).astype(np.float32)
    picked = [pool.clip(c) for c in cats]
    slot = length // len(picked)
    for i, (_, x) in enumerate(picked):
        y = at_level(fit(x, min(len(x), slot - RATE // 10), rng),
                     max(event_db(), bg_db + rng.uniform(4, 12)))
        start = i * slot + rng.integers(0, max(1, slot - len(y)) + 1)
        audio[start:start + len(y)] += y[: length - start]
    rows = [r for r, _ in picked] + [rb]
    caps = _captions(BACKGROUND2 if len(picked) == 2 else BACKGROUND, pool, rows,
                     {"_bg": len(rows) - 1})
    return audio, caps, cats + [cb], f"bg:{cb}+" + ">".join(cats), kind


def generate(corpus: Path, out: Path, sizes: dict[str, int], seed: int = 0,
             augment: bool = False, append: bool = False) -> dict:
    """Write `sizes[split]` scenes per split from the corpus's clips of that split; with
    `append`, add them to the scenes already in `out` (splits of size 0 are left as they are)."""
    corpus, out = Path(corpus), Path(out)
    table = load_table()
    rows = load_corpus(corpus)
    labels = sorted({r["category"] for r in rows})
    out.mkdir(parents=True, exist_ok=True)
    if append:
        if (out / "labels.txt").read_text().split() != labels:
            raise SystemExit(f"{out}: its labels.txt is not this corpus's categories; "
                             "append only scenes of the corpus the set was made from")
        summary = json.loads((out / "scenes.json").read_text())
    else:
        (out / "labels.txt").write_text("\n".join(labels) + "\n")
        summary = {"seed": seed, "labels": len(labels), "splits": {}}
    summary.setdefault("generations", []).append(
        {"seed": seed, "augment": augment, "scenes": {k: n for k, n in sizes.items() if n}})
    for i, (split, n) in enumerate(sizes.items()):
        if append and n == 0:
            continue
        rng = np.random.default_rng([seed, i])
        pool = Pool([r for r in rows if r["split"] == split], corpus, table, rng, augment)
        (out / split).mkdir(exist_ok=True)
        old = summary["splits"].get(split) if append else None
        types = Counter(old["types"] if old else {})
        tag_counts = Counter(old["categories"] if old else {})
        jsonl = out / f"{split}.jsonl"
        lines = jsonl.read_text().splitlines() if old else []
        stem = f"{split}_s{seed}" if append else split  # appended scenes keep their own names
        for k in progress(range(n), f"scenes {split}", unit="scene"):
            audio, caps, tags, key, kind = make_scene(pool)
            if augment and rng.random() < 0.3:
                audio = room(audio, rng)
            audio = audio + noise_floor(len(audio), rng)
            peak = float(np.abs(audio).max())
            if peak > 0.98:
                audio *= 0.98 / peak
            name = f"{split}/{stem}_{k:05d}.wav"
            if append and (out / name).exists():
                raise SystemExit(f"{out / name} exists: append with another --seed")
            sf.write(out / name, audio, RATE, subtype="PCM_16")
            lines.append(json.dumps({"audio": name, "captions": caps, "scene": key,
                                     "tags": sorted(set(tags))}))
            types[kind] += 1
            tag_counts.update(set(tags))
        jsonl.write_text("\n".join(lines) + "\n")
        summary["splits"][split] = {"scenes": len(lines), "types": dict(types),
                                    "categories": dict(sorted(tag_counts.items()))}
    (out / "scenes.json").write_text(json.dumps(summary, indent=2) + "\n")
    # The scenes carry their corpus's description and attribution, for the model card.
    shutil.copy(corpus / "summary.json", out / "corpus.json")
    shutil.copy(corpus / "ATTRIBUTION.md", out / "ATTRIBUTION.md")
    if (corpus / "CREDITS.csv").exists():
        shutil.copy(corpus / "CREDITS.csv", out / "CREDITS.csv")
    shutil.copytree(corpus / "licences", out / "licences", dirs_exist_ok=True)
    return summary
