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


# ---- containers of packages: OpenTTD's sample catalogue, Qt resource archives, debian/copyright

def _wav(seconds=0.3, rate=22050, seed=0) -> bytes:
    """A RIFF WAVE file of noise bursts standing in for a recording."""
    import io
    rng = np.random.default_rng(seed)
    x = (0.3 * rng.standard_normal(int(seconds * rate))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _cat(sounds: list[tuple[str, str, bytes]]) -> bytes:
    """An OpenTTD sample catalogue (new format) of (name, filename, wav) as catcodec writes it:
    the table of offsets (bit 31 set on the first) and sizes, then per sound a length-prefixed
    name, the RIFF and a NUL and length-prefixed filename."""
    table, body = [], b""
    start = 8 * len(sounds)
    for name, filename, wav in sounds:
        n, f = name.encode("latin-1") + b"\0", filename.encode("latin-1") + b"\0"
        table.append((start + len(body), len(wav)))
        body += bytes([len(n)]) + n + wav + b"\0" + bytes([len(f)]) + f
    head = b"".join((off | (0x80000000 if i == 0 else 0)).to_bytes(4, "little")
                    + size.to_bytes(4, "little") for i, (off, size) in enumerate(table))
    return head + body


def test_an_openttd_sample_catalogue_gives_its_sounds_names_and_filenames():
    wavs = [_wav(seed=1), _wav(0.5, seed=2)]
    data = _cat([('"Sawmill". Original "saw.wav" by "Ben". License: Creative Commons '
                  'Attribution 3.0 Unported.', "src/wav/osfx_40.wav", wavs[0]),
                 ('"Cow". By Jan. License: Creative Commons Zero 1.0.', "src/wav/osfx_41.wav",
                  wavs[1])])
    sounds = real.cat_sounds(data)
    assert [s.filename for s in sounds] == ["src/wav/osfx_40.wav", "src/wav/osfx_41.wav"]
    assert [s.wav for s in sounds] == wavs and sounds[1].name.startswith('"Cow". By Jan.')
    x, sr = real.decode(sounds[1].wav)
    assert sr == 22050 and len(x) == 11025
    with pytest.raises(ValueError, match="not RIFF WAVE"):
        real.cat_sounds(data[:-len(wavs[1]) // 2])


def test_opensfx_names_give_title_credit_licence_and_originals():
    title, credit, licence, originals = real.opensfx_sound(
        '"Toyland: Toy factory (1)". Original "ae_51_m.wav" by "Sedi", "vial-02.wav" by Jan '
        'Schupke aka "Vehicle" and "whoosh06.wav" by Richard Frohlich aka "FreqMan". Edited by '
        '"Wuzzy". License: Creative Commons Attribution 3.0.')
    assert title == "Toyland: Toy factory (1)" and licence == "CC-BY-3.0"
    assert originals == ["ae_51_m.wav", "vial-02.wav", "whoosh06.wav"]
    assert credit.startswith('Original "ae_51_m.wav" by "Sedi"') and "License" not in credit
    assert real.opensfx_sound('"Helicopter". Original "h.wav" by "l". License: Creative Commons '
                              'Attribution-ShareAlike 3.0 Unported.')[2] == "CC-BY-SA-3.0"
    assert real.opensfx_sound('"Cow". By J. License: Creative Commons Zero 1.0.')[2:] == \
        ("CC0-1.0", [])


def test_opensfx_sounds_edited_from_one_original_are_one_recording(tmp_path):
    import gzip
    where = tmp_path / real.PACKAGES["openttd-opensfx"][1]
    where.parent.mkdir(parents=True)
    by = 'Edited by "Wuzzy". License: Creative Commons Attribution 3.0 Unported.'
    where.write_bytes(_cat([
        (f'"Wind". Original "wind1.wav" by "Anton". {by}', "src/wav/osfx_52.wav", _wav(seed=1)),
        (f'"Bus". Original "bus.mp3" by "s". {by}', "src/wav/osfx_25.wav", _wav(seed=2)),
        (f'"Heavy wind". Original "wind1.wav" by "Anton". {by}', "src/wav/osfx_57.wav",
         _wav(seed=3)),
        (f'"Bus and horn". Original "bus.mp3" by "s" and "horn.wav" by "m". {by}',
         "src/wav/osfx_26.wav", _wav(seed=4)),
        (f'"Horn". Original "horn.wav" by "m". {by}', "src/wav/osfx_35.wav", _wav(seed=5)),
        ('"Beep". By Janis Lukss. License: Creative Commons Zero 1.0.', "src/wav/osfx_21.wav",
         _wav(seed=6))]))
    doc = tmp_path / "usr/share/doc/openttd-opensfx"
    doc.mkdir(parents=True)
    with gzip.open(doc / "readme.txt.gz", "wt") as f:
        f.write('* "Anton" from "freesound.org"\n    * wind1.wav\n'
                '      https://freesound.org/people/Anton/sounds/2690/\n')
    found = real.package_clips("openttd-opensfx", tmp_path)
    assert [f.path for f in found][:2] == ["opensfx.cat/osfx_52-wind.wav",
                                           "opensfx.cat/osfx_25-bus.wav"]
    rec = {f.path.split("/")[1][:7]: f.recording for f in found}
    assert rec["osfx_52"] == rec["osfx_57"] == "opensfx.cat/wind1-wav"
    assert rec["osfx_25"] == rec["osfx_26"] == rec["osfx_35"]  # bus, bus + horn, horn
    assert rec["osfx_21"] == "opensfx.cat/osfx-21"
    wind = found[0]
    assert wind.licence == "CC-BY-3.0" and wind.read() == real.cat_sounds(
        where.read_bytes())[0].wav
    assert wind.origin == ('"Wind" (OpenSFX osfx_52): Original "wind1.wav" by "Anton". Edited by '
                           '"Wuzzy". https://freesound.org/people/Anton/sounds/2690/')
    assert found[-1].licence == "CC0-1.0"


def _rcc(files: dict[str, tuple[bytes, int]], version: int = 3) -> bytes:
    """A Qt resource archive as `rcc -binary` lays it out: path -> (stored bytes, flags), the
    stored bytes already compressed where flags say so."""
    tree: dict = {}
    for path, entry in files.items():
        *dirs, name = path.split("/")
        node = tree
        for d in dirs:
            node = node.setdefault(d, {})
        node[name] = entry
    names, name_at, data = b"", {}, b""
    nodes = []  # [name, is_dir, children or entry]; breadth first, siblings contiguous

    def name_offset(name: str) -> int:
        nonlocal names
        if name not in name_at:
            name_at[name] = len(names)
            names += len(name).to_bytes(2, "big") + (0).to_bytes(4, "big") \
                + name.encode("utf-16-be")
        return name_at[name]
    nodes.append(["", True, tree])
    i = 0
    out_nodes = []
    while i < len(nodes):
        name, is_dir, content = nodes[i]
        if is_dir:
            first = len(nodes)
            for child, sub in content.items():
                nodes.append([child, isinstance(sub, dict), sub])
            body = (2).to_bytes(2, "big") + len(content).to_bytes(4, "big") \
                + first.to_bytes(4, "big")
        else:
            stored, flags = content
            body = flags.to_bytes(2, "big") + (0).to_bytes(4, "big") + len(data).to_bytes(4, "big")
            data += len(stored).to_bytes(4, "big") + stored
        stamp = b"" if version == 1 else bytes(8)
        out_nodes.append(name_offset(name).to_bytes(4, "big") + body + stamp)
        i += 1
    header = 20 if version < 3 else 24
    tree_at = header
    data_at = tree_at + sum(len(n) for n in out_nodes)
    names_at = data_at + len(data)
    head = b"qres" + version.to_bytes(4, "big") + tree_at.to_bytes(4, "big") \
        + data_at.to_bytes(4, "big") + names_at.to_bytes(4, "big")
    if version >= 3:
        head += bytes(4)
    return head + b"".join(out_nodes) + data + names


def _qcompress(data: bytes) -> bytes:
    import zlib
    return len(data).to_bytes(4, "big") + zlib.compress(data)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_qt_resource_archive_gives_its_files_zlib_ones_uncompressed(version):
    dog, cow = _wav(seed=1), _wav(seed=2)
    data = _rcc({"gcompris/src/a/dog.wav": (dog, 0), "gcompris/src/a/cow.wav": (_qcompress(cow), 1),
                 "gcompris/src/b/qmldir": (b"module b\n", 0)}, version)
    files = real.rcc_files(data)
    assert sorted(files) == ["gcompris/src/a/cow.wav", "gcompris/src/a/dog.wav",
                             "gcompris/src/b/qmldir"]
    assert files["gcompris/src/a/dog.wav"]() == dog
    assert files["gcompris/src/a/cow.wav"]() == cow
    assert files["gcompris/src/b/qmldir"]() == b"module b\n"
    with pytest.raises(ValueError, match="qres"):
        real.rcc_files(b"RIFF" + data[4:])


def test_a_zstd_entry_of_a_qt_resource_archive_is_read_or_refused():
    wav = _wav(seed=3)
    try:
        import zstandard
    except ImportError:
        read = real.rcc_files(_rcc({"x/pig.wav": (b"\x28\xb5\x2f\xfd not really", 4)}))["x/pig.wav"]
        with pytest.raises(real.CannotRead, match="zstd"):
            read()
    else:
        stored = zstandard.ZstdCompressor().compress(wav)
        assert real.rcc_files(_rcc({"x/pig.wav": (stored, 4)}))["x/pig.wav"]() == wav


COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2014 The Team
License: GPL-3+

Files: src/activities/explore_farm_animals/resource/animals/*
       src/activities/melody/resource/*
Copyright: 2000, 2008 Bruno Coudoin and others
           Franck Doucet
License: GPL-3

Files: src/activities/instruments/resource/drum_kit.ogg
Copyright: ocea
License: CC-sampling-plus-1.0
Comment: http://www.freesound.org/samplesViewSingle.php?id=29534

Files: src/activities/canal_lock/resource/water_fill.wav
Copyright: inchadney
License: CC-BY-3.0
Comment: https://www.freesound.org/people/inchadney/sounds/34681/

License: GPL-3+
 On Debian systems ...
"""


def test_debian_copyright_stanzas_govern_files_last_match_first():
    stanzas = real.copyright_stanzas(COPYRIGHT)
    assert [s.licence for s in stanzas] == ["GPL-3+", "GPL-3", "CC-sampling-plus-1.0", "CC-BY-3.0"]
    of = lambda p: real.copyright_of(stanzas, p)  # noqa: E731
    assert of("src/activities/explore_farm_animals/resource/animals/dog.ogg").licence == "GPL-3"
    assert of("src/activities/explore_farm_animals/resource/animals/dog.ogg").holders == \
        ["2000, 2008 Bruno Coudoin and others", "Franck Doucet"]
    assert of("src/core/resource/sounds/bleep.wav").licence == "GPL-3+"
    water = of("src/activities/canal_lock/resource/water_fill.wav")
    assert water.credit() == "inchadney; https://www.freesound.org/people/inchadney/sounds/34681/"
    assert real.copyright_of(stanzas[1:], "debian/control") is None
    crowd = real.Stanza(["*"], "GPL-3+", [f"20{i:02d} Dev {i}" for i in range(12)], [])
    assert crowd.credit() == ("2000 Dev 0; 2001 Dev 1; 2002 Dev 2; "
                              "and 9 more in the package's debian/copyright")
    assert not real.licence_clean(of("src/activities/instruments/resource/drum_kit.ogg").licence)
    for clean in ("GPL-3", "CC-BY-3.0 and CC0-1.0", "free-art", "public-domain", "CC-BY-SA-4.0"):
        assert real.licence_clean(clean), clean
    for unclean in ("CC-BY-NC-3.0", "CC0-1.0 and CC-BY-NC-SA-3.0", "CC-BY-ND-4.0", "", "unknown"):
        assert not real.licence_clean(unclean), unclean


def test_a_package_of_qt_resource_archives_is_matched_with_per_file_licences(tmp_path):
    """A gcompris-qt-data of our own making (dpkg-deb -b, no network): its .rcc files read, each
    clip's licence from debian/copyright, an unclean one and an unreadable one counted."""
    import shutil
    import subprocess
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not installed")
    pkg = tmp_path / "pkg"
    rcc = pkg / "usr/share/gcompris-qt/rcc"
    rcc.mkdir(parents=True)
    animals = "gcompris/src/activities/explore_farm_animals/resource/animals"
    zstd = not _has_zstandard()  # then a zstd entry cannot be read, and is counted
    (rcc / "explore_farm_animals.rcc").write_bytes(_rcc({
        f"{animals}/dog.wav": (_wav(seed=1), 0),
        f"{animals}/cow.wav": (_qcompress(_wav(seed=2)), 1),
        f"{animals}/sheep.wav": (_wav(seed=1), 0),  # the dog's bytes again
        **({f"{animals}/pig.wav": (b"\x28\xb5\x2f\xfd", 4)} if zstd else {})}))
    (rcc / "instruments.rcc").write_bytes(_rcc({
        "gcompris/src/activities/instruments/resource/drum_kit.ogg": (_wav(seed=3), 0)}))
    (rcc / "core.rcc").write_bytes(_rcc({"gcompris/src/core/resource/sounds/bleep.wav":
                                         (_wav(seed=4), 0)}))
    doc = pkg / "usr/share/doc/gcompris-qt-data"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN/control").write_text(
        "Package: gcompris-qt-data\nVersion: 0.1-1\nArchitecture: all\n"
        "Maintainer: hark tests <hark@example.org>\nDescription: test package\n")
    debs = tmp_path / "debs"
    debs.mkdir()
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg),
                    str(debs / "gcompris-qt-data_0.1-1_all.deb")], check=True, capture_output=True)
    out = tmp_path / "corpus"
    summary = real.build(out, [], debs, [16000], packages=["gcompris-qt-data"], speech=False)
    assert summary["sources"]["gcompris-qt-data"] == {
        "matched": 2, "duplicate": 1, "excluded": 1, "not licence-clean": 1,
        **({"undecodable": 1} if zstd else {})}
    rows = list(csv.DictReader(open(out / "clips.csv")))
    assert {r["category"] for r in rows} == {"dog", "cow"}
    assert {r["licence"] for r in rows} == {"GPL-3"}
    credits = list(csv.DictReader(open(out / "CREDITS.csv")))
    assert {c["origin"] for c in credits} == {"2000, 2008 Bruno Coudoin and others; Franck Doucet"}
    assert len(credits) == 2
    attribution = (out / "ATTRIBUTION.md").read_text()
    assert "gcompris-qt-data" in attribution and "GPL-3 (2)" in attribution
    assert (out / "licences" / "gcompris-qt-data.copyright").exists()


def _has_zstandard() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True
