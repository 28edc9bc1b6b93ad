"""hark-eval-sounds' scoring: which categories a caption names, and average precision."""

import numpy as np

from hark_export.hearing import average_precision, caption_shape, named_categories, shape_rates


def test_a_caption_names_categories_in_the_order_their_words_come():
    synonyms = {"dog": {"dog", "barks"}, "rain": {"rain", "raining"}, "door": {"door"}}
    assert named_categories("Rain falls while a dog barks", synonyms) == ["rain", "dog"]
    assert named_categories("a dog barks, a dog barks", synonyms) == ["dog"]
    assert named_categories("someone whistles", synonyms) == []


def test_a_one_sound_caption_is_judged_for_invented_events_sequences_and_repeats():
    synonyms = {"cow": {"cow", "cattle", "moos"}, "dog": {"dog", "barks"}, "saw": {"saw"}}
    assert caption_shape("a cow moos", "cow", synonyms) == \
        {"invented": [], "several": False, "repeated": []}
    told = caption_shape("a cow mooing then a cow moos then cattle lowing", "cow", synonyms)
    assert told == {"invented": [], "several": True, "repeated": ["cow"]}
    invented = caption_shape("a dog barks and a saw buzzes", "dog", synonyms)
    assert invented["invented"] == ["saw"] and invented["several"]
    rates = shape_rates([told, invented, caption_shape("a cow moos", "cow", synonyms)])
    assert rates == {"invented_rate": 1 / 3, "several_rate": 2 / 3, "repeated_rate": 1 / 3}


def test_average_precision_is_one_when_positives_rank_first_and_falls_otherwise():
    positive = np.array([True, False, True, False])
    # scikit-learn: average_precision_score([1, 0, 1, 0], [.9, .8, .7, .1]) = (1 + 2/3) / 2
    assert average_precision(np.array([0.9, 0.1, 0.8, 0.2]), positive) == 1.0
    assert abs(average_precision(np.array([0.9, 0.8, 0.7, 0.1]), positive) - 5 / 6) < 1e-12
    assert np.isnan(average_precision(np.array([0.5, 0.5]), np.array([False, False])))


def test_the_results_go_into_the_model_card_once_and_the_manifest_is_rehashed(tmp_path):
    import tomllib

    from hark_export.bundle import MANIFEST, sha256
    from hark_export.hearing import update_card
    (tmp_path / "MODEL_CARD.md").write_text("# m\n\n## Metrics\n\nx\n\n## Limits\n\ny\n")
    (tmp_path / MANIFEST).write_text('name = "m"\n')
    r = {"clips": 3, "hit_rate": 2 / 3, "category_mean_hit_rate": 0.5, "tag_map": 0.75,
         "categories": {"dog": {"clips": 2, "recordings": 1, "hit_rate": 1.0, "tag_ap": 1.0},
                        "cat": {"clips": 1, "recordings": 1, "hit_rate": 0.0,
                                "tag_ap": float("nan")}}}
    update_card(tmp_path, r, "test")
    update_card(tmp_path, {**r, "hit_rate": 1.0}, "test")
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert card.count("## Held-out single sounds") == 1 and "**100.0 %**" in card
    assert "| dog | 2 | 1 | 100 % | 1.00 |" in card and "| cat | 1 | 1 | 0 % | — |" in card
    assert "## Limits" in card
    files = tomllib.loads((tmp_path / MANIFEST).read_text())["files"]
    assert files["MODEL_CARD.md"] == sha256(tmp_path / "MODEL_CARD.md")


def test_speech_detection_is_the_daemons_verdict_against_the_truth(tmp_path):
    from hark_export.bundle import MANIFEST
    from hark_export.hearing import speech_detection, speech_lines
    (tmp_path / "labels.txt").write_text("dog\nspeech\nrain\n")
    (tmp_path / "audioset.txt").write_text("Dog\nSpeech\n")
    (tmp_path / MANIFEST).write_text(
        '[[tags]]\nname = "hark"\nlabels = "labels.txt"\n'
        '[[tags]]\nname = "audioset"\nlabels = "audioset.txt"\n')

    def window(*tags):
        return {"tags": [{"label": label, "source": source} for label, source in tags]}
    windows = [window(("speech", "hark")), window(("speech", "hark"), ("dog", "hark")),
               window(("Speech", "audioset")), window(("speech", "hark")), window()]
    truth = ["speech", "speech", "speech", "crowd", "dog"]
    s = speech_detection(windows, truth, tmp_path)
    # AudioSet's Speech alone does not count: the hark head, first with the label, decides.
    assert (s["true_positives"], s["detected"], s["speech_clips"]) == (2, 3, 3)
    assert s["precision"] == 2 / 3 and s["recall"] == 2 / 3
    assert s["false_positives"] == {"crowd": 1}
    assert "precision **66.7 %**" in speech_lines(s)[0] and "crowd 1" in speech_lines(s)[0]
    (tmp_path / "labels.txt").write_text("dog\nrain\n")
    (tmp_path / "audioset.txt").write_text("Dog\n")
    assert speech_detection(windows, truth, tmp_path) is None
