"""hark_export.agreement's counting, rescoring and statistics on hand-made inputs (the full
benchmark, which needs trained runs, bundles and the hark binary, is not run here)."""

import math

import numpy as np
import pytest

from hark_export.agreement import (alternative_stats, compare, markdown, near_tie, parting,
                                   rescore, token_logprobs)
from hark_export.decode import DecodeParams, decode
from test_decode import SPECIAL, Scripted, garden_path


def entry(tokens, text, score, alts=()):
    return {"tokens": tokens, "text": text, "score": score,
            "alternatives": [{"text": t, "score": s} for t, s in alts]}


def test_agreement_counts_identical_token_sequences_and_alternatives():
    refs = [entry([4, 5], "a b", -0.5, [("a", -0.7)]), entry([4], "a", -0.2, [("b", -0.9)]),
            entry([5], "b", -0.3)]
    rust = [entry([4, 5], "a b", -0.5000004, [("a", -0.7)]), entry([4], "a", -0.2, [("c", -1.0)]),
            entry([4], "a", -0.31)]
    c = compare(refs, rust)
    assert (c["clips"], c["agree"], c["alternatives_agree"], c["disagree"]) == (3, 2, 1, [2])
    assert c["agree_pct"] == pytest.approx(200 / 3)
    assert c["max_score_diff"] == pytest.approx(4e-7, abs=1e-9)  # identical clips only
    assert parting([4, 5, 6], [4, 5]) == 2 and parting([3], [4]) == 0 and parting([], []) == 0


def test_rescoring_tells_a_tie_from_a_clear_preference():
    # garden_path: after bos a .5 / b .4; after a: a .35 = b .35 (a tie), eos .3.
    p = DecodeParams(strategy="greedy", min_len=0)
    best = decode(Scripted(garden_path, 5), SPECIAL, p)[0]
    lp = token_logprobs(Scripted(garden_path, 5), SPECIAL, p, best.tokens)
    assert best.tokens == [3, 3] and len(lp) == 3
    assert float(np.sum(lp)) == pytest.approx(best.logprob, abs=1e-6)

    def stepper_for(mel):
        return Scripted(garden_path, 5)
    tie = rescore(stepper_for, None, p, [3, 3], [3, 4])
    assert tie["step"] == 1 and tie["step_margin"] == 0.0 and near_tie(tie, "greedy")
    assert tie["reference_score"] == pytest.approx(best.score, abs=1e-6)
    clear = rescore(stepper_for, None, p, [3, 3], [4])
    assert clear["step"] == 0 and clear["step_margin"] == pytest.approx(math.log(.5 / .4))
    assert clear["score_gap"] == pytest.approx(math.log(.5 * .35) / 3 - math.log(.4 * .9) / 2)
    assert not near_tie(clear, "greedy")
    assert near_tie({**clear, "score_gap": 1e-5}, "beam")  # beam also ranks by final score


def test_alternative_statistics_count_distinct_empty_and_repeated_captions():
    s = alternative_stats([["a beep", "a beep beep", "a tone"],   # 3 distinct, one repeats a word
                           ["noise", "noise"],                    # 1 distinct
                           ["", "a tone then a tone"]])           # empty; repeated bigram
    assert s["clips"] == 3 and s["captions"] == 7
    assert s["mean_distinct"] == pytest.approx(2.0)
    assert s["two_or_more_pct"] == pytest.approx(200 / 3)
    assert s["empty"] == 1
    assert s["repeated_pct"] == pytest.approx(200 / 7)
    assert s["mean_length"] == pytest.approx((2 + 3 + 2 + 1 + 1 + 0 + 5) / 7)
    assert s["unique_best_pct"] == pytest.approx(100.0)
    assert s["within_distinct_2"] == pytest.approx((3 / 4 + 0 + 3 / 4) / 3)
    collapsed = alternative_stats([["a tone"], ["a tone"], ["a tone"], ["a beep"]])
    assert collapsed["unique_best_pct"] == pytest.approx(50.0)
    assert collapsed["two_or_more_pct"] == 0.0


def test_report_tables_list_every_row_and_each_disagreement():
    disagreement = {"clip": "x.wav", "reference": "a b", "hark": "a c", "step": 1,
                    "step_margin": 2e-7, "score_gap": 1e-7, "near_tie": True}
    report = {"agreement": {"attention": {
        "greedy": {"clips": 3, "agree": 2, "agree_pct": 66.7, "alternatives_agree": 2,
                   "max_score_diff": 1e-7, "near_ties": 1, "disagreements": [disagreement]}}},
        "alternatives": {"attention": {"beam-6": alternative_stats([["a", "b"]])}}}
    text = markdown(report)
    assert "| attention | greedy | 3 | 2 | 66.7 % | 2 | 1.0e-07 | 1 / 0 |" in text
    assert 'near-tie: margin at token 1' in text and 'hark "a c"' in text
    assert "| attention | beam-6 | 1 | 2.00 | 100.0 % |" in text
