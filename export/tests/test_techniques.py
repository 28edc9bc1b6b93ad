import csv
from pathlib import Path

import torch

from hark_export.config import TrainConfig, tiny
from hark_export.data import EOS, PAD, Clip, Vocab
from hark_export.metrics import CiderD
from hark_export.techniques import (balanced_weights, curriculum_indices, filter_captions,
                                    single_tag_balance, token_weights, unlikelihood_loss)
from hark_export.train import load_checkpoint, train

REFS = [["a dog barks", "a dog is barking loudly", "dog barking"],
        ["rain falls on a roof", "it is raining", "heavy rain falls"],
        ["a man speaks", "someone talks", "a man is speaking"]]


def test_cider_d_matches_coco_caption_on_the_same_references():
    from pycocoevalcap.cider.cider import Cider
    hyps = ["a dog barks loudly", "rain falls", "a woman speaks"]
    _, coco = Cider().compute_score(dict(enumerate(REFS)), {i: [h] for i, h in enumerate(hyps)})
    ours = CiderD(REFS)
    for h, r, c in zip(hyps, REFS, coco):
        assert abs(ours.score(h, r) - c) < 1e-6
    assert ours.score("a dog barks", REFS[0]) > ours.score("a man speaks", REFS[0])


def _clip(i, captions, tags):
    return Clip(str(i), Path(f"{i}.wav"), captions, "", tags)


def test_caption_filter_drops_short_and_reordered_duplicates_but_keeps_one():
    clips, dropped = filter_captions([
        _clip(0, ["a dog barks", "dog barks", "barks a dog", "a dog barks twice"], ["dog"]),
        _clip(1, ["rain"], ["rain"])])
    assert clips[0].captions == ["a dog barks", "a dog barks twice"]
    assert clips[1].captions == ["rain"]  # nothing long enough: the first stays
    assert dropped == 2


def test_balanced_weights_draw_each_category_about_equally():
    clips = [_clip(i, ["x y z"], ["dog"]) for i in range(90)] + \
            [_clip(90 + i, ["x y z"], ["cat"]) for i in range(10)] + [_clip(100, ["x y z"], [])]
    w = balanced_weights(clips)
    draws = torch.multinomial(w, 20000, replacement=True, generator=torch.Generator().manual_seed(0))
    cats = [clips[i].tags[0] if clips[i].tags else "" for i in draws.tolist()]
    assert abs(cats.count("dog") / cats.count("cat") - 1) < 0.1
    assert w[100] > 0


def test_single_tag_balance_weighs_each_lone_category_the_same():
    clips = [_clip(i, [], ["dog"]) for i in range(6)] + [_clip(6, [], ["cat"]),
             _clip(7, [], ["dog", "cat"]), _clip(8, [], [])]
    w = single_tag_balance(clips, ["cat", "dog", "frog"])
    assert torch.allclose(w, torch.tensor([3.5, 3.5 / 6, 1.0]))  # mean lone count 3.5


def test_curriculum_grows_from_single_sounds_to_everything():
    clips = [_clip(0, [], ["dog"]), _clip(1, [], ["dog", "rain"]),
             _clip(2, [], ["dog", "rain", "cat"]), _clip(3, [], [])]
    assert curriculum_indices(clips, 0, 2) == [0, 3]
    assert curriculum_indices(clips, 1, 2) == [0, 1, 3]
    assert curriculum_indices(clips, 2, 2) == [0, 1, 2, 3]


def test_rare_words_weigh_more_and_the_mean_training_token_weighs_one():
    captions = ["a dog barks"] * 9 + ["a cat meows"]
    vocab = Vocab.build(captions)
    w = token_weights(vocab, captions, 0.5)
    assert w[vocab.stoi["meows"]] > w[vocab.stoi["barks"]] > 0
    assert w[PAD] == 0 and w[EOS] > 0
    tokens = [vocab.stoi[x] for c in captions for x in c.split()] + [EOS] * len(captions)
    assert abs(float(w[tokens].mean()) - 1) < 1e-5


def test_unlikelihood_pushes_down_only_words_already_said():
    # Targets "dog barks dog <eos>" (ids 5 6 5 2); at every position the model puts 0.9 on
    # word 5 ("dog"), so after the first "dog" it wants to repeat it where it is not the target.
    targets = torch.tensor([[5, 6, 5, EOS, PAD]])
    logits = torch.full((1, 5, 8), 0.0)
    logits[..., 5] = 5.0
    logits.requires_grad_(True)
    loss = unlikelihood_loss(logits, targets)
    loss.backward()
    p = torch.softmax(logits.detach(), 2)[0, 0, 5]
    # Candidates: position 1 {5}, position 2 {6}, position 3 {5, 6}; specials never count.
    p6 = torch.softmax(logits.detach(), 2)[0, 0, 6]
    expected = -(2 * torch.log1p(-p) + 2 * torch.log1p(-p6)) / 4
    assert abs(loss.item() - float(expected)) < 1e-5
    assert logits.grad[0, 1, 5] > 0 and logits.grad[0, 2, 5] < 0  # down where repeated only
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 4].abs().sum() == 0


def test_every_technique_trains_and_scst_keeps_the_best_validation_cider(tiny_synth, tmp_path):
    cfg = TrainConfig(data=str(tiny_synth), out=str(tmp_path / "run"), arch="attention",
                      cache=str(tmp_path.parent / "cache"), model=tiny()["attention"],
                      batch_size=8, epochs=3, lr=3e-3, balance=True, filter_captions=True,
                      curriculum=1, rare_word_weight=0.5, unlikelihood=0.5,
                      scst_epochs=2, scst_samples=3)
    summary = train(cfg)
    rows = list(csv.DictReader(open(tmp_path / "run" / "scst.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(float(r["sampled_reward"]) > 0 for r in rows)
    model, _, _, ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    best = max(float(r["val_cider_d"]) for r in rows)
    if "scst_epoch" in ckpt:  # an SCST epoch beat the cross-entropy model: it is kept
        assert abs(ckpt["val_cider_d"] - best) < 1e-9
    assert summary["test"]["clips"] > 0


def test_scst_steps_raise_the_reward_of_a_batch(tiny_synth, tmp_path):
    from hark_export.techniques import SCST, ClipsWithReferences, scst_collate
    from hark_export.train import Prepared, make_optimizer
    torch.manual_seed(0)
    prep = Prepared(TrainConfig(data=str(tiny_synth), out=str(tmp_path / "run"),
                                arch="attention", cache=str(tmp_path.parent / "cache"),
                                model=tiny()["attention"]))
    data = ClipsWithReferences(prep.datasets["train"])
    x, refs = scst_collate([data[i] for i in range(8)])
    scst = SCST(prep.vocab, [c.captions for c in prep.datasets["train"].clips], 4,
                prep.model_config.max_len)
    model = prep.model.eval()
    optimizer = make_optimizer(model, 1e-2, 0.0)
    rewards = []
    for _ in range(40):
        loss, sampled, _ = scst.loss(model, x, refs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        rewards.append(sampled)
    assert sum(rewards[-10:]) > 2 * sum(rewards[:10]), rewards
