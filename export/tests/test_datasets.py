"""Bigger data: the WavCaps layout, several datasets with weights, streamed features."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from hark_export.config import TrainConfig, tiny
from hark_export.data import (Datasets, StreamedFeatures, collate, default_frontend,
                              detect_layout, load_split, logmel, parse_source)
from hark_export.train import Prepared, caption_loss, train


def _wavcaps(root, tiny_synth):
    """A WavCaps-shaped folder: two JSON files (FreeSound ids bare, AudioSet ids with .wav)
    and FLAC audio under their own folders, plus one entry whose audio is missing."""
    scenes = [json.loads(l) for l in (tiny_synth / "train.jsonl").read_text().splitlines()]
    fsd, audioset = [], []
    for i, scene in enumerate(scenes[:6]):
        samples, sr = sf.read(tiny_synth / scene["audio"], dtype="float32")
        if i < 4:
            key, folder, entries = str(1000 + i), "FreeSound_flac", fsd
            entry_id = key
        else:
            key, folder, entries = f"Yabc{i}", "AudioSet_SL_flac", audioset
            entry_id = key + ".wav"
        (root / "waveforms" / folder).mkdir(parents=True, exist_ok=True)
        sf.write(root / "waveforms" / folder / f"{key}.flac", samples, sr)
        entries.append({"id": entry_id, "caption": scene["captions"][0], "audio": "wav_path",
                        "duration": len(samples) / sr})
    fsd.append({"id": "999999", "caption": "lost audio", "audio": "wav_path"})
    (root / "json_files" / "FreeSound").mkdir(parents=True)
    (root / "json_files" / "AudioSet_SL").mkdir(parents=True)
    (root / "json_files" / "FreeSound" / "fsd_final.json").write_text(
        json.dumps({"num_captions_per_audio": 1, "data": fsd}))
    (root / "json_files" / "AudioSet_SL" / "as_final.json").write_text(
        json.dumps({"num_captions_per_audio": 1, "data": audioset}))
    return scenes[:6]


def _labelled(root, tiny_synth):
    """The tiny synthetic set as a manifest with tags (its sounds) and a labels.txt."""
    root.mkdir()
    labels = set()
    for split in ("train", "val", "test"):
        rows = []
        for line in (tiny_synth / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            row["audio"] = str(tiny_synth / row["audio"])
            row["tags"] = [s.strip() for s in row["scene"].replace("+", ">").split(">")]
            labels.update(row["tags"])
            rows.append(json.dumps(row))
        (root / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    (root / "labels.txt").write_text("\n".join(sorted(labels)) + "\n")
    return root


def test_wavcaps_json_is_read_with_audio_found_by_id_and_is_training_data_only(
        tmp_path, tiny_synth, capsys):
    scenes = _wavcaps(tmp_path, tiny_synth)
    assert detect_layout(tmp_path) == "wavcaps"
    clips = load_split(tmp_path, "train")
    assert "1 entries without audio skipped" in capsys.readouterr().out
    assert sorted(c.captions[0] for c in clips) == sorted(s["captions"][0] for s in scenes)
    by_id = {c.id: c for c in clips}
    assert by_id["as_final/Yabc4"].audio == tmp_path / "waveforms/AudioSet_SL_flac/Yabc4.flac"
    assert by_id["fsd_final/1000"].audio.suffix == ".flac"
    assert load_split(tmp_path, "val") == [] and load_split(tmp_path, "test") == []
    # A manifest folder that happens to hold other JSON (scenes.json) stays a manifest.
    assert detect_layout(tiny_synth) == "manifest"


def test_a_data_source_may_carry_a_weight():
    assert parse_source("data/clotho") == (parse_source("data/clotho:1")[0], 1.0)
    assert parse_source("data/wavcaps:0.25")[1] == 0.25
    assert parse_source("data/odd:name")[0].name == "odd:name"
    with pytest.raises(ValueError, match="weight must be a number > 0"):
        parse_source("data/wavcaps:0")


def test_datasets_join_splits_and_labels_and_weigh_their_training_clips(tmp_path, tiny_synth):
    _wavcaps(tmp_path / "wavcaps", tiny_synth)
    labelled = _labelled(tmp_path / "labelled", tiny_synth)
    joined = Datasets([str(labelled), f"{tmp_path / 'wavcaps'}:3"])
    synth_train = load_split(labelled, "train")
    assert len(joined.splits["train"]) == len(synth_train) + 6
    assert joined.splits["val"] == load_split(labelled, "val")
    assert joined.labels == (labelled / "labels.txt").read_text().splitlines()
    assert joined.weights == [1.0] * len(synth_train) + [3.0] * 6 and joined.weighted
    tagged = [c.tagged for c in joined.splits["train"]]
    assert tagged == [True] * len(synth_train) + [False] * 6
    with pytest.raises(ValueError, match="validation split"):
        Datasets([str(tmp_path / "wavcaps")])


def test_clips_of_a_dataset_without_labels_teach_the_tag_head_nothing(tmp_path, tiny_synth):
    _wavcaps(tmp_path / "wavcaps", tiny_synth)
    cfg = TrainConfig(data=str(_labelled(tmp_path / "labelled", tiny_synth)), more_data=[str(tmp_path / "wavcaps")],
                      out=str(tmp_path / "run"), arch="baseline", cache=str(tmp_path / "cache"),
                      model=tiny()["baseline"], batch_size=4)
    prep = Prepared(cfg)
    data = prep.datasets["train"]
    items = [data[i] for i in range(len(data) - 4, len(data))]  # the last 4 are WavCaps
    assert all(torch.isnan(t).all() for _, _, t in items)
    labelled = [data[i] for i in range(4)]
    torch.manual_seed(0)
    mel, tokens, index, tags = collate(labelled + items)
    mixed = caption_loss(prep.model.eval(), mel, tokens, index, 0.0, tags=tags, tag_weight=1.0)
    assert torch.isfinite(mixed)
    # The tag term of the mix is the labelled clips' alone (over the batch's clip count).
    plain = caption_loss(prep.model, mel, tokens, index, 0.0)
    known = collate(labelled)
    tag_only = torch.nn.functional.binary_cross_entropy_with_logits(
        prep.model.tag_logits(prep.model.encode(known[0])), known[3], reduction="sum") / 8
    assert torch.isclose(mixed - plain, tag_only, atol=1e-4)


def test_the_single_tag_loss_is_a_balanced_softmax_over_one_category_clips(tmp_path, tiny_synth):
    cfg = TrainConfig(data=str(_labelled(tmp_path / "labelled", tiny_synth)), out=str(tmp_path / "run"),
                      arch="baseline", cache=str(tmp_path / "cache"), model=tiny()["baseline"])
    prep = Prepared(cfg)
    data = prep.datasets["train"]
    mel, tokens, index, tags = collate([data[i] for i in range(8)])
    lone = tags.sum(dim=1) == 1
    assert 0 < lone.sum() < 8  # the tiny set has scenes of one sound and of several
    model, balance = prep.model.eval(), torch.rand(tags.shape[1]) + 0.5
    plain = caption_loss(model, mel, tokens, index, 0.0)
    single = caption_loss(model, mel, tokens, index, 0.0, tags=tags, single_tag_weight=2.0,
                          tag_balance=balance)
    logits = model.tag_logits(model.encode(mel))[lone]
    expected = torch.nn.functional.cross_entropy(logits, tags[lone].argmax(dim=1), weight=balance)
    assert torch.isclose(single - plain, 2.0 * expected, atol=1e-4)


def test_streamed_features_read_only_a_crop_of_a_long_file(tmp_path):
    rate = 16000
    t = np.arange(rate * 60) / rate
    sweep = (0.3 * np.sin(2 * np.pi * (200 + 30 * t) * t)).astype(np.float32)
    sf.write(tmp_path / "long.flac", sweep, rate)
    sf.write(tmp_path / "long.ogg", sweep, rate)
    frontend = default_frontend()
    head = StreamedFeatures(frontend, max_seconds=2.0).get(tmp_path / "long.flac")
    decoded, _ = sf.read(tmp_path / "long.flac", dtype="float32")
    assert np.array_equal(head, logmel(decoded[: 2 * rate], rate,
                                       StreamedFeatures(frontend).frontend))
    torch.manual_seed(1)
    crops = [StreamedFeatures(frontend, 2.0, random_crop=True).get(tmp_path / "long.ogg")
             for _ in range(2)]
    assert crops[0].shape == head.shape and not np.allclose(crops[0], crops[1])
    whole = StreamedFeatures(frontend).get(tmp_path / "long.flac")
    assert whole.shape[1] > 25 * head.shape[1]


def test_a_streamed_run_trains_without_caching_features(tmp_path, tiny_synth):
    cfg = TrainConfig(data=str(tiny_synth), out=str(tmp_path / "run"), arch="baseline",
                      cache=str(tmp_path / "cache"), model=tiny()["baseline"], batch_size=8,
                      epochs=1, stream=True, max_seconds=1.0, evaluate_test=False)
    summary = train(cfg)
    assert summary["best_epoch"] == 1
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ValueError, match="needs --stream"):
        Prepared(TrainConfig(data=str(tiny_synth), max_seconds=1.0))
