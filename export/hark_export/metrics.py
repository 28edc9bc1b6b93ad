"""Caption metrics the trainer reports on the test split: BLEU-4 and caption distinctness."""

from nltk.translate.bleu_score import corpus_bleu


def bleu4(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus BLEU-4 (nltk, uniform weights, no smoothing) of normalised captions."""
    return corpus_bleu([[r.split() for r in refs] for refs in references],
                       [h.split() for h in hypotheses])


def distinct_fraction(hypotheses: list[str], scenes: list[str]) -> float:
    """Share of distinct scenes that received distinct captions.

    Clips with the same `scene` key count once (the first clip's caption stands for it);
    the result is (number of different captions) / (number of different scenes), so a
    mode-collapsed model scores near 0 and one caption per scene scores 1.
    """
    first = {}
    for hyp, scene in zip(hypotheses, scenes):
        first.setdefault(scene, hyp)
    return len(set(first.values())) / max(len(first), 1)
