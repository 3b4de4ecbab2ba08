"""Greedy and beam search over any decoder "stepper", in numpy.

The same search code drives the PyTorch model (evaluation, parity checks) and the ONNX
runtime, so the two can only differ in the logits they produce, never in search logic.
Greedy is beam search with one beam.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Stepper(Protocol):
    """Runs the decoder one token per row. Rows = images x beams, fixed for a whole search."""

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray:
        """tokens (R,) int64 at sequence index ``position`` -> next-token logits (R, V) float32."""

    def reorder(self, rows: np.ndarray) -> None:
        """Row i of the self-attention cache becomes old row ``rows[i]`` (beams moved)."""

    def prefill(self, prompts: np.ndarray) -> np.ndarray:
        """prompts (R,P) int64 at positions 0..P-1, run as one prefix-LM prefix (the tokens
        see each other both ways) -> logits after the last one (R, V) float32."""


@dataclass(frozen=True)
class SearchSettings:
    beam_size: int = 1
    max_new_tokens: int = 30
    no_repeat_ngram: int = 3  # 0 disables; blocks "a dog and a dog and a dog" loops
    length_penalty: float = 1.0  # finished score = sum(logp) / length ** length_penalty
    banned_ids: tuple[int, ...] = ()  # never generated: pad, unk, bos
    # never the same token twice in a row ("green green grass") or with one word between
    # ("white haired black haired white"): fluent captions almost never do either
    no_repeat_word: bool = True


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _ban_immediate_repeats(logprobs: np.ndarray, history: np.ndarray, step: int) -> None:
    """In place: row r may not emit either of its last two tokens (history (R, T), ``step``
    tokens generated so far). The n-gram guard cannot catch this: "green green green"
    repeats a 1-gram, and banning all repeated 1-grams would also forbid the second "a" of
    every caption; "a man and a woman" keeps its "a" three tokens apart."""
    rows = np.arange(logprobs.shape[0])
    for back in (1, 2):
        if step >= back:
            logprobs[rows, history[:, step - back]] = -np.inf


def _apply_bias(logprobs: np.ndarray, bias: np.ndarray | None) -> None:
    """In place: add a logit bias with one row per search row (R, V) (beams: repeated per image once)."""
    if bias is not None:
        logprobs += bias


def _ban_repeated_ngrams(logprobs: np.ndarray, history: np.ndarray, length: int, n: int) -> None:
    """In place: for each row, forbid tokens that would complete an n-gram already in it
    (history (R, T), ``length`` tokens generated so far). One row (greedy, the per-token hot
    path) is a short Python loop; beams compare every row's (n-1)-grams at once, a flat
    ~0.01-0.04 ms where the loop grows with rows x length (16 beams at 14 tokens: 0.21 ms)."""
    if n <= 0 or length < n:  # fewer than n tokens: no n-gram to repeat yet
        return
    if history.shape[0] == 1 or n == 1:
        for row in range(history.shape[0]):
            seq = history[row, :length].tolist()  # Python ints: slices compare without numpy calls
            prefix = seq[length - (n - 1) :]
            for start in range(length - n + 1):
                if seq[start : start + n - 1] == prefix:
                    logprobs[row, seq[start + n - 1]] = -np.inf
        return
    seen = history[:, :length]
    count = length - n + 1  # (n-1)-grams that a next token follows, starting at 0 .. count-1
    # repeats[r, s]: row r's (n-1)-gram at s equals its last n-1 tokens, compared one offset at
    # a time (sliding_window_view(...).all(axis=2): 19 us where this takes 9, 4 beams at 12 tokens)
    repeats = np.ones((seen.shape[0], count), dtype=bool)
    for offset in range(n - 1):
        repeats &= seen[:, offset : offset + count] == seen[:, count + offset, None]
    rows, starts = np.nonzero(repeats)
    logprobs[rows, seen[rows, starts + n - 1]] = -np.inf


def _best_first(values: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` largest of ``values`` (N,) float64, largest first, equal values
    by index (NaN counts as -inf); all N when N <= count.

    Why not np.argpartition over the N = beams x vocabulary candidates: it was ~0.07 ms a
    step on a 2-core AVX-512 EPYC, and left equal candidates in an arbitrary order. The best
    few lie within a few nats of the best one: a comparison finds those, and only they are
    partitioned and sorted."""
    if np.isnan(values).any():
        values = np.where(np.isnan(values), -np.inf, values)
    size = values.shape[0]
    if size <= count:
        return np.lexsort((np.arange(size), -values))
    best = values.max()
    near = np.arange(size)  # too few within the margins (or nothing finite): every value
    if np.isfinite(best):
        for margin in (4.0, 16.0):  # nats below the best
            within = np.flatnonzero(values >= best - margin)
            if within.size >= count:
                near = within
                break
    if near.size > count:
        kept = values[near]
        threshold = np.partition(kept, kept.size - count)[kept.size - count]  # the count-th largest
        near = near[kept >= threshold]  # every value equal to it as well: ties are settled by index
    return near[np.lexsort((near, -values[near]))[:count]]


def greedy_search(stepper: Stepper, num_images: int, bos_id: int, eos_id: int, settings: SearchSettings,
                  bias: np.ndarray | None = None) -> list[list[int]]:
    """Beam search with one beam, without its bookkeeping: the argmax of the masked logits
    (log-softmax keeps the order) until eos. Same ids as ``beam_search`` at beam 1; this is
    the per-token hot path of narration, so it does the least Python per step. ``bias``
    (num_images, V): added to every step's logits (-inf bans a word for that image)."""
    history = np.zeros((num_images, settings.max_new_tokens), dtype=np.int64)
    lengths = np.full(num_images, settings.max_new_tokens)
    done = np.zeros(num_images, dtype=bool)
    tokens = np.full(num_images, bos_id, dtype=np.int64)
    banned = np.array(settings.banned_ids, dtype=np.int64)  # an index array: a list is converted at every step
    rows = np.arange(num_images)
    for step in range(settings.max_new_tokens):
        logits = np.array(stepper.step(tokens, step), dtype=np.float64)  # a copy we may mask
        if banned.size:
            logits[:, banned] = -np.inf
        _apply_bias(logits, bias)
        if settings.no_repeat_word:
            _ban_immediate_repeats(logits, history, step)
        _ban_repeated_ngrams(logits, history, step, settings.no_repeat_ngram)
        chosen = logits.argmax(axis=1)
        # the chosen one not finite: everything is banned (or NaN): end the caption
        chosen[~np.isfinite(logits[rows, chosen])] = eos_id
        chosen[done] = eos_id
        ended = (chosen == eos_id) & ~done
        lengths[ended] = step
        done |= ended
        history[:, step] = chosen
        if done.all():
            break
        tokens = chosen
    return [history[i, : lengths[i]].tolist() for i in range(num_images)]


def beam_search(stepper: Stepper, num_images: int, bos_id: int, eos_id: int, settings: SearchSettings,
                bias: np.ndarray | None = None) -> list[list[int]]:
    """Best token ids per image (without bos/eos). The stepper's rows are image-major:
    row = image * beam_size + beam. Beam size 1 goes to ``greedy_search``. ``bias``
    (num_images, V) is added to every step's log-probabilities (-inf: a word banned for
    that image, e.g. an object the concept head is sure is absent)."""
    if settings.beam_size == 1:
        return greedy_search(stepper, num_images, bos_id, eos_id, settings, bias)
    return [candidates[0][1] for candidates in nbest_search(stepper, num_images, bos_id, eos_id, settings, bias)]


def nbest_search(stepper: Stepper, num_images: int, bos_id: int, eos_id: int, settings: SearchSettings,
                 bias: np.ndarray | None = None) -> list[list[tuple[float, list[int]]]]:
    """Beam search's finished captions per image, best first: (score, ids without bos/eos),
    score = sum(logp) / length ** length_penalty. At least one per image (at least
    ``beam_size`` unless the length ran out); the first is what ``beam_search`` returns.
    """
    k = settings.beam_size
    rows = num_images * k
    history = np.zeros((rows, settings.max_new_tokens), dtype=np.int64)  # generated tokens (bos excluded)
    scores = np.full((num_images, k), -np.inf, dtype=np.float64)
    scores[:, 0] = 0.0  # identical beams at the start: keep only the first alive
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(num_images)]
    done = np.zeros(num_images, dtype=bool)
    tokens = np.full(rows, bos_id, dtype=np.int64)
    row_bias = None if bias is None else np.repeat(bias, k, axis=0)  # (R, V), once, not every step
    banned = np.array(settings.banned_ids, dtype=np.int64)  # as in greedy_search
    for step in range(settings.max_new_tokens):
        logprobs = _log_softmax(stepper.step(tokens, step).astype(np.float64))  # (R, V)
        if banned.size:
            logprobs[:, banned] = -np.inf
        _apply_bias(logprobs, row_bias)
        if settings.no_repeat_word:
            _ban_immediate_repeats(logprobs, history, step)
        _ban_repeated_ngrams(logprobs, history, step, settings.no_repeat_ngram)
        vocab = logprobs.shape[1]
        candidates = (scores[:, :, None] + logprobs.reshape(num_images, k, vocab)).reshape(num_images, k * vocab)
        source_rows = np.arange(rows)  # by default a row keeps its own beam
        new_tokens = np.full(rows, eos_id, dtype=np.int64)
        new_scores = np.full((num_images, k), -np.inf)
        for image in range(num_images):
            if done[image]:
                continue
            order = _best_first(candidates[image], 2 * k)
            slot = 0
            for flat in order:
                score = candidates[image, flat]
                if not np.isfinite(score):
                    break
                beam, token = divmod(int(flat), vocab)
                src = image * k + beam
                if token == eos_id:
                    length = step + 1
                    finished[image].append((score / length**settings.length_penalty, history[src, :step].tolist()))
                    continue
                dst = image * k + slot
                source_rows[dst] = src
                new_tokens[dst] = token
                new_scores[image, slot] = score
                slot += 1
                if slot == k:
                    break
            best_alive = new_scores[image].max()
            if len(finished[image]) >= k or slot == 0 or (
                # alive beams only lose score; stop once none can beat the best finished one
                finished[image]
                and settings.length_penalty == 0
                and best_alive <= max(s for s, _ in finished[image])
            ):
                done[image] = True
        if done.all():
            break
        history = history[source_rows]
        history[:, step] = new_tokens
        scores = new_scores
        if not np.array_equal(source_rows, np.arange(rows)):  # greedy never moves rows: skip the copy
            stepper.reorder(source_rows)
        tokens = new_tokens
    results = []
    for image in range(num_images):
        if not finished[image]:  # ran out of length: take the best alive beam
            best = int(np.argmax(scores[image]))
            finished[image].append((0.0, history[image * k + best].tolist()))
        # stable: among equal scores the earliest finished stays first, as max() picked it
        results.append(sorted(finished[image], key=lambda item: -item[0]))
    return results


@dataclass(frozen=True)
class Answer:
    ids: list[int]  # answer tokens, eos excluded
    logprob: float  # log P(answer tokens + eos | image, question), natural log

    @property
    def probability(self) -> float:
        return float(np.exp(self.logprob))


def answer_search(stepper: Stepper, prompts: np.ndarray, eos_id: int, max_new_tokens: int,
                  banned_ids: tuple[int, ...] = ()) -> list[Answer]:
    """Greedy answers to VQA prompts (R,P) of one length: the prompt is prefilled into the
    cache in one pass, then the answer is decoded causally after it. Greedy, not beam: the
    answers are one or two words, and the probability of the chosen answer is what the
    abstention threshold reads."""
    rows, length = prompts.shape
    if max_new_tokens < 1:
        raise ValueError("answer_search needs room for at least one token (eos)")
    banned = np.array(banned_ids, dtype=np.int64)  # as in greedy_search
    logits = stepper.prefill(prompts)
    history = np.zeros((rows, max_new_tokens), dtype=np.int64)
    lengths = np.full(rows, max_new_tokens)
    logprob = np.zeros(rows)
    done = np.zeros(rows, dtype=bool)
    for step in range(max_new_tokens):
        logprobs = _log_softmax(np.asarray(logits, dtype=np.float64))
        if banned.size:
            logprobs[:, banned] = -np.inf
        chosen = logprobs.argmax(axis=1)
        logprob += np.where(done, 0.0, logprobs[np.arange(rows), chosen])
        chosen[done] = eos_id
        ended = (chosen == eos_id) & ~done
        lengths[ended] = step
        done |= ended
        history[:, step] = chosen
        if done.all() or step + 1 == max_new_tokens:
            break
        logits = stepper.step(chosen, length + step)
    # No eos within max_new_tokens: not an answer the model finished; probability 0 (abstain).
    logprob[~done] = -np.inf
    return [Answer(history[i, : lengths[i]].tolist(), float(logprob[i])) for i in range(rows)]
