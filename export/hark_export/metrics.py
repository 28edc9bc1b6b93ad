"""Caption metrics the trainer uses: BLEU-4, caption distinctness, CIDEr-D as a reward."""

import math
from collections import Counter

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


class CiderD:
    """CIDEr-D (Vedantam et al. 2015, the coco-caption variant) with document frequencies
    fixed from a reference corpus, so one batch's score means the same as the next's (SCST's
    reward). Scores match pycocoevalcap's when the corpus is the scored set's references."""

    def __init__(self, corpus: list[list[str]], n: int = 4, sigma: float = 6.0):
        self.n, self.sigma = n, sigma
        self.df = Counter()
        for refs in corpus:
            self.df.update({g for r in refs for g in self._grams(r.split())})
        self.log_docs = math.log(float(len(corpus)))

    def _grams(self, words: list[str]) -> Counter:
        return Counter(tuple(words[i:i + k]) for k in range(1, self.n + 1)
                       for i in range(len(words) - k + 1))

    def _vector(self, text: str):
        words = text.split()
        vec = [dict() for _ in range(self.n)]
        norms = [0.0] * self.n
        for gram, tf in self._grams(words).items():
            k = len(gram) - 1
            w = tf * (self.log_docs - math.log(max(1.0, float(self.df[gram]))))
            vec[k][gram] = w
            norms[k] += w * w
        return vec, [math.sqrt(x) for x in norms], len(words)

    def score(self, hypothesis: str, references: list[str]) -> float:
        """CIDEr-D of one caption against its references (0 .. ~10)."""
        return self.scores([hypothesis], references)[0]

    def scores(self, hypotheses: list[str], references: list[str]) -> list[float]:
        """CIDEr-D of each caption against the same references, whose vectors are made once
        (SCST scores a clip's greedy caption and all its samples)."""
        refs = [self._vector(r) for r in references]
        out = []
        for hypothesis in hypotheses:
            hv, hn, hl = self._vector(hypothesis)
            total = 0.0
            for rv, rn, rl in refs:
                penalty = math.exp(-((hl - rl) ** 2) / (2 * self.sigma ** 2))
                for k in range(self.n):
                    dot = sum(min(w, rv[k][g]) * rv[k][g] for g, w in hv[k].items()
                              if g in rv[k])
                    if hn[k] and rn[k]:
                        total += penalty * dot / (hn[k] * rn[k])
            out.append(10.0 * total / (self.n * max(len(references), 1)))
        return out
