"""Datasets, caption vocabulary and the log-mel feature cache.

Four layouts are read into one list of `Clip`s per split:
  - Clotho v2.1: clotho_captions_{development,validation,evaluation}.csv (file_name,
    caption_1..caption_5) beside the audio folders development/, validation/, evaluation/;
  - AudioCaps: {train,val,test}.csv (audiocap_id, youtube_id, start_time, caption), one row per
    caption, audio in {train,val,test}/ named by youtube id (see `_audiocaps_audio`);
  - WavCaps: its JSON files ({"data": [{"id", "caption", ...}]}) with the audio, named by id,
    anywhere under the folder; training data only (WavCaps has no validation or test split);
  - generic manifest: {split}.jsonl ({"audio": path, "captions": [...]}) or {split}.csv (an
    `audio` column and one or more `caption*` columns); paths are relative to the manifest.
Every caption of a clip is kept; several datasets train together through `Datasets`.
Features are computed only by the Rust `dsp` crate (through its PyO3 module `hark_dsp`),
unnormalised, and either cached on disk keyed by audio file and front-end parameters
(`FeatureCache`) or computed as batches are drawn (`StreamedFeatures`); the global mean/std
normalisation is applied when a sample is loaded.
"""

import argparse
import csv
import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from hark_export.progress import progress

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
SPLIT_NAMES = ("train", "val", "test")
CLOTHO_SPLITS = {"train": "development", "val": "validation", "test": "evaluation"}
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class Clip:
    """One audio file and all of its reference captions.

    `scene` identifies the clip's content when a dataset knows it (the synthetic generator
    does); otherwise two clips are the same scene when their caption sets are equal.
    """

    id: str
    audio: Path
    captions: list[str]
    scene: str = ""
    tags: list[str] = field(default_factory=list)  # labels.txt categories heard in the clip
    tagged: bool = True  # False: the clip's dataset has no labels, so `tags` says nothing


# ---- captions and vocabulary ----

def normalise_caption(text: str) -> str:
    """Lowercase, drop punctuation (apostrophes inside words survive) and collapse spaces."""
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower())
    text = re.sub(r"(^|\s)'|'(\s|$)", " ", text)
    return " ".join(text.split())


class Vocab:
    """Word vocabulary: ids 0-3 are <pad>, <bos>, <eos>, <unk>; the rest ordered by frequency."""

    def __init__(self, itos: list[str]):
        assert tuple(itos[: len(SPECIALS)]) == SPECIALS, "vocabulary must start with the specials"
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, captions: list[str], min_freq: int = 1) -> "Vocab":
        """Vocabulary of every word seen at least `min_freq` times (ties broken alphabetically)."""
        counts = Counter(w for c in captions for w in normalise_caption(c).split())
        words = sorted((w for w, n in counts.items() if n >= min_freq),
                       key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + words)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, caption: str, max_len: int) -> list[int]:
        """<bos> words <eos>, truncated to `max_len` ids in total (the <eos> is kept)."""
        ids = [self.stoi.get(w, UNK) for w in normalise_caption(caption).split()]
        return [BOS] + ids[: max_len - 2] + [EOS]

    def decode(self, ids: list[int]) -> str:
        """Words up to the first <eos>, specials dropped."""
        words = []
        for i in ids:
            if i == EOS:
                break
            if i >= len(SPECIALS):
                words.append(self.itos[i])
        return " ".join(words)

    def save(self, path: Path) -> None:
        """One token per line; the line number is the id."""
        Path(path).write_text("\n".join(self.itos) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        """Read a vocabulary written by `save`."""
        return cls(Path(path).read_text().splitlines())


# ---- dataset layouts ----

def _clotho(root: Path, split: str) -> list[Clip]:
    """Clotho v2.1: five caption columns per file, audio under the split's folder name."""
    name = CLOTHO_SPLITS[split]
    with open(root / f"clotho_captions_{name}.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [Clip(id=r["file_name"], audio=root / name / r["file_name"],
                 captions=[r[k] for k in sorted(r) if k.startswith("caption") and r[k]])
            for r in rows]


def _audiocaps_audio(folder: Path, row: dict) -> Path | None:
    """The clip's audio file under the names download tools use, or None when missing."""
    yid, start = row["youtube_id"], row["start_time"]
    for stem in (f"{yid}_{start}", f"Y{yid}", yid, row["audiocap_id"]):
        for ext in AUDIO_EXTENSIONS:
            if (folder / (stem + ext)).exists():
                return folder / (stem + ext)
    return None


def _audiocaps(root: Path, split: str) -> list[Clip]:
    """AudioCaps: one CSV row per caption, grouped by YouTube clip; missing audio is skipped."""
    with open(root / f"{split}.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    clips: dict[str, Clip] = {}
    missing = 0
    for r in rows:
        key = f"{r['youtube_id']}_{r['start_time']}"
        if key not in clips:
            audio = _audiocaps_audio(root / split, r)
            if audio is None:
                missing += 1
                continue
            clips[key] = Clip(id=key, audio=audio, captions=[])
        clips[key].captions.append(r["caption"])
    if missing:
        print(f"audiocaps {split}: {missing} clips without audio skipped")
    return list(clips.values())


def _manifest(path: Path) -> list[Clip]:
    """Generic manifest in JSONL or CSV; audio paths are relative to the manifest's folder."""
    rows = []
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    else:
        with open(path, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                caps = [r[k] for k in r if k.startswith("caption") and r[k]]
                rows.append({"audio": r["audio"], "captions": caps, "scene": r.get("scene", "")})
    clips = []
    for r in rows:
        caps = r.get("captions") or [r["caption"]]
        clips.append(Clip(id=str(r.get("id", r["audio"])), audio=path.parent / r["audio"],
                          captions=list(caps), scene=r.get("scene", ""),
                          tags=list(r.get("tags", []))))
    return clips


def _wavcaps_json(root: Path) -> list[Path]:
    """WavCaps' metadata files: *.json in `root` or its json_files/ tree."""
    return sorted({*root.glob("*.json"), *(root / "json_files").rglob("*.json")})


def _wavcaps(root: Path, split: str) -> list[Clip]:
    """WavCaps: every entry of every JSON file, its audio found by id (the file name without
    extension: `180913.flac` for id 180913, `Yb0RFKhbpFJA.flac` for id `Yb0RFKhbpFJA.wav`)
    anywhere under `root`, as the archives unpack. Entries without audio are skipped and
    counted. All of it is training data."""
    if split != "train":
        return []
    audio: dict[str, Path] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() in AUDIO_EXTENSIONS:
                audio.setdefault(stem, Path(folder) / name)
    clips, missing = [], 0
    for path in _wavcaps_json(root):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for entry in doc["data"] if isinstance(doc, dict) else doc:
            key = os.path.splitext(str(entry["id"]))[0]
            caps = entry["caption"]
            if key not in audio:
                missing += 1
                continue
            clips.append(Clip(id=f"{path.stem}/{key}", audio=audio[key],
                              captions=[caps] if isinstance(caps, str) else list(caps)))
    if missing:
        print(f"wavcaps: {missing} entries without audio skipped")
    return clips


def detect_layout(root: Path) -> str:
    """'clotho', 'audiocaps', 'manifest' or 'wavcaps', from the files present in `root`."""
    root = Path(root)
    if (root / "clotho_captions_development.csv").exists():
        return "clotho"
    if (root / "train.csv").exists():
        with open(root / "train.csv", newline="", encoding="utf-8") as f:
            if "youtube_id" in (csv.DictReader(f).fieldnames or []):
                return "audiocaps"
    if not any((root / f"train{ext}").exists() for ext in (".jsonl", ".csv")) \
            and _wavcaps_json(root):
        return "wavcaps"
    return "manifest"


LAYOUTS = ("auto", "clotho", "audiocaps", "wavcaps", "manifest")


def load_split(root: Path, split: str, layout: str = "auto") -> list[Clip]:
    """All clips of `split` (train, val or test) of the dataset at `root`."""
    root = Path(root)
    layout = detect_layout(root) if layout == "auto" else layout
    if layout == "clotho":
        return _clotho(root, split)
    if layout == "audiocaps":
        return _audiocaps(root, split)
    if layout == "wavcaps":
        return _wavcaps(root, split)
    for ext in (".jsonl", ".csv"):
        if (root / f"{split}{ext}").exists():
            return _manifest(root / f"{split}{ext}")
    raise FileNotFoundError(f"no {split}.jsonl or {split}.csv manifest in {root}")


def load_labels(root: Path) -> list[str]:
    """The dataset's tag labels (`labels.txt`, one per line), or [] when it has none."""
    path = Path(root) / "labels.txt"
    return [l for l in path.read_text().splitlines() if l] if path.exists() else []


def parse_source(spec: str) -> tuple[Path, float]:
    """`PATH` or `PATH:WEIGHT` (as given to `--data`) -> (folder, weight)."""
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
        except ValueError:
            return Path(spec), 1.0
        if not weight > 0:
            raise ValueError(f"--data {spec}: the weight must be a number > 0")
        return Path(head), weight
    return Path(spec), 1.0


class Datasets:
    """Several datasets trained on together: each split is the union of theirs, labels the
    union of their labels.txt (clips of a dataset without one are `tagged=False`, so the tag
    head learns nothing from them), and each training clip carries its dataset's weight: a
    clip of a weight-2 dataset is drawn twice as often as one of weight 1."""

    def __init__(self, sources: list[str], layout: str = "auto"):
        parsed = [parse_source(s) for s in sources]
        self.roots = [root for root, _ in parsed]
        self.labels: list[str] = []
        self.splits: dict[str, list[Clip]] = {s: [] for s in SPLIT_NAMES}
        self.weights: list[float] = []
        for root, weight in parsed:
            labels = load_labels(root)
            self.labels += [l for l in labels if l not in self.labels]
            for split in SPLIT_NAMES:
                clips = load_split(root, split, layout)
                for clip in clips:
                    clip.tagged = bool(labels)
                self.splits[split] += clips
                if split == "train":
                    self.weights += [weight] * len(clips)
        if not self.splits["val"]:
            raise ValueError(f"none of {', '.join(map(str, self.roots))} has a validation "
                             "split: add a dataset that has one (Clotho, AudioCaps, a manifest)")

    @property
    def weighted(self) -> bool:
        """Whether the datasets' weights differ (otherwise plain shuffling draws them)."""
        return len(set(self.weights)) > 1


# ---- features ----

def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] (channels averaged) and the file's sample rate."""
    samples, sr = sf.read(path, dtype="float32", always_2d=True)
    return samples.mean(axis=1), sr


def unnormalised(frontend: dict) -> dict:
    """The front-end config with normalisation switched off (mean 0, std 1), as cached."""
    return {**frontend, "norm_mean": 0.0, "norm_std": 1.0}


def default_frontend(overrides: dict | None = None) -> dict:
    """The dsp crate's default front-end parameters, with `overrides` applied."""
    import hark_dsp  # the Rust dsp crate; the only mel implementation (dsp/README.md)
    return dict(hark_dsp.Frontend({**hark_dsp.Frontend(None).config, **(overrides or {})}).config)


def logmel(samples: np.ndarray, sample_rate: int, frontend: dict) -> np.ndarray:
    """Log-mel features [n_mels, T] of mono samples, computed by the Rust dsp crate.

    This is the one place the trainer computes features, so training and the daemon cannot
    compute different mels.
    """
    import hark_dsp
    return hark_dsp.Frontend(frontend).logmel(np.ascontiguousarray(samples, np.float32),
                                              sample_rate)


def features(audio: Path, frontend: dict) -> np.ndarray:
    """Normalised log-mel [n_mels, frames] of a file, computed by the Rust dsp exactly as the
    daemon computes it (normalisation included)."""
    return logmel(*read_audio(audio), frontend)


def save_atomic(path: Path, array: np.ndarray) -> None:
    """Writes a cache file atomically, so concurrent readers never see half of it; through a
    temporary name of this process's own, so processes filling one cache do not rename each
    other's temporary file away."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


class FeatureCache:
    """Unnormalised log-mels on disk, one .npy per audio file, under a folder per front end.

    A file's key hashes its resolved path, size and modification time, so an edited file is
    recomputed and the cache can be shared by runs with the same front end.
    """

    def __init__(self, root: Path, frontend: dict):
        self.frontend = unnormalised(frontend)
        digest = hashlib.sha1(json.dumps(self.frontend, sort_keys=True).encode()).hexdigest()
        self.dir = Path(root) / digest[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "frontend.json").write_text(json.dumps(self.frontend, indent=2) + "\n")

    def path(self, audio: Path) -> Path:
        """Where the features of `audio` are (or will be) stored."""
        st = Path(audio).stat()
        key = f"{Path(audio).resolve()}|{st.st_size}|{st.st_mtime_ns}"
        return self.dir / (hashlib.sha1(key.encode()).hexdigest() + ".npy")

    def get(self, audio: Path) -> np.ndarray:
        """Features [n_mels, T] of `audio`, computed and stored on first use."""
        path = self.path(audio)
        if path.exists():
            return np.load(path)
        feats = logmel(*read_audio(audio), self.frontend)
        save_atomic(path, feats)
        return feats

    def fill(self, clips: list[Clip], desc: str = "features", quiet: bool = False) -> None:
        """Compute the features of every clip not cached yet."""
        for clip in progress(clips, desc, unit="clip", disable=quiet):
            self.get(clip.audio)


class StreamedFeatures:
    """Log-mels computed when a batch needs them, nothing stored: for datasets too big to
    cache (WavCaps' 7,500 hours would take ~700 GB of mels). With `max_seconds`, a long file
    is read as one crop of that length (random in training, its start otherwise), so
    soundfile seeks and decodes only that stretch of a FLAC or OGG file."""

    def __init__(self, frontend: dict, max_seconds: float = 0.0, random_crop: bool = False):
        self.frontend = unnormalised(frontend)
        self.max_seconds, self.random_crop = max_seconds, random_crop

    def get(self, audio: Path) -> np.ndarray:
        """Unnormalised features [n_mels, T] of `audio` (or of a crop of it)."""
        with sf.SoundFile(audio) as f:
            frames = f.frames
            if self.max_seconds and frames > self.max_seconds * f.samplerate:
                want = int(self.max_seconds * f.samplerate)
                start = int(torch.randint(frames - want + 1, ())) if self.random_crop else 0
                f.seek(start)
                frames = want
            samples = f.read(frames, dtype="float32", always_2d=True).mean(axis=1)
            return logmel(samples, f.samplerate, self.frontend)


def norm_stats(cache: "FeatureCache | StreamedFeatures", clips: list[Clip]) -> tuple[float, float]:
    """Global mean and standard deviation of the features of `clips`."""
    total, total_sq, count = 0.0, 0.0, 0
    for clip in clips:
        x = cache.get(clip.audio).astype(np.float64)
        total, total_sq, count = total + x.sum(), total_sq + (x * x).sum(), count + x.size
    mean = total / count
    return float(mean), float(np.sqrt(max(total_sq / count - mean * mean, 1e-12)))


class CaptionDataset(torch.utils.data.Dataset):
    """Items are (model input, token ids of every caption of the clip, tag targets).

    The input is the normalised mel [n_mels, T], or — with `encoded`, a cache of a frozen
    encoder's outputs — the encoder output [S, D], so a frozen encoder runs once per clip
    for the whole training. Tag targets are 0/1 over `labels` (empty without labels), NaN
    for a clip whose dataset has no labels (the loss leaves those out).
    """

    def __init__(self, clips: list[Clip], cache: "FeatureCache | StreamedFeatures",
                 vocab: Vocab, mean: float, std: float, max_len: int,
                 labels: list[str] | None = None, encoded: "EncoderCache | None" = None):
        self.clips, self.cache, self.mean, self.std = clips, cache, mean, std
        self.encoded = encoded
        self.tokens = [[torch.tensor(vocab.encode(c, max_len)) for c in clip.captions]
                       for clip in clips]
        index = {l: i for i, l in enumerate(labels or [])}
        self.targets = torch.zeros(len(clips), len(index))
        for i, clip in enumerate(clips):
            if not clip.tagged:
                self.targets[i] = float("nan")
            for t in clip.tags:
                if t in index:
                    self.targets[i, index[t]] = 1.0

    def __len__(self) -> int:
        return len(self.clips)

    def mel(self, i: int) -> torch.Tensor:
        """The normalised mel [n_mels, T] of clip i."""
        mel = (self.cache.get(self.clips[i].audio) - self.mean) / self.std
        return torch.from_numpy(mel.astype(np.float32))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        if self.encoded is not None:
            x = torch.from_numpy(self.encoded.get(self.clips[i].audio).astype(np.float32))
            return x.T, self.tokens[i], self.targets[i]  # (D, S): batched like a mel
        return self.mel(i), self.tokens[i], self.targets[i]


class EncoderCache:
    """A frozen encoder's outputs [S, D] on disk (float16), one .npy per audio file, under a
    folder per encoder and front end: the encoder runs once per clip, not once per epoch.
    `encoder.frozen_part` is what is cached (the whole encoder, or the blocks before the
    tuned ones; `key` says which)."""

    def __init__(self, features: FeatureCache, encoder: torch.nn.Module, key: str,
                 mean: float, std: float):
        self.features, self.encoder, self.mean, self.std = features, encoder.eval(), mean, std
        digest = hashlib.sha1(f"{key}|{mean}|{std}".encode()).hexdigest()[:16]
        self.dir = features.dir / f"encoder-{digest}"
        self.dir.mkdir(parents=True, exist_ok=True)

    def get(self, audio: Path) -> np.ndarray:
        path = self.dir / self.features.path(audio).name
        if path.exists():
            return np.load(path)
        mel = (self.features.get(audio) - self.mean) / self.std
        with torch.no_grad():
            out = self.encoder.frozen_part(torch.from_numpy(mel.astype(np.float32))[None])[0]
        out = out.numpy().astype(np.float16)
        save_atomic(path, out)
        return out

    def fill(self, clips: list[Clip], desc: str = "encoder", quiet: bool = False) -> None:
        for clip in progress(clips, desc, unit="clip", disable=quiet):
            self.get(clip.audio)


def pad_mels(mels: list[torch.Tensor]) -> torch.Tensor:
    """[F, T_i] tensors -> [B, F, T_max], zero-padded (zero is the feature mean)."""
    t_max = max(m.shape[1] for m in mels)
    out = torch.zeros(len(mels), mels[0].shape[0], t_max)
    for i, m in enumerate(mels):
        out[i, :, : m.shape[1]] = m
    return out


def collate(batch: list[tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]]):
    """Batch clips and flatten their captions.

    Returns inputs [B, F, T_max] (see `pad_mels`), tokens [N, L_max] (N captions in all,
    <pad>-padded), clip_index [N], the clip of each caption, so the encoder runs once per
    clip however many captions it has, and tag targets [B, n_labels].
    """
    mels, caps, targets = zip(*batch)
    mel = pad_mels(mels)
    flat = [c for cs in caps for c in cs]
    clip_index = torch.tensor([i for i, cs in enumerate(caps) for _ in cs])
    tokens = torch.nn.utils.rnn.pad_sequence(flat, batch_first=True, padding_value=PAD)
    return mel, tokens, clip_index, torch.stack(targets)


# ---- command line ----

def main(argv: list[str] | None = None) -> None:
    """`hark-data`: generate the synthetic benchmark, fill a feature cache, describe a dataset."""
    parser = argparse.ArgumentParser(prog="hark-data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("synth", help="generate the synthetic sound-scene benchmark")
    p.add_argument("--n", type=int, default=4000, help="number of scenes (80/10/10 split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--no-speech", action="store_true", help="leave out espeak-ng speech")
    p = sub.add_parser("real", help="build the real-sound corpus from Debian packages and "
                       "--extra folders (see hark_export/real.py)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--extra", type=Path, action="append", default=[],
                   help="a folder with a manifest.csv (path, description, licence, ...)")
    p.add_argument("--debs", type=Path, default=None,
                   help="where downloaded .deb files are kept (default $HARK_CACHE/debs)")
    p.add_argument("--rates", default="16000",
                   help="comma-separated sample rates to write clips at (16000 always)")
    p.add_argument("--package", action="append", default=None,
                   help="only these Debian packages (default: all of real.PACKAGES)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("scenes", help="captioned scenes from a real-sound corpus")
    p.add_argument("corpus", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train", type=int, default=16000, help="training scenes")
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", action="store_true",
                   help="vary each clip's speed and band, and reverberate scenes")
    p.add_argument("--append", action="store_true",
                   help="add to the scenes in --out (use another --seed; 0 leaves a split)")
    p = sub.add_parser("features", help="compute and cache log-mels of every split")
    p.add_argument("data", type=Path)
    p.add_argument("--cache", type=Path, default=None, help="default: DATA/.hark-cache")
    p.add_argument("--layout", default="auto", choices=LAYOUTS)
    p = sub.add_parser("info", help="clips, captions and vocabulary size of each split")
    p.add_argument("data", type=Path)
    p.add_argument("--layout", default="auto", choices=LAYOUTS)
    p.add_argument("--min-freq", type=int, default=1)
    args = parser.parse_args(argv)

    if args.command == "synth":
        from hark_export.synth import generate
        summary = generate(args.n, args.seed, args.out, speech=False if args.no_speech else None)
        print(json.dumps(summary))
    elif args.command == "real":
        from hark_export.real import build, default_debs
        summary = build(args.out, args.extra, args.debs or default_debs(),
                        [int(r) for r in args.rates.split(",")], args.seed, args.package)
        print(json.dumps({k: summary[k] for k in ("clips", "recordings", "hours", "sources",
                                                  "empty_categories")}, indent=1))
    elif args.command == "scenes":
        from hark_export.scenes import generate
        summary = generate(args.corpus, args.out,
                           {"train": args.train, "val": args.val, "test": args.test}, args.seed,
                           args.augment, args.append)
        print(json.dumps({s: v["scenes"] for s, v in summary["splits"].items()}))
    elif args.command == "features":
        cache = FeatureCache(args.cache or args.data / ".hark-cache", default_frontend())
        for split in SPLIT_NAMES:
            cache.fill(load_split(args.data, split, args.layout), desc=split)
        print(f"features cached in {cache.dir}")
    else:
        splits = {s: load_split(args.data, s, args.layout) for s in SPLIT_NAMES}
        vocab = Vocab.build([c for clip in splits["train"] for c in clip.captions], args.min_freq)
        for s, clips in splits.items():
            print(f"{s}: {len(clips)} clips, {sum(len(c.captions) for c in clips)} captions")
        print(f"vocabulary (min freq {args.min_freq}): {len(vocab)} tokens")


if __name__ == "__main__":
    main()
