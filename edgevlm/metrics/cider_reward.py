"""CIDEr-D as a reward, on token ids, for self-critical training.

Written here rather than calling pycocoevalcap's Cider per batch: that scorer takes its
document frequencies from the references it is given, so scoring one batch at a time
would give batch-dependent idf weights (and it re-tokenizes through Java). Here the
document frequencies come once from the whole training set, as CIDEr-D defines them; the
formula (n = 1..4, clipped tf-idf cosine, Gaussian length penalty sigma 6, x10) follows
pycocoevalcap's CiderScorer.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

N = 4
SIGMA = 6.0


def _ngrams(tokens: tuple[int, ...]) -> list[Counter]:
    return [Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)) for n in range(1, N + 1)]


class CiderD:
    def __init__(self, references: list[list[tuple[int, ...]]]):
        """references: per image, its human captions as token-id tuples (no bos/eos)."""
        doc_freq: Counter = Counter()
        for refs in references:
            doc_freq.update({gram for ref in refs for counts in _ngrams(ref) for gram in counts})
        self.log_images = math.log(float(len(references)))
        self.doc_freq = doc_freq
        self.refs = [[self._vector(ref) for ref in refs] for refs in references]

    def _vector(self, tokens: tuple[int, ...]):
        vectors, norms = [], []
        for counts in _ngrams(tokens):
            vec = {g: tf * (self.log_images - math.log(max(1.0, self.doc_freq[g]))) for g, tf in counts.items()}
            vectors.append(vec)
            norms.append(math.sqrt(sum(v * v for v in vec.values())))
        return vectors, norms, len(tokens)

    def score(self, image: int, tokens: tuple[int, ...]) -> float:
        hyp_vecs, hyp_norms, hyp_len = self._vector(tokens)
        total = np.zeros(N)
        for ref_vecs, ref_norms, ref_len in self.refs[image]:
            penalty = math.exp(-((hyp_len - ref_len) ** 2) / (2 * SIGMA**2))
            for n in range(N):
                dot = sum(min(value, ref_vecs[n].get(g, 0.0)) * ref_vecs[n].get(g, 0.0)
                          for g, value in hyp_vecs[n].items())
                if hyp_norms[n] and ref_norms[n]:
                    total[n] += dot / (hyp_norms[n] * ref_norms[n]) * penalty
        return float(total.mean() / max(len(self.refs[image]), 1) * 10.0)
