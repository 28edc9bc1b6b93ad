"""The reference decoder must be the daemon's (daemon/src/decode/): these are the Rust unit
tests' scenarios, with the same expected values, plus the link to the PyTorch models."""

import math

import numpy as np
import pytest
import torch

from hark_export.config import model_config
from hark_export.decode import (DecodeParams, SpecialTokens, SplitMix64, TorchStepper, decode,
                                draw, fluent, log_softmax, process_row)
from hark_export.model import build_model, greedy_decode

SPECIAL = SpecialTokens(bos=1, eos=2, pad=0)
NEG = -np.inf


class Scripted:
    """A stepper whose next-token distribution is a function of the prefix (bos included);
    the state is the prefix of each hypothesis."""

    def __init__(self, next_probs, vocab):
        self.next, self.n = next_probs, vocab

    def init(self, batch):
        return [[] for _ in range(batch)]

    def step(self, tokens, state):
        state = [prefix + [t] for prefix, t in zip(state, tokens)]
        with np.errstate(divide="ignore"):
            return np.log(np.array([self.next(p) for p in state], np.float32)), state

    def select(self, state, rows):
        return [list(state[r]) for r in rows]

    def vocab(self):
        return self.n


def garden_path(prefix):
    """After bos: a .5, b .4, eos .1. After a: eos .3, a .35, b .35. After b: eos .9."""
    return {(1,): [0, 0, .1, .5, .4], (1, 3): [0, 0, .3, .35, .35],
            (1, 4): [0, 0, .9, .05, .05]}.get(tuple(prefix), [0, 0, 1, 0, 0])


def run(strategy, length_penalty=1.0, alternatives=0, **kw):
    p = DecodeParams(strategy=strategy, length_penalty=length_penalty,
                     alternatives=alternatives, min_len=0, **kw)
    return [(h.tokens, h.logprob) for h in decode(Scripted(garden_path, 5), SPECIAL, p)]


def test_log_softmax_of_equal_logits_is_uniform():
    np.testing.assert_allclose(log_softmax(np.full(4, 3.0, np.float32)), math.log(0.25), atol=1e-6)


def test_pad_and_bos_are_never_generated():
    row = process_row(np.zeros(5, np.float32), [], DecodeParams(min_len=0), SPECIAL)
    assert row[0] == NEG and row[1] == NEG
    assert abs(row[3] - math.log(1 / 3)) < 1e-6


def test_end_token_is_banned_before_min_len_and_forced_at_max_len():
    p = DecodeParams(min_len=2, max_len=4)
    assert process_row(np.zeros(5, np.float32), [3], p, SPECIAL)[2] == NEG
    row = process_row(np.array([0, 0, -5, 9, 9], np.float32), [3, 4, 3], p, SPECIAL)
    assert row[2] == 0.0 and row[3] == NEG


def test_no_repeat_ngram_bans_the_token_that_would_repeat_a_bigram():
    row = process_row(np.zeros(6, np.float32), [3, 4, 5, 3],
                      DecodeParams(min_len=0, no_repeat_ngram=2), SPECIAL)
    assert row[4] == NEG and np.isfinite(row[5]) and np.isfinite(row[3])


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    row = np.array([0, 0, NEG, 2, -1, 2], np.float32)
    row = process_row(row, [3, 4, 3], DecodeParams(min_len=0, repetition_penalty=2.0), SPECIAL)
    assert abs(row[5] - row[3] - 1) < 1e-6 and abs(row[3] - row[4] - 3) < 1e-6


def test_greedy_follows_the_locally_best_token_into_the_garden_path():
    (tokens, logprob), = run("greedy")
    assert tokens == [3, 3] and abs(logprob - math.log(0.5 * 0.35)) < 1e-5


def test_beam_of_two_finds_the_globally_best_caption():
    out = run("beam", length_penalty=0.0, alternatives=1, beam_size=2)
    assert out[0][0] == [4] and abs(out[0][1] - math.log(0.36)) < 1e-5
    assert out[1][0] == [3, 3] and abs(out[1][1] - math.log(0.175)) < 1e-5


def test_scores_are_length_normalised_counting_the_end_token_and_ranked():
    p = DecodeParams(strategy="beam", beam_size=3, alternatives=5)
    out = decode(Scripted(garden_path, 5), SPECIAL, p)
    assert len(out) >= 2
    for h in out:
        assert abs(h.score - h.logprob / (len(h.tokens) + 1)) < 1e-6
    assert all(a.score >= b.score for a, b in zip(out, out[1:]))


def test_diverse_beam_groups_start_with_different_tokens():
    out = run("diverse_beam", length_penalty=0.0, alternatives=1, beam_size=2, groups=2,
              diversity_penalty=10.0)
    assert {t[0] for t, _ in out} == {3, 4}
    b = next(lp for t, lp in out if t[0] == 4)
    assert abs(b - math.log(0.36)) < 1e-5  # the model's log-prob, without the penalty


def test_beam_state_rows_follow_their_hypotheses():
    def next_probs(prefix):
        if len(prefix) >= 3 and prefix[1] == 4:
            assert prefix[2] == 3, "state of a 'b' hypothesis got another row"
        if len(prefix) == 1:
            return [0, 0, 0, .5, .5]
        if len(prefix) == 2:
            return [0, 0, 0, 1, 0] if prefix[1] == 4 else [0, 0, 0, 0, 1]
        return [0, 0, 1, 0, 0]
    p = DecodeParams(strategy="beam", beam_size=2, alternatives=1)
    assert sorted(h.tokens for h in decode(Scripted(next_probs, 5), SPECIAL, p)) == [[3, 4], [4, 3]]


def test_splitmix64_draws_the_reference_sequence():
    # SplitMix64 (Steele et al. 2014) from seed 0 first yields 0xE220A8397B1DCDAF.
    assert SplitMix64(0).next_f64() == (0xE220A8397B1DCDAF >> 11) / 2.0 ** 53


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    lp = np.log(np.array([0, 0, 0, .5, .3, .2], np.float32), where=[0, 0, 0, 1, 1, 1],
                out=np.full(6, NEG, np.float32))
    rng = SplitMix64(7)
    counts = np.bincount([draw(lp, 1.0, 0, 0.7, rng) for _ in range(4000)], minlength=6)
    assert counts[5] == 0 and abs(counts[3] / 4000 - 0.625) < 0.03


def test_top_k_one_is_greedy_and_low_temperature_concentrates_the_mass():
    rng = SplitMix64(1)
    lp = np.log(np.array([1e-30, 1e-30, .1, .45, .45], np.float32))
    lp[:2] = NEG
    assert all(draw(lp, 1.0, 1, 1.0, rng) == 3 for _ in range(100))
    lp = np.array([NEG, NEG, math.log(.2), math.log(.8)], np.float32)
    assert sum(draw(lp, 0.1, 0, 1.0, rng) == 3 for _ in range(1000)) >= 999


def test_equal_seeds_give_equal_samples_and_different_seeds_differ():
    def samples(seed):
        p = DecodeParams(strategy="sample", temperature=1.0, top_k=0, top_p=1.0,
                         alternatives=4, seed=seed)
        return [h.tokens for h in decode(Scripted(lambda _: [0, 0, .2, .2, .2, .2, .2], 7),
                                         SPECIAL, p)]
    assert samples(42) == samples(42) and samples(42) != samples(43)


def test_sample_and_rerank_prefers_the_fluent_caption_over_a_likelier_loop():
    table = {(1,): [0, 0, 0, .6, .4, 0], (1, 3): [0, 0, .1, .9, 0, 0], (1, 4): [0, 0, 0, 0, 0, 1]}
    p = DecodeParams(strategy="sample_rerank", samples=16, temperature=1.0, top_p=1.0, seed=3)
    out = decode(Scripted(lambda q: table.get(tuple(q), [0, 0, 1, 0, 0, 0]), 6), SPECIAL, p)
    assert all(fluent(h.tokens) for h in out) and out[0].tokens == [4, 5]
    assert not fluent([3, 3, 4]) and not fluent([3, 4, 5, 3, 4])


def test_parameters_are_refused_with_the_daemons_rules():
    with pytest.raises(ValueError, match="decoding.beam_size"):
        DecodeParams(strategy="diverse_beam", beam_size=4, groups=3).validate()
    with pytest.raises(ValueError, match="decoding.top_p"):
        DecodeParams(strategy="sample", top_p=0.0).validate()
    assert DecodeParams(strategy="beam").to_manifest()["beam_size"] == 3
    assert "temperature" not in DecodeParams(strategy="beam").to_manifest()


@pytest.mark.parametrize("arch", ["baseline", "improved", "attention", "transformer"])
def test_greedy_search_over_a_model_equals_the_trainers_greedy_decode(arch):
    torch.manual_seed(0)
    model = build_model(model_config(arch, {"vocab_size": 40})).eval()
    with torch.no_grad():
        model.head.bias[:4] += torch.tensor([-50.0, -50.0, 2.0, 0.0])  # some captions end
    mel = torch.randn(2, model.config.n_mels, 120)
    expected = greedy_decode(model, mel)
    p = DecodeParams(min_len=0, max_len=model.config.max_len - 1)
    for i in range(2):
        memory = model.encode(mel[i:i + 1]).detach()
        assert decode(TorchStepper(model, memory), SPECIAL, p)[0].tokens == expected[i]


def test_decoding_defaults_are_the_daemons():
    """Every default of DecodeParams equals daemon/src/decode/contract.rs's `Default`."""
    import re
    from pathlib import Path
    rust = (Path(__file__).parents[2] / "daemon" / "src" / "decode" / "contract.rs").read_text()
    block = rust[rust.index("impl Default for DecodeParams"):]
    block = block[: block.index("\n}\n")]
    rust_values = dict(re.findall(r"^\s+(\w+): ([^,]+),$", block, re.M))
    ours = DecodeParams()
    assert rust_values.pop("strategy") == "Strategy::Greedy" and ours.strategy == "greedy"
    assert set(rust_values) == set(ours.__dict__) - {"strategy"}
    for key, value in rust_values.items():
        assert float(value) == float(getattr(ours, key)), key
