"""hark-eval-sounds' scoring: which categories a caption names, and average precision."""

import numpy as np

from hark_export.hearing import average_precision, named_categories


def test_a_caption_names_categories_in_the_order_their_words_come():
    synonyms = {"dog": {"dog", "barks"}, "rain": {"rain", "raining"}, "door": {"door"}}
    assert named_categories("Rain falls while a dog barks", synonyms) == ["rain", "dog"]
    assert named_categories("a dog barks, a dog barks", synonyms) == ["dog"]
    assert named_categories("someone whistles", synonyms) == []


def test_average_precision_is_one_when_positives_rank_first_and_falls_otherwise():
    positive = np.array([True, False, True, False])
    # scikit-learn: average_precision_score([1, 0, 1, 0], [.9, .8, .7, .1]) = (1 + 2/3) / 2
    assert average_precision(np.array([0.9, 0.1, 0.8, 0.2]), positive) == 1.0
    assert abs(average_precision(np.array([0.9, 0.8, 0.7, 0.1]), positive) - 5 / 6) < 1e-12
    assert np.isnan(average_precision(np.array([0.5, 0.5]), np.array([False, False])))
