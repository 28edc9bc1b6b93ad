"""The real-sound corpus and its scenes: the category table, recordings and splits, a real
Debian package end to end, and scenes built from a small corpus of generated clips."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from hark_export import real, scenes
from hark_export.data import load_labels, load_split, normalise_caption
from hark_export.real import (assign_splits, load_table, pieces, recording_of, trim)


def test_the_table_has_at_least_30_categories_and_every_rule_names_one():
    table = load_table()
    assert len(table.categories) >= 30
    for must in ("dog", "cat", "bird", "rain", "glass", "cough", "train", "speech", "music"):
        assert must in table.categories
    assert all(r.category == "" or r.category in table.categories for r in table.rules)


def test_a_phrase_that_does_not_name_its_category_is_refused(tmp_path):
    bad = tmp_path / "sounds.toml"
    bad.write_text('[category.dog]\nkind = "event"\nsay = ["a cat|meows|meowing"]\n'
                   'synonyms = ["dog"]\n[[rule]]\nsource = "x"\npath = "*"\ncategory = "dog"\n')
    with pytest.raises(ValueError, match="none of the category's synonyms"):
        load_table(bad)


def test_rules_match_first_wins_and_are_case_insensitive():
    table = load_table()
    rule = table.match("scratch", "usr/share/scratch/Media/Sounds/Animal/dog1.WAV")
    assert rule.category == "dog"
    assert table.match("0ad-data", "audio/music/peace_track.ogg").category == ""  # left out
    assert table.match("scratch", "usr/share/scratch/Media/Sounds/Vocals/Ya.wav").category == ""
    assert table.match("no-such-source", "a.wav") is None


def test_takes_of_one_recording_are_one_recording():
    assert recording_of("a/fs_grass3.ogg", "stem") == recording_of("a/fs_grass7.ogg", "stem")
    assert recording_of("a/swordhit_11a.ogg", "stem") == "a/swordhit"
    assert recording_of("a/dog1.wav", "file") != recording_of("a/dog2.wav", "file")
    # ESC-10: fold-freesoundid-take
    how = r"re:^\d+-(\d+)-"
    assert recording_of("e/1-100032-A.ogg", how) == recording_of("e/3-100032-B.ogg", how)
    assert recording_of("e/1-100032-A.ogg", how) != recording_of("e/1-110389-A.ogg", how)


def test_no_recording_is_in_two_splits_and_categories_get_test_recordings():
    clips = [real.CorpusClip(f"c{i}", cat, "s", f"p{i}", f"{cat}-rec{i // 3}", [], "x", "", 1.0)
             for cat in ("dog", "cat") for i in range(30)]
    clips.append(real.CorpusClip("lone", "frog", "s", "p", "frog-rec", [], "x", "", 1.0))
    assign_splits(clips, seed=0)
    split_of = {}
    for c in clips:
        assert split_of.setdefault(c.recording, c.split) == c.split
    for cat in ("dog", "cat"):
        splits = {c.split for c in clips if c.category == cat}
        assert splits == {"train", "val", "test"}
    assert next(c for c in clips if c.id == "lone").split == "train"  # one recording: train


def test_a_recording_cut_into_many_clips_stays_in_train():
    clips = [real.CorpusClip(f"k{i}", "typing", "s", f"p{i}", "keyboard", [], "x", "", 3.0)
             for i in range(40)]
    clips += [real.CorpusClip(f"o{i}", "typing", "s", f"q{i}", f"other{i}", [], "x", "", 3.0)
              for i in range(3)]
    assign_splits(clips, seed=0)
    assert {c.split for c in clips if c.recording == "keyboard"} == {"train"}
    assert any(c.split == "test" for c in clips)


def test_trim_drops_silence_and_pieces_cut_long_recordings():
    sr = 16000
    x = np.zeros(3 * sr, np.float32)
    x[sr:2 * sr] = 0.5 * np.sin(np.arange(sr) * 0.1)
    t = trim(x, sr)
    assert sr <= len(t) <= sr + sr // 5
    long = np.ones(95 * sr, np.float32)
    parts = pieces(long, sr)
    assert len(parts) == real.MAX_PIECES and all(len(p) <= real.MAX_PIECE * sr for p in parts)


def test_an_extra_folder_needs_a_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        real.extra_clips(tmp_path)


def test_a_debian_package_becomes_typing_runs_with_attribution(tmp_path):
    """bucklespring-data (2.6 MB, GPL-2+) downloaded with apt-get, its key clicks joined into
    typing runs: the whole recipe on a real package."""
    out = tmp_path / "corpus"
    summary = real.build(out, [], real.default_debs(), [16000], packages=["bucklespring-data"])
    assert summary["sources"]["bucklespring-data"]["matched"] > 100
    rows = list(csv.DictReader(open(out / "clips.csv")))
    typing = [r for r in rows if r["category"] == "typing"]
    assert len(typing) == 40 and len({r["recording"] for r in typing}) == 1
    x, sr = sf.read(out / typing[0]["path_16000"])
    assert sr == 16000 and 2.0 <= len(x) / sr <= 6.0 and np.abs(x).max() > 0.01
    attribution = (out / "ATTRIBUTION.md").read_text()
    assert "bucklespring-data" in attribution and "GPL-2+" in attribution
    assert (out / "licences" / "bucklespring-data.copyright").exists()


def test_an_extra_folder_is_read_by_its_manifest_and_copies_are_left_out(tmp_path):
    """ESC-10's layout and licence column; the same bytes under two names are one clip."""
    folder = tmp_path / "extra"
    (folder / "esc10" / "001 - Dog bark").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i, name in enumerate(["1-100032-A.wav", "2-100032-B.wav", "1-110389-A.wav"]):
        x = (0.3 * rng.standard_normal(22050)).astype(np.float32)
        sf.write(folder / "esc10" / "001 - Dog bark" / name, x, 44100, subtype="PCM_16")
        rows.append({"path": f"esc10/001 - Dog bark/{name}", "source": "esc10",
                     "description": "Dog bark", "licence": "CC0", "origin": f"x/{i}"})
    (folder / "esc10" / "001 - Dog bark" / "copy.wav").write_bytes(
        (folder / "esc10" / "001 - Dog bark" / "1-100032-A.wav").read_bytes())
    rows.append({**rows[0], "path": "esc10/001 - Dog bark/copy.wav"})
    rows.append({**rows[0], "path": "esc10/999 - Unknown/x.wav"})
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    summary = real.build(tmp_path / "out", [folder], tmp_path / "debs", [16000], packages=[],
                         speech=False)
    assert summary["sources"]["esc10"] == {"matched": 3, "duplicate": 1, "unmatched": 1}
    out = list(csv.DictReader(open(tmp_path / "out" / "clips.csv")))
    assert {r["category"] for r in out} == {"dog"} and {r["licence"] for r in out} == {"CC0"}
    assert len({r["recording"] for r in out}) == 2  # takes A and B of sound 100032 are one
    credits = list(csv.DictReader(open(tmp_path / "out" / "CREDITS.csv")))
    assert sorted(r["recording"] for r in credits) == sorted({r["recording"] for r in out})
    assert "CREDITS.csv" in (tmp_path / "out" / "ATTRIBUTION.md").read_text()
    x, sr = sf.read(tmp_path / "out" / out[0]["path_16000"])
    assert sr == 16000 and abs(len(x) - 8000) < 400  # 0.5 s at 44.1 kHz, resampled


def _fake_corpus(root, table):
    """A corpus of generated clips (tones and noise bursts standing in for recordings): three
    recordings per category for a few categories, split like the real one."""
    rng = np.random.default_rng(0)
    clips = []
    cats = ["dog", "door", "rain", "wind", "glass", "speech"]
    for ci, cat in enumerate(cats):
        for rec in range(6):
            n = int(rng.uniform(0.4, 3.0) * 16000)
            t = np.arange(n) / 16000
            x = (0.3 * np.sin(2 * np.pi * (200 + 150 * ci) * t) * (rng.random(n) > 0.3)
                 ).astype(np.float32)
            rel = f"clips/16000/{cat}/{cat}-{rec}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, x, 16000, subtype="PCM_16")
            c = real.CorpusClip(f"{cat}-{rec}", cat, "fake", rel, f"fake/{cat}{rec}", [],
                                "CC0", "", n / 16000)
            c.files[16000] = rel
            clips.append(c)
    assign_splits(clips, seed=1)
    (root / "summary.json").write_text(json.dumps({"clips": len(clips)}))
    (root / "ATTRIBUTION.md").write_text("# Attribution\n\ngenerated tones, CC0\n")
    (root / "licences").mkdir()
    with open(root / "clips.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "category", "split", "source", "path", "recording", "seconds",
                    "licence", "origin", "say", "path_16000"])
        for c in clips:
            w.writerow([c.id, c.category, c.split, c.source, c.path, c.recording, c.seconds,
                        c.licence, c.origin, "", c.files[16000]])
    return cats


def test_scenes_have_five_distinct_captions_naming_their_categories_and_tags(tmp_path):
    table = load_table()
    cats = _fake_corpus(tmp_path, table)
    out = tmp_path / "scenes"
    summary = scenes.generate(tmp_path, out, {"train": 60, "val": 10, "test": 12}, seed=3)
    assert load_labels(out) == sorted(cats)
    train = load_split(out, "train")
    assert len(train) == 60
    synonyms = {c: set(table.categories[c]["synonyms"]) for c in cats}
    kinds = summary["splits"]["train"]["types"]
    assert {"single", "raw", "sequence", "background"} <= set(kinds)
    for clip in train:
        assert len(clip.captions) == 5 and len(set(clip.captions)) == 5, clip.captions
        x, sr = sf.read(clip.audio)
        assert sr == 16000 and 0.1 <= len(x) / sr <= 10.5 and np.abs(x).max() <= 1.0
        for cap in clip.captions:
            for tag in clip.tags:  # every caption names every category it holds
                assert set(normalise_caption(cap).split()) & synonyms[tag], (cap, tag)
        if clip.scene == "quiet":
            assert clip.tags == [] and np.abs(x).max() < 0.01
    test_recs = {r["recording"] for r in csv.DictReader(open(tmp_path / "clips.csv"))
                 if r["split"] == "test"}
    assert test_recs  # the test scenes were built from held-out recordings only
    assert (out / "ATTRIBUTION.md").exists() and (out / "corpus.json").exists()
    lines = [json.loads(l) for l in open(out / "test.jsonl")]
    assert all(set(l) == {"audio", "captions", "scene", "tags"} for l in lines)


def test_augmented_scenes_are_appended_beside_the_first_ones(tmp_path):
    _fake_corpus(tmp_path, load_table())
    out = tmp_path / "scenes"
    scenes.generate(tmp_path, out, {"train": 20, "val": 4, "test": 4}, seed=0)
    first = (out / "train.jsonl").read_text().splitlines()
    test = (out / "test.jsonl").read_text()
    summary = scenes.generate(tmp_path, out, {"train": 30, "val": 0, "test": 0}, seed=1,
                              augment=True, append=True)
    train = (out / "train.jsonl").read_text().splitlines()
    assert train[:20] == first and len(train) == 50 and len(load_split(out, "train")) == 50
    assert (out / "test.jsonl").read_text() == test  # held-out scenes untouched
    assert summary["splits"]["train"]["scenes"] == 50
    assert sum(summary["splits"]["train"]["types"].values()) == 50
    assert [g["augment"] for g in summary["generations"]] == [False, True]
    from hark_export.bundle import training_data
    assert "--seed 0 + --append --seed 1 --augment: 30 train; 50 train, 4 val, 4 test" in \
        training_data(out)
    with pytest.raises(SystemExit, match="another --seed"):
        scenes.generate(tmp_path, out, {"train": 1, "val": 0, "test": 0}, seed=1, append=True)


def test_augmentation_changes_speed_band_and_room_but_keeps_the_level():
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    lengths = {len(scenes.vary(x, rng)) for _ in range(20)}
    assert len(lengths) > 1 and all(13900 <= n <= 18900 for n in lengths)
    y = scenes.room(x, rng)
    assert len(y) == len(x) and not np.allclose(x, y)
    assert 0.9 < np.sqrt((y ** 2).mean()) / np.sqrt((x ** 2).mean()) < 1.5
