import json

import numpy as np
import soundfile as sf
import torch

from hark_export.data import (BOS, EOS, PAD, SPECIALS, UNK, Vocab, collate, detect_layout,
                              load_split, normalise_caption, read_audio)


def _wav(path, seconds=0.5, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros((int(16000 * seconds), channels), np.float32), 16000)


def test_clotho_layout_reads_five_captions_per_file(tmp_path):
    header = "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
    for folder, name in (("development", "development"), ("validation", "validation"),
                         ("evaluation", "evaluation")):
        rows = [f"{name}_{i}.wav,A dog barks.,Dog barking!,a dog,the dog barks,barking {i}\n"
                for i in range(2)]
        (tmp_path / f"clotho_captions_{name}.csv").write_text(header + "".join(rows))
        for i in range(2):
            _wav(tmp_path / folder / f"{name}_{i}.wav")
    assert detect_layout(tmp_path) == "clotho"
    train = load_split(tmp_path, "train")
    assert [c.id for c in train] == ["development_0.wav", "development_1.wav"]
    assert train[0].captions[0] == "A dog barks." and len(train[0].captions) == 5
    assert train[1].audio == tmp_path / "development" / "development_1.wav"
    assert load_split(tmp_path, "test")[0].audio.parent.name == "evaluation"


def test_audiocaps_layout_groups_captions_by_clip_and_skips_missing_audio(tmp_path, capsys):
    rows = ["audiocap_id,youtube_id,start_time,caption",
            "1,abc,30,A car passes by", "2,abc,30,Traffic noise",
            "3,def,0,Birds chirp", "4,gone,10,Never downloaded"]
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.csv").write_text("\n".join(rows) + "\n")
        _wav(tmp_path / split / "abc_30.wav")
        _wav(tmp_path / split / "Ydef.wav")
    assert detect_layout(tmp_path) == "audiocaps"
    clips = load_split(tmp_path, "val")
    assert [(c.id, c.captions) for c in clips] == [
        ("abc_30", ["A car passes by", "Traffic noise"]), ("def_0", ["Birds chirp"])]
    assert clips[1].audio.name == "Ydef.wav"
    assert "1 clips without audio skipped" in capsys.readouterr().out


def test_generic_csv_and_jsonl_manifests_resolve_audio_relative_to_the_manifest(tmp_path):
    _wav(tmp_path / "clips" / "a.wav")
    (tmp_path / "train.csv").write_text("audio,caption_1,caption_2\nclips/a.wav,one,two\n")
    (tmp_path / "val.jsonl").write_text(json.dumps({"audio": "clips/a.wav", "caption": "x"}) + "\n")
    assert detect_layout(tmp_path) == "manifest"
    (train,) = load_split(tmp_path, "train")
    assert train.audio == tmp_path / "clips" / "a.wav" and train.captions == ["one", "two"]
    assert load_split(tmp_path, "val")[0].captions == ["x"]


def test_multichannel_audio_is_averaged_to_mono(tmp_path):
    stereo = np.stack([np.full(800, 0.5), np.full(800, -0.1)], axis=1).astype(np.float32)
    sf.write(tmp_path / "s.wav", stereo, 8000, subtype="FLOAT")
    mono, sr = read_audio(tmp_path / "s.wav")
    assert sr == 8000 and mono.shape == (800,) and np.allclose(mono, 0.2)


def test_captions_are_lowercased_and_stripped_of_punctuation():
    text = "  A Dog's bark -- loud, then QUIET!! "
    assert normalise_caption(text) == "a dog's bark loud then quiet"
    assert normalise_caption("'quoted' words") == "quoted words"


def test_vocabulary_keeps_frequent_words_after_the_special_tokens(tmp_path):
    vocab = Vocab.build(["a dog barks", "a dog", "A cat!"], min_freq=2)
    assert vocab.itos == list(SPECIALS) + ["a", "dog"]
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert vocab.encode("a cat", max_len=10) == [BOS, 4, UNK, EOS]
    assert vocab.encode("a dog a dog a dog", max_len=4) == [BOS, 4, 5, EOS]
    assert vocab.decode([4, 5, EOS, 4]) == "a dog"
    vocab.save(tmp_path / "vocab.txt")
    assert Vocab.load(tmp_path / "vocab.txt").itos == vocab.itos


def test_collate_pads_mels_and_captions_and_maps_captions_to_clips():
    a = (torch.ones(4, 5), [torch.tensor([1, 7, 2]), torch.tensor([1, 2])], torch.tensor([1.0, 0]))
    b = (torch.ones(4, 3), [torch.tensor([1, 8, 9, 2])], torch.tensor([0.0, 1]))
    mel, tokens, clip_index, tags = collate([a, b])
    assert mel.shape == (2, 4, 5) and mel[1, :, 3:].abs().sum() == 0
    assert tokens.tolist() == [[1, 7, 2, 0], [1, 2, 0, 0], [1, 8, 9, 2]]
    assert clip_index.tolist() == [0, 0, 1]
    assert tags.tolist() == [[1, 0], [0, 1]]
