"""Deterministic synthetic sound scenes with compositional captions.

A scene is 1-3 sound events, either in sequence ("A, then B, then C") or one event over a
steady background ("A while B"). Every event is a *primitive*: a renderer plus phrasings in
two grammatical forms (a clause, "a high beep repeats three times", and a noun phrase,
"three high pitched beeps"). A scene's five captions come from five of six caption styles,
each style fixing a template and which phrasing it uses, so the captions are paraphrases of
one another while the content words (order, count, pitch, overlap) are shared. A model that
does not listen cannot caption these scenes: the benchmark is built to expose mode collapse.

The output is the generic manifest format (`train.jsonl`, `val.jsonl`, `test.jsonl` next to an
`audio/` folder), readable by `hark_export.data.load_split`. Each scene also lists its
primitives as `tags` (what `--balance` and `--curriculum` count); no `labels.txt` is written,
so models trained on it have no tag head.
"""

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16000
SCENE_SECONDS = 4.0
SPLITS = (("train", 0.8), ("val", 0.1), ("test", 0.1))
SPEECH_WORDS = ("hello", "seven", "open the door", "good morning", "turn left", "yes please",
                "where is it", "come here", "thank you", "one two three", "stop", "welcome home")
COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
COUNT_TIMES = {2: "twice", 3: "three times", 4: "four times"}

Render = Callable[[np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Primitive:
    """One kind of sound event: how to render it and how to say it.

    `clauses` and `nouns` each hold two phrasings (variant 0 and 1); `background` marks steady
    sounds that can run under another event.
    """

    name: str
    clauses: tuple[str, str]
    nouns: tuple[str, str]
    render: Render
    background: bool = False


def _t(seconds: float) -> np.ndarray:
    """Sample times for a signal of the given length."""
    return np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE


def _fade(x: np.ndarray, ms: float = 10.0) -> np.ndarray:
    """Raised-cosine fade in and out, so events start and stop without clicks."""
    n = min(int(ms * SAMPLE_RATE / 1000), len(x) // 2)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))
    x = x.copy()
    x[:n] *= ramp
    x[len(x) - n:] *= ramp[::-1]
    return x


def _tone(freq: float) -> Render:
    """A steady sine with a little random detuning and length."""
    def render(rng: np.random.Generator) -> np.ndarray:
        f = freq * rng.uniform(0.97, 1.03)
        return _fade(np.sin(2 * np.pi * f * _t(rng.uniform(0.7, 1.1))))
    return render


def _chirp(f0: float, f1: float) -> Render:
    """An exponential sweep from f0 to f1."""
    def render(rng: np.random.Generator) -> np.ndarray:
        dur = rng.uniform(0.5, 0.8)
        t = _t(dur)
        k = np.log(f1 / f0) / dur
        return _fade(np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k))
    return render


def _noise(colour: str) -> Render:
    """White, pink (1/f) or brown (1/f^2) noise, shaped in the frequency domain."""
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[colour]

    def render(rng: np.random.Generator) -> np.ndarray:
        n = len(_t(rng.uniform(0.7, 1.1)))
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        spectrum /= np.maximum(f, 20.0) ** exponent
        x = np.fft.irfft(spectrum, n)
        return _fade(0.5 * x / np.max(np.abs(x)))
    return render


def _clicks(rate: float) -> Render:
    """A train of short decaying clicks at `rate` per second."""
    def render(rng: np.random.Generator) -> np.ndarray:
        x = np.zeros(len(_t(rng.uniform(0.8, 1.1))))
        click = np.exp(-np.arange(48) / 6.0) * rng.choice([-1.0, 1.0], 48)
        for start in np.arange(0, len(x) - 48, SAMPLE_RATE / rate).astype(int):
            x[start:start + 48] += click
        return x
    return render


def _buzz(freq: float) -> Render:
    """A band-limited pulse train (a buzzer): the first harmonics of a square wave."""
    def render(rng: np.random.Generator) -> np.ndarray:
        t = _t(rng.uniform(0.7, 1.0))
        x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 30, 2))
        return _fade(0.6 * x)
    return render


def _beeps(freq: float, count: int) -> Render:
    """`count` short beeps separated by short silences."""
    def render(rng: np.random.Generator) -> np.ndarray:
        on, off = rng.uniform(0.08, 0.12), rng.uniform(0.1, 0.14)
        beep = _fade(np.sin(2 * np.pi * freq * _t(on)), 5)
        gap = np.zeros(len(_t(off)))
        return np.concatenate([np.concatenate([beep, gap]) for _ in range(count)])[:-len(gap)]
    return render


def _melody(direction: int) -> Render:
    """Four notes of a major arpeggio going up (+1) or down (-1)."""
    def render(rng: np.random.Generator) -> np.ndarray:
        root = 440.0 * 2 ** (rng.integers(-3, 4) / 12)
        steps = [0, 4, 7, 12][::direction]
        note = rng.uniform(0.13, 0.17)
        return np.concatenate([_fade(np.sin(2 * np.pi * root * 2 ** (s / 12) * _t(note)), 8)
                               for s in steps])
    return render


def _siren() -> Render:
    """A tone warbling between two pitches a few times a second."""
    def render(rng: np.random.Generator) -> np.ndarray:
        t = _t(rng.uniform(0.8, 1.1))
        freq = 900 + 300 * np.sin(2 * np.pi * rng.uniform(3, 5) * t)
        return _fade(np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE))
    return render


def _speech(voice: str) -> Render:
    """A word or short phrase spoken by espeak-ng with the given voice variant."""
    def render(rng: np.random.Generator) -> np.ndarray:
        text = SPEECH_WORDS[rng.integers(len(SPEECH_WORDS))]
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "speech.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", "170", "-w", str(wav), text],
                           check=True, capture_output=True)
            x, sr = sf.read(wav, dtype="float64")
        x = resample_poly(x, SAMPLE_RATE, sr)[: int(1.2 * SAMPLE_RATE)]
        return _fade(x / max(np.max(np.abs(x)), 1e-6))
    return render


def espeak_available() -> bool:
    """True when the espeak-ng binary is on PATH (speech primitives need it)."""
    return shutil.which("espeak-ng") is not None


def primitives(speech: bool) -> list[Primitive]:
    """The primitive catalogue: 20 non-speech primitives, plus 2 voices when `speech`."""
    p = [
        Primitive("tone_low", ("a low tone hums", "a deep tone sounds"),
                  ("a low steady tone", "a deep hum"), _tone(220), background=True),
        Primitive("tone_mid", ("a medium tone sounds", "a mid pitched tone plays"),
                  ("a medium pitched tone", "a steady mid tone"), _tone(523)),
        Primitive("tone_high", ("a high tone whistles", "a high pitched tone rings"),
                  ("a high steady tone", "a shrill whistle"), _tone(1760)),
        Primitive("chirp_up", ("a tone sweeps upward", "the pitch rises quickly"),
                  ("a rising chirp", "an upward sweep"), _chirp(300, 3000)),
        Primitive("chirp_down", ("a tone sweeps downward", "the pitch falls quickly"),
                  ("a falling chirp", "a downward sweep"), _chirp(3000, 300)),
        Primitive("noise_white", ("white noise hisses", "a bright hiss plays"),
                  ("hissing white noise", "a bright hiss"), _noise("white"), background=True),
        Primitive("noise_pink", ("pink noise rushes", "a soft rushing noise plays"),
                  ("rushing pink noise", "a soft rush of noise"), _noise("pink"), background=True),
        Primitive("noise_brown", ("brown noise rumbles", "a deep rumble plays"),
                  ("rumbling brown noise", "a low rumble"), _noise("brown"), background=True),
        Primitive("clicks_slow", ("clicks tick slowly", "a slow clicking sounds"),
                  ("slow clicking", "slow ticking clicks"), _clicks(5), background=True),
        Primitive("clicks_fast", ("clicks rattle quickly", "a fast clicking rattles"),
                  ("fast clicking", "a rapid rattle of clicks"), _clicks(25), background=True),
        Primitive("buzz", ("a low buzz drones", "a buzzer drones"),
                  ("a low buzz", "a droning buzzer"), _buzz(110), background=True),
        Primitive("siren", ("a siren wails", "a tone warbles up and down"),
                  ("a wailing siren", "a warbling tone"), _siren()),
        Primitive("melody_up", ("a short melody climbs", "a little tune rises"),
                  ("a rising melody", "an ascending tune"), _melody(+1)),
        Primitive("melody_down", ("a short melody descends", "a little tune falls"),
                  ("a falling melody", "a descending tune"), _melody(-1)),
    ]
    for pitch, freq in (("low", 500.0), ("high", 2000.0)):
        for count in (2, 3, 4):
            n, times = COUNT_WORDS[count], COUNT_TIMES[count]
            p.append(Primitive(
                f"beeps_{pitch}_{count}",
                (f"a {pitch} beep repeats {times}", f"{n} {pitch} beeps sound"),
                (f"{n} {pitch} pitched beeps", f"{n} short {pitch} beeps"),
                _beeps(freq, count)))
    if speech:
        p.append(Primitive("speech_male", ("a man speaks", "a male voice says something"),
                           ("a man speaking", "a male voice"), _speech("en-us+m3")))
        p.append(Primitive("speech_female", ("a woman speaks", "a female voice says something"),
                           ("a woman speaking", "a female voice"), _speech("en-us+f3")))
    return p


def caption(style: int, events: list[Primitive], overlap: bool) -> str:
    """One caption of a scene in one of six styles (0-5).

    Each style has its own template and phrasing (clause or noun phrase, variant 0 or 1), so
    the captions of a scene are paraphrases that share every content word that matters.
    """
    c0, c1 = [e.clauses[0] for e in events], [e.clauses[1] for e in events]
    n0, n1 = [e.nouns[0] for e in events], [e.nouns[1] for e in events]
    if overlap:  # events = [foreground, background]
        return [f"{c0[0]} while {c0[1]}", f"{c1[1]} as {c1[0]}", f"{c0[0]} over {c0[1]}",
                f"{n0[0]} over {n0[1]}", f"{n1[0]} with {n1[1]} in the background",
                f"{n0[1]} and {n0[0]} at the same time"][style]
    if len(events) == 1:
        return [c0[0], c1[0], f"{n0[0]} can be heard", n1[0], f"there is {n0[0]}",
                f"the sound of {n1[0]}"][style]
    first = "first " + ", then ".join(c1[:-1]) + (", and finally " if len(events) == 3
                                                   else ", then ") + c1[-1]
    return [", then ".join(c0), " and then ".join(c1), first, " followed by ".join(n0),
            ", then ".join(n1), ", ".join(n0[:-1]) + " and then " + n0[-1]][style]


def _place(scene: np.ndarray, event: np.ndarray, start: int, gain: float) -> None:
    """Mix `event` into `scene` at sample `start`, truncating at the scene end."""
    end = min(len(scene), start + len(event))
    scene[start:end] += gain * event[: end - start]


def render_scene(rng: np.random.Generator, catalogue: list[Primitive]) -> tuple[np.ndarray, dict]:
    """Draw and render one scene; return (samples, description with captions and scene key)."""
    n = len(_t(SCENE_SECONDS))
    scene = np.zeros(n)
    kind = rng.choice(["single", "sequence2", "overlap", "sequence3"], p=[0.2, 0.3, 0.2, 0.3])
    if kind == "overlap":
        fg = [p for p in catalogue if not p.background]
        bg = [p for p in catalogue if p.background]
        events = [fg[rng.integers(len(fg))], bg[rng.integers(len(bg))]]
        background = events[1].render(rng)
        # Stretch the steady background to most of the scene by tiling its middle.
        body = background[len(background) // 4: 3 * len(background) // 4]
        background = _fade(np.resize(body, int(rng.uniform(2.5, 3.5) * SAMPLE_RATE)), 20)
        start = int(rng.uniform(0.1, 0.4) * SAMPLE_RATE)
        _place(scene, background, start, 0.3 * rng.uniform(0.7, 1.0))
        foreground = events[0].render(rng)
        _place(scene, foreground, start + int(rng.uniform(0.4, 1.0) * SAMPLE_RATE),
               0.6 * rng.uniform(0.7, 1.0))
    else:
        count = {"single": 1, "sequence2": 2, "sequence3": 3}[kind]
        # Consecutive events are distinct, so "A, then A" never needs a count word.
        events = []
        while len(events) < count:
            p = catalogue[rng.integers(len(catalogue))]
            if not events or p.name != events[-1].name:
                events.append(p)
        rendered = [e.render(rng) for e in events]
        gaps = [int(rng.uniform(0.1, 0.3) * SAMPLE_RATE) for _ in events]
        slack = n - sum(len(r) for r in rendered) - sum(gaps)
        position = int(rng.uniform(0.0, max(slack, 1)) * 0.5)
        for r, gap in zip(rendered, gaps):
            _place(scene, r, position, 0.6 * rng.uniform(0.6, 1.0))
            position += len(r) + gap
    scene += 0.002 * rng.standard_normal(n)  # a faint noise floor, like a real microphone
    styles = sorted(rng.choice(6, size=5, replace=False).tolist())
    overlap = kind == "overlap"
    key = (" + " if overlap else " > ").join(e.name for e in events)
    return np.clip(scene, -1, 1).astype(np.float32), {
        "captions": [caption(s, events, overlap) for s in styles], "scene": key,
        "tags": sorted({e.name for e in events})}


def generate(n: int, seed: int, out: Path, speech: bool | None = None) -> dict:
    """Write `n` scenes under `out` (audio + per-split JSONL manifests); return the summary.

    Scene i depends only on (seed, i), so the same arguments always give identical files.
    `speech=None` enables speech primitives when espeak-ng is installed.
    """
    speech = espeak_available() if speech is None else speech
    catalogue = primitives(speech)
    out = Path(out)
    bounds, start = {}, 0
    for name, fraction in SPLITS:
        stop = n if name == SPLITS[-1][0] else start + round(fraction * n)
        bounds[name] = (start, stop)
        start = stop
    for split, (lo, hi) in bounds.items():
        (out / "audio" / split).mkdir(parents=True, exist_ok=True)
        with open(out / f"{split}.jsonl", "w") as manifest:
            for i in range(lo, hi):
                samples, info = render_scene(np.random.default_rng([seed, i]), catalogue)
                rel = f"audio/{split}/scene_{i:06d}.wav"
                sf.write(out / rel, samples, SAMPLE_RATE, subtype="PCM_16")
                manifest.write(json.dumps({"audio": rel, **info}) + "\n")
    summary = {"n": n, "seed": seed, "sample_rate": SAMPLE_RATE, "seconds": SCENE_SECONDS,
               "speech": speech, "primitives": [p.name for p in catalogue],
               "splits": {k: hi - lo for k, (lo, hi) in bounds.items()}}
    (out / "synth.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
