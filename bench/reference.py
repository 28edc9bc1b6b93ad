"""The Python peer of `hark caption`: librosa + numpy features, onnxruntime, greedy decoding.

It does the same work as `hark caption --strategy greedy --json` on 16 kHz mono WAV files,
written the way a Python user would write it: the log-mel of the whole file (librosa's STFT,
the bundle's mel filter bank), windows of the bundle's length and hop (the last one moved back
to end with the file), silent windows skipped, the encoder (all its outputs: memory, initial
states, tag heads) and a greedy walk of the step decoder with the bundle's logit rules
(pad/bos banned, end banned before `min_len`, repeated n-grams banned, end forced at
`max_len`). One JSON line per window.

    python bench/reference.py --bundle daemon/assets/model FILE.wav [--threads 1]

It is the baseline of scripts/bench.sh; it imports nothing from hark.
"""

import argparse
import json
import sys
import time
import tomllib
import wave
from pathlib import Path

import librosa
import numpy as np
import onnxruntime as ort


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] of a 16-bit PCM WAV file, and its rate."""
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: the reference reads 16-bit PCM WAV only")
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0
        return x.reshape(-1, w.getnchannels()).mean(axis=1), w.getframerate()


def hz_to_mel(f, scale):
    return librosa.hz_to_mel(f, htk=scale == "htk")


def tensorflow_mel_weights(fe: dict) -> np.ndarray:
    """`tf.signal.linear_to_mel_weight_matrix` [n_mels, bins]: triangles linear in mel over
    each bin's mel value, the DC bin weighing nothing."""
    bins = fe["n_fft"] // 2 + 1
    hz = np.linspace(0.0, fe["sample_rate"] / 2, bins)[1:]
    mel = hz_to_mel(hz, fe["mel_scale"])
    edges = np.linspace(hz_to_mel(fe["f_min"], fe["mel_scale"]),
                        hz_to_mel(fe["f_max"], fe["mel_scale"]), fe["n_mels"] + 2)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    w = np.maximum(0.0, np.minimum((mel - lower) / (centre - lower),
                                   (upper - mel) / (upper - centre)))
    return np.concatenate([np.zeros((fe["n_mels"], 1)), w], axis=1).astype(np.float32)


def logmel(x: np.ndarray, fe: dict) -> np.ndarray:
    """Normalised log-mel [n_mels, frames] with the bundle's front end."""
    if fe.get("framing", "librosa") == "tensorflow":
        # A frame is win_length samples, windowed, zero-padded at the end to n_fft.
        frames = librosa.util.frame(x, frame_length=fe["win_length"], hop_length=fe["hop_length"])
        window = librosa.filters.get_window(fe["window"], fe["win_length"], fftbins=True)
        spec = np.abs(np.fft.rfft(frames * window[:, None], n=fe["n_fft"], axis=0))
        weights = tensorflow_mel_weights(fe)
    else:
        spec = np.abs(librosa.stft(x, n_fft=fe["n_fft"], hop_length=fe["hop_length"],
                                   win_length=fe["win_length"], window=fe["window"],
                                   center=fe["center"], pad_mode="constant"))
        weights = librosa.filters.mel(sr=fe["sample_rate"], n_fft=fe["n_fft"],
                                      n_mels=fe["n_mels"], fmin=fe["f_min"], fmax=fe["f_max"],
                                      htk=fe["mel_scale"] == "htk",
                                      norm="slaney" if fe["mel_norm"] == "slaney" else None)
    mel = np.log(weights @ spec.astype(np.float32) ** fe["power"] + fe["log_offset"])
    return ((mel - fe["norm_mean"]) / fe["norm_std"]).astype(np.float32)


class Bundle:
    """A hark model bundle in onnxruntime, one intra-op thread by default."""

    def __init__(self, path: Path, threads: int):
        self.dir = path
        self.m = tomllib.loads((path / "hark-model.toml").read_text())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        session = lambda f: ort.InferenceSession(str(path / f), opts,  # noqa: E731
                                                 providers=["CPUExecutionProvider"])
        self.encoder = session(self.m["encoder"]["file"])
        self.decoder = session(self.m["decoder"]["file"])
        self.vocab = (path / self.m["tokens"]["vocab"]).read_text().splitlines()
        self.states = self.m["decoder"].get("states", [])

    def encode(self, mel: np.ndarray):
        enc = self.m["encoder"]
        names = ([enc["memory"]] + [s["init_output"] for s in self.states]
                 + [t["output"] for t in self.m.get("tags", [])])
        out = self.encoder.run(names, {enc["input"]: mel[None]})
        return out[0], out[1:1 + len(self.states)], out[1 + len(self.states):]

    def greedy(self, memory, states) -> tuple[list[int], list[float]]:
        """The greedy tokens, and at each step how far the chosen logit led the next best."""
        t, d = self.m["tokens"], self.m["decoding"]
        dec = self.m["decoder"]
        min_len, max_len, n = d.get("min_len", 1), d.get("max_len", t["max_len"]), \
            d.get("no_repeat_ngram", 0)
        history, token, margins = [], t["bos"], []
        names = [dec["logits"]] + [s["output"] for s in self.states]
        while True:
            feed = {dec["tokens"]: np.array([token], np.int64), dec["memory"]: memory}
            feed.update({s["input"]: x for s, x in zip(self.states, states)})
            logits, *states = self.decoder.run(names, feed)
            row = logits[0].copy()
            row[[t["pad"], t["bos"]]] = -np.inf
            if len(history) < min_len:
                row[t["eos"]] = -np.inf
            if n > 0 and len(history) + 1 >= n:
                prefix = history[len(history) + 1 - n:]
                for i in range(len(history) - n + 1):
                    if history[i:i + n - 1] == prefix:
                        row[history[i + n - 1]] = -np.inf
            if len(history) + 1 >= max_len:
                return history, margins
            token = int(np.argmax(row))
            # How close the choice was: a float near-tie may go the other way in another runtime.
            margins.append(float(row[token] - np.partition(row, -2)[-2]))
            if token == t["eos"]:
                return history, margins
            history.append(token)

    def text(self, tokens: list[int]) -> str:
        return " ".join(self.vocab[i] for i in tokens)


def level_dbfs(x: np.ndarray) -> float:
    power = float(np.mean(np.clip(x, -1, 1).astype(np.float64) ** 2)) if len(x) else 0.0
    return max(10 * np.log10(power), -120.0) if power > 0 else -120.0


def caption_file(bundle: Bundle, path: Path, silence_dbfs: float):
    x, rate = read_wav(path)
    fe = bundle.m["frontend"]
    if rate != fe["sample_rate"]:
        raise SystemExit(f"{path}: {rate} Hz; the reference reads {fe['sample_rate']} Hz only")
    mel = logmel(x, fe)
    fps = fe["sample_rate"] / fe["hop_length"]

    def frames(seconds: float) -> int:
        # As hark computes it (daemon/src/model/bundle.rs): in float32, halves rounded away from zero.
        x = np.float32(seconds) * (np.float32(fe["sample_rate"]) / np.float32(fe["hop_length"]))
        return max(1, int(np.floor(x + np.float32(0.5))))
    window, hop = frames(bundle.m["window"]["seconds"]), frames(bundle.m["window"]["hop_seconds"])
    frames = mel.shape[1]
    # A centred front end's last frame is half padding: it makes no window of its own.
    overhang = 1 if fe.get("center") else 0
    start = 0
    while True:
        # Frames after the last full hop: one more window ending with the file, as hark cuts.
        start = max(0, min(start, frames - window))
        end = min(start + window, frames)
        level = level_dbfs(x[start * fe["hop_length"]:end * fe["hop_length"]])
        row = {"file": str(path), "start": start / fps, "end": end / fps, "silent": True,
               "text": None, "tokens": []}
        if level >= silence_dbfs:
            t0 = time.perf_counter()
            memory, states, _tags = bundle.encode(mel[:, start:end])
            t1 = time.perf_counter()
            tokens, margins = bundle.greedy(memory, states)
            t2 = time.perf_counter()
            row.update(silent=False, text=bundle.text(tokens), tokens=tokens,
                       margins=margins,
                       timings_ms={"encoder": (t1 - t0) * 1e3, "decoding": (t2 - t1) * 1e3,
                                   "steps": len(tokens) + 1})
        yield row
        if start + window >= frames - overhang:
            return
        start += hop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--silence-dbfs", type=float, default=-60.0)
    args = p.parse_args()
    bundle = Bundle(args.bundle, args.threads)
    for f in args.files:
        for row in caption_file(bundle, f, args.silence_dbfs):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
