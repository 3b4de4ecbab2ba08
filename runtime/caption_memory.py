"""Consensus re-ranking: among the beam's finished captions, say the one that agrees most with
what people wrote about the training photos that look most like this frame.

Beam search returns the caption the decoder finds most likely, and a decoder trained on 30k
captions is sure of its own habits. The human captions of the nearest training photos (by
the vision graph's pooled embedding) are independent evidence about this kind of scene;
choosing the beam candidate with the highest mean CIDEr-D against them (Devlin et al.,
2015, "Exploring nearest neighbor approaches for image captioning", consensus re-ranking)
keeps the model's own words (the concept head's bans still hold: every candidate obeyed
them) and drops its idiosyncratic ones. Measured on the 1,000 dev photos, shipped INT8
engine, 16 candidates, 30 neighbours: CIDEr 0.499 -> 0.573 (MODEL_CARD.md).

Written here rather than with pycocoevalcap: its CIDEr-D takes document frequencies from the
references it is given (here 150 captions), not from the whole memory as the metric defines
them, and it needs torch-free numpy anyway. The formula follows
``edgevlm.metrics.cider_reward`` (n = 1..4, clipped tf-idf cosine, Gaussian length penalty
sigma 6, x10); the tests check the two agree.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

import numpy as np

from edgevlm.errors import EdgeVLMError

ARRAYS = ("mean", "projection", "keys", "caption_start", "captions", "ngrams", "ngram_df")
MAX_N = 4
SIGMA = 6.0  # words: CIDEr-D's length penalty
_WORD = re.compile(r"[a-z0-9]+")


def caption_words(text: str) -> tuple[str, ...]:
    """"A dog, running." -> ("a", "dog", "running"): the words CIDEr-D compares."""
    return tuple(_WORD.findall(text.lower()))


def ngrams(words: tuple[str, ...], n: int) -> list[tuple[str, ...]]:
    return [words[i : i + n] for i in range(len(words) - n + 1)]


def document_frequencies(captions_per_image: list[list[tuple[str, ...]]]) -> dict[tuple[str, ...], int]:
    """n-gram -> number of images whose captions contain it (n = 1..4)."""
    counts: dict[tuple[str, ...], int] = {}
    for captions in captions_per_image:
        for gram in {g for words in captions for n in range(1, MAX_N + 1) for g in ngrams(words, n)}:
            counts[gram] = counts.get(gram, 0) + 1
    return counts


def consensus_scores(candidates: list[tuple[str, ...]], references: list[list[tuple[str, ...]]],
                     doc_freq: dict[tuple[str, ...], int], num_images: int) -> np.ndarray:
    """Mean CIDEr-D of each candidate against each reference image's captions -> (C,).

    references: per neighbour image, its captions; an image's score is the mean over its
    captions (as CIDEr-D scores one image), and the images are averaged.
    """
    flat = [words for captions in references for words in captions]
    owner = np.repeat(np.arange(len(references)), [len(c) for c in references])  # (R,)
    total = np.zeros((len(candidates), len(flat)))  # (C, R)
    log_images = math.log(float(num_images))
    for n in range(1, MAX_N + 1):
        cand_grams = [ngrams(w, n) for w in candidates]
        ref_grams = [ngrams(w, n) for w in flat]
        index: dict[tuple[str, ...], int] = {}
        for grams in cand_grams + ref_grams:
            for g in grams:
                index.setdefault(g, len(index))
        if not index:
            continue
        tf_c = _counts(cand_grams, index)  # (C, G)
        tf_r = _counts(ref_grams, index)  # (R, G)
        idf = np.array([log_images - math.log(max(1.0, doc_freq.get(g, 0))) for g in index])  # (G,)
        norm_c = np.linalg.norm(tf_c * idf, axis=1)
        norm_r = np.linalg.norm(tf_r * idf, axis=1)
        # CIDEr-D clips the candidate's counts at the reference's: sum_g min(c, r) * r * idf^2.
        # min(c, r) = sum_t [c >= t][r >= t] for counts, so the clipped dot is a few matmuls.
        dot = np.zeros((len(candidates), len(flat)))
        for t in range(1, int(max(tf_c.max(), 1)) + 1):
            dot += (tf_c >= t).astype(float) @ ((tf_r >= t) * tf_r * idf**2).T
        denom = np.outer(norm_c, norm_r)
        total += np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 0)
    cand_len = np.array([len(w) for w in candidates], float)
    ref_len = np.array([len(w) for w in flat], float)
    penalty = np.exp(-((cand_len[:, None] - ref_len[None, :]) ** 2) / (2 * SIGMA**2))
    pair = total * penalty / MAX_N * 10.0  # (C, R): CIDEr-D of candidate vs one caption
    per_image = np.stack([pair[:, owner == i].mean(axis=1) for i in range(len(references))], axis=1)  # (C, K)
    return per_image.mean(axis=1)


def _counts(grams_per_row: list[list[tuple[str, ...]]], index: dict[tuple[str, ...], int]) -> np.ndarray:
    out = np.zeros((len(grams_per_row), len(index)))
    for row, grams in enumerate(grams_per_row):
        for g in grams:
            out[row, index[g]] += 1
    return out


@dataclass
class CaptionMemory:
    """The training photos' embeddings and human captions, as ``edgevlm memory`` wrote them.

    keys (M, D) unit rows = whitened projection of the pooled embedding; captions per image
    as word tuples; doc_freq holds the n-grams in at least two images (absent: 1, which
    CIDEr-D's max(1, df) treats alike)."""

    mean: np.ndarray  # (C,) float32
    projection: np.ndarray  # (C, D) float32
    keys: np.ndarray  # (M, D) float32, unit rows
    captions: list[list[tuple[str, ...]]]
    doc_freq: dict[tuple[str, ...], int]

    @classmethod
    def load(cls, path: str) -> "CaptionMemory":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            missing = [name for name in ARRAYS if name not in arrays]
            if missing:
                raise ValueError(f"it has no {missing[0]!r} array")
        except (OSError, ValueError, EOFError) as exc:  # np.load raises these for files of other kinds
            raise EdgeVLMError(f"{path} is not a caption memory ({exc}); rebuild it with `edgevlm memory`") from exc
        lines = bytes(arrays["captions"]).decode("utf-8").split("\n")
        starts = arrays["caption_start"]
        captions = [[tuple(lines[j].split()) for j in range(starts[i], starts[i + 1])] for i in range(len(starts) - 1)]
        grams = bytes(arrays["ngrams"]).decode("utf-8").split("\n") if arrays["ngrams"].size else []
        doc_freq = {tuple(g.split()): int(c) for g, c in zip(grams, arrays["ngram_df"])}
        return cls(arrays["mean"], arrays["projection"], arrays["keys"].astype(np.float32), captions, doc_freq)

    def to_bytes(self) -> bytes:
        """The .npz file's bytes (arrays only, no pickles): captions and n-grams as
        newline-joined UTF-8, keys as float16."""
        lines = [" ".join(words) for captions in self.captions for words in captions]
        starts = np.cumsum([0] + [len(c) for c in self.captions]).astype(np.int32)
        frequent = sorted((g, c) for g, c in self.doc_freq.items() if c >= 2)
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer, mean=self.mean.astype(np.float32), projection=self.projection.astype(np.float32),
            keys=self.keys.astype(np.float16), caption_start=starts,
            captions=np.frombuffer("\n".join(lines).encode("utf-8"), np.uint8),
            ngrams=np.frombuffer("\n".join(" ".join(g) for g, _ in frequent).encode("utf-8"), np.uint8),
            ngram_df=np.array([c for _, c in frequent], np.int32))
        return buffer.getvalue()

    def embed(self, pooled: np.ndarray) -> np.ndarray:
        """pooled (B, C) -> unit keys (B, D)."""
        keys = (pooled.astype(np.float32) - self.mean) @ self.projection
        return keys / np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)

    def nearest(self, pooled: np.ndarray, k: int) -> np.ndarray:
        """pooled (C,) -> indices (k,) of the most similar memory images, nearest first."""
        similarity = self.keys @ self.embed(pooled[None])[0]  # (M,)
        k = min(k, len(similarity))
        top = np.argpartition(-similarity, k - 1)[:k]
        return top[np.argsort(-similarity[top], kind="stable")]

    def choose(self, pooled: np.ndarray, candidates: list[str], scores: list[float], neighbours: int,
               logprob_weight: float) -> int:
        """Index of the candidate to say: consensus with the ``neighbours`` nearest images'
        captions, plus ``logprob_weight`` x its length-normalised log-probability (the beam's
        own score, so a near tie goes to what the model finds likelier)."""
        if len(candidates) == 1:
            return 0
        references = [self.captions[i] for i in self.nearest(pooled, neighbours)]
        consensus = consensus_scores([caption_words(c) for c in candidates], references, self.doc_freq,
                                     len(self.captions))
        return int(np.argmax(consensus + logprob_weight * np.asarray(scores, float)))
