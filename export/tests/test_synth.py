import json

import numpy as np
import soundfile as sf

from hark_export.synth import SAMPLE_RATE, caption, espeak_available, generate, primitives


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_same_seed_writes_identical_files(tmp_path):
    generate(12, seed=3, out=tmp_path / "a", speech=False)
    generate(12, seed=3, out=tmp_path / "b", speech=False)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_a_different_seed_writes_different_scenes(tmp_path):
    generate(12, seed=3, out=tmp_path / "a", speech=False)
    generate(12, seed=4, out=tmp_path / "b", speech=False)
    a, b = ((tmp_path / d / "train.jsonl").read_text() for d in "ab")
    assert a != b


def test_there_are_at_least_twenty_primitives_without_speech():
    names = [p.name for p in primitives(speech=False)]
    assert len(names) >= 20 and len(set(names)) == len(names)
    assert not any(n.startswith("speech") for n in names)


def test_speech_adds_a_male_and_a_female_voice():
    names = [p.name for p in primitives(speech=True)]
    assert {"speech_male", "speech_female"} <= set(names)


def test_scenes_are_split_80_10_10_with_five_distinct_captions_each(tmp_path):
    summary = generate(20, seed=0, out=tmp_path, speech=False)
    assert summary["splits"] == {"train": 16, "val": 2, "test": 2}
    for split, n in summary["splits"].items():
        rows = [json.loads(l) for l in (tmp_path / f"{split}.jsonl").read_text().splitlines()]
        assert len(rows) == n
        for row in rows:
            assert len(row["captions"]) == 5 and len(set(row["captions"])) == 5
            assert row["tags"] == sorted(set(row["scene"].replace("+", ">").split(" > ")))
            audio, sr = sf.read(tmp_path / row["audio"])
            assert sr == SAMPLE_RATE and audio.ndim == 1 and np.abs(audio).max() > 0.05


def test_captions_say_order_count_and_pitch():
    p = {x.name: x for x in primitives(speech=False)}
    seq = caption(0, [p["beeps_high_3"], p["noise_white"]], overlap=False)
    assert seq == "a high beep repeats three times, then white noise hisses"
    assert caption(3, [p["beeps_high_3"], p["noise_white"]], overlap=False) == \
        "three high pitched beeps followed by hissing white noise"
    assert "while" in caption(0, [p["chirp_up"], p["buzz"]], overlap=True)


def test_speech_scenes_use_espeak_when_installed(tmp_path):
    if not espeak_available():
        assert "speech_male" not in generate(5, 0, tmp_path)["primitives"]
        return
    rng = np.random.default_rng(0)
    voice = {x.name: x for x in primitives(speech=True)}["speech_female"]
    samples = voice.render(rng)
    assert 0.2 * SAMPLE_RATE < len(samples) <= 1.2 * SAMPLE_RATE and np.abs(samples).max() > 0.5
