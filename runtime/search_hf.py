"""Greedy and beam search with exactly the semantics of Hugging Face ``model.generate()``.

A Hugging Face checkpoint exported to our graphs must say what ``generate()`` says, so this
module is a numpy transcription of transformers 5.x ``GenerationMixin._sample`` (greedy, no
sampling) and ``GenerationMixin._beam_search`` with the logits processors those build. Our own
``runtime/search.py`` has different rules (banned repeats, a different finished-score length) and
stays as it is; this one is for HF models only. It drives the same steppers (runtime/search.py's
``Stepper``): ``step(tokens (R,), position) -> logits (R, V)``, ``prefill(prompts (R,P))``,
``reorder(rows (R,))``; rows are images x beams, image-major (row = image * num_beams + beam).

What "exactly" means here. Every comparison, sum and mask is done in float32 in HF's order,
with HF's -1e9 "never pick this" constants, so ties and near-ties resolve as in torch. Two things
cannot be bit-identical without torch: (1) log_softmax's exp/sum/log: numpy's float32 exp and
summation order differ from torch's SIMD kernel by an ulp or so (~1e-6 at |logp| ~ 10), so two
candidates whose scores agree to ~1e-6 may be ordered differently; (2) ``torch.topk`` leaves
exactly equal scores in an unspecified order (libstdc++ nth_element); here the lower flat index
(lower beam, then lower token id) wins. Greedy's argmax takes the first maximum, as torch does.

Lengths. HF counts ``max_length`` / ``min_length`` over the decoder's whole input: the decoder
start token for an encoder-decoder model (P = 1), the prompt for a decoder-only one (P tokens).
``HFGeneration`` keeps the fields as written and resolves them against the prompt length of each
call, so one stored setting serves captions (P = 1) and VQA prompts of any length. The
finished-hypothesis score divides by the number of *generated* tokens (incl. eos) for both kinds
of model (older transformers releases divided by the whole sequence, prompt or start token included).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgevlm.runtime.search import Stepper

# HF's "this beam may not be picked" offset, added in float32 (exactly representable).
_NEVER = np.float32(-1.0e9)
DEFAULT_NEW_TOKENS = 20  # generate()'s default when neither max_length nor max_new_tokens is set

# generation_config.json keys that cannot change greedy or beam ids: sampling-only knobs (unused
# when do_sample is false), cache and output plumbing, assistant tuning used only with an assistant.
_IGNORED_KEYS = frozenset({
    "temperature", "top_k", "top_p", "min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff",
    "use_cache", "cache_implementation", "cache_config", "max_cache_len", "prefill_chunk_size",
    "output_attentions", "output_hidden_states", "output_scores", "output_logits", "return_dict_in_generate",
    "compile_config", "disable_compile", "continuous_batching_config",
    "num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold",
    "assistant_lookbehind", "target_lookbehind", "max_matching_ngram_size",
    "transformers_version", "_from_model_config", "_commit_hash",
    # token ids some configs carry that generate() never reads
    "sep_token_id", "cls_token_id", "mask_token_id", "unk_token_id",
})

# Keys whose non-default value selects behaviour this module does not reproduce: key -> default.
_REFUSED_UNLESS_DEFAULT = {
    "num_return_sequences": 1, "num_beam_groups": 1, "diversity_penalty": 0.0, "penalty_alpha": None,
    "dola_layers": None, "constraints": None, "force_words_ids": None, "sequence_bias": None,
    "guidance_scale": 1.0, "encoder_repetition_penalty": 1.0, "encoder_no_repeat_ngram_size": 0,
    "renormalize_logits": False, "remove_invalid_values": False, "exponential_decay_length_penalty": None,
    "watermarking_config": None, "max_time": None, "stop_strings": None, "low_memory": False,
    "token_healing": False, "is_assistant": False, "use_mtp": False, "prompt_lookup_num_tokens": None,
    "assistant_early_exit": None, "speculation_type": None, "assistant_ensemble_weight": None,
}

# generation_config.json key -> HFGeneration field, for the keys read as they are.
_READ_KEYS = {
    "num_beams": "num_beams", "max_length": "max_length", "max_new_tokens": "max_new_tokens",
    "min_length": "min_length", "min_new_tokens": "min_new_tokens", "length_penalty": "length_penalty",
    "early_stopping": "early_stopping", "no_repeat_ngram_size": "no_repeat_ngram_size",
    "repetition_penalty": "repetition_penalty", "bad_words_ids": "bad_words_ids",
    "suppress_tokens": "suppress_tokens", "begin_suppress_tokens": "begin_suppress_tokens",
    "forced_bos_token_id": "forced_bos_token_id", "forced_eos_token_id": "forced_eos_token_ids",
    "eos_token_id": "eos_token_ids", "pad_token_id": "pad_token_id", "bos_token_id": "bos_token_id",
    "decoder_start_token_id": "decoder_start_token_id",
}


def _ids(value, field: str) -> tuple[int, ...]:
    """An int, a list of ints or None -> tuple of non-negative ints."""
    if value is None:
        return ()
    items = [value] if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        out = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be a token id or a list of token ids, not {value!r}") from None
    if any(v < 0 for v in out) or any(isinstance(v, bool) for v in items):
        raise ValueError(f"{field} must hold non-negative token ids, not {value!r}")
    return out


@dataclass(frozen=True)
class HFGeneration:
    """The generation settings that decide greedy / beam-search ids, as ``generate()`` reads them.

    Length fields keep HF's meaning and are resolved per call (see ``max_total_length``):
    ``max_length`` / ``min_length`` count the decoder input too (start token or prompt),
    ``max_new_tokens`` / ``min_new_tokens`` do not and win when set. ``max_position_embeddings``
    (the model config's) caps only the 20-new-token default, as ``generate()`` does.
    """

    num_beams: int = 1
    max_length: int | None = None
    max_new_tokens: int | None = None
    max_position_embeddings: int | None = None
    min_length: int = 0
    min_new_tokens: int | None = None
    length_penalty: float = 1.0
    early_stopping: bool | str = False  # True, False or "never"
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    bad_words_ids: tuple[tuple[int, ...], ...] = ()
    suppress_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()
    forced_bos_token_id: int | None = None
    forced_eos_token_ids: tuple[int, ...] = ()
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    decoder_start_token_id: int | None = None

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        for name in ("num_beams", "min_length", "no_repeat_ngram_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
            put(name, int(value))
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be at least 1, not {self.num_beams}")
        for name in ("max_length", "max_new_tokens", "max_position_embeddings", "min_new_tokens",
                     "pad_token_id", "bos_token_id", "decoder_start_token_id", "forced_bos_token_id"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                    raise ValueError(f"{name} must be a non-negative integer or null, not {value!r}")
                put(name, int(value))
        if self.max_new_tokens is not None and self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be greater than 0, not {self.max_new_tokens}")
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be true, false or \"never\", not {self.early_stopping!r}")
        put("early_stopping", self.early_stopping if self.early_stopping == "never" else bool(self.early_stopping))
        put("length_penalty", float(self.length_penalty))
        put("repetition_penalty", float(self.repetition_penalty))
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be strictly positive, not {self.repetition_penalty}")
        for name in ("suppress_tokens", "begin_suppress_tokens", "forced_eos_token_ids", "eos_token_ids"):
            put(name, _ids(getattr(self, name), name))
        words = self.bad_words_ids or ()
        if isinstance(words, (int, np.integer)) or any(isinstance(w, (int, np.integer)) for w in words):
            raise ValueError(f"bad_words_ids must be a list of lists of token ids, not {words!r}")
        put("bad_words_ids", tuple(_ids(w, "bad_words_ids") for w in words))
        if any(not w for w in self.bad_words_ids):
            raise ValueError("bad_words_ids must not hold an empty sequence")

    # --- construction ---------------------------------------------------------------
    @classmethod
    def from_generation_config(cls, config: dict, *, max_position_embeddings: int | None = None,
                               ignore_fields: tuple[str, ...] = (), **overrides) -> "HFGeneration":
        """A ``generation_config.json`` dict (absent keys: HF's global defaults), then ``overrides``
        on top, as ``generate(**kwargs)`` would apply them. Keys this module cannot reproduce (sampling,
        constrained/group/contrastive search, sequence bias, ...) raise ValueError naming the key;
        unknown keys too (they may drive a model's own generate), unless listed in ``ignore_fields``.
        ``max_position_embeddings``: the model config's, which caps the default length."""
        merged = {k: v for k, v in {**config, **overrides}.items() if v is not None}
        if merged.get("do_sample") is True:
            raise ValueError("do_sample is true: sampling is not reproducible; only greedy and beam search are")
        for key, default in _REFUSED_UNLESS_DEFAULT.items():
            if key in merged and merged[key] != default:
                raise ValueError(f"{key}={merged[key]!r} is not supported (only {default!r})")
        values = {"max_position_embeddings": max_position_embeddings}
        for key, value in merged.items():
            if key in _READ_KEYS:
                values[_READ_KEYS[key]] = value
            elif key != "do_sample" and key not in _IGNORED_KEYS and key not in _REFUSED_UNLESS_DEFAULT \
                    and key not in ignore_fields:
                raise ValueError(f"generation setting {key!r} is not understood; pass ignore_fields=({key!r},) "
                                 "if it cannot change the generated ids")
        return cls(**values)

    def to_json(self) -> dict:
        """A JSON-serialisable dict (tuples as lists) that ``from_json`` reads back."""
        out = asdict(self)
        for name, value in out.items():
            if isinstance(value, tuple):
                out[name] = [list(v) if isinstance(v, tuple) else v for v in value]
        return out

    @classmethod
    def from_json(cls, data: dict) -> "HFGeneration":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown HFGeneration field {unknown[0]!r}")
        return cls(**data)

    # --- resolved values ------------------------------------------------------------
    @property
    def start_token_id(self) -> int | None:
        """The decoder start token of an encoder-decoder model: decoder_start_token_id, else bos."""
        return self.decoder_start_token_id if self.decoder_start_token_id is not None else self.bos_token_id

    def start_prompts(self, num_images: int) -> np.ndarray:
        """(num_images, 1) int64 of the decoder start token: the prompts of an encoder-decoder caption."""
        if self.start_token_id is None:
            raise ValueError("decoder_start_token_id or bos_token_id has to be set for an encoder-decoder model")
        return np.full((num_images, 1), self.start_token_id, np.int64)

    @property
    def filler_id(self) -> int | None:
        """What greedy feeds rows that have finished: pad_token_id, else the first eos (as HF)."""
        if self.pad_token_id is not None:
            return self.pad_token_id
        return self.eos_token_ids[0] if self.eos_token_ids else None

    def max_total_length(self, prompt_length: int) -> int:
        """HF's max_length for a decoder input of ``prompt_length`` tokens (start token or prompt)."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens + prompt_length
        if self.max_length is not None:
            return self.max_length
        total = DEFAULT_NEW_TOKENS + prompt_length
        return min(total, self.max_position_embeddings) if self.max_position_embeddings else total

    def min_total_length(self, prompt_length: int) -> int:
        """eos is suppressed while the decoder sequence (prompt included) is shorter than this."""
        return self.min_new_tokens + prompt_length if self.min_new_tokens is not None else self.min_length

    def max_new_tokens_for(self, prompt_length: int) -> int:
        return self.max_total_length(prompt_length) - prompt_length


# --------------------------------------------------------------------------- logits processors
class _Processors:
    """The processors ``generate()`` builds from the settings, applied in its order
    (transformers ``_get_logits_processor``): repetition penalty, no-repeat n-gram, bad words,
    min length / min new tokens, forced bos, forced eos, suppress, suppress at begin."""

    def __init__(self, settings: HFGeneration, prompt_length: int, max_length: int):
        self.s = settings
        self.max_length = max_length
        self.min_length = settings.min_total_length(prompt_length)
        self.penalty = np.float32(settings.repetition_penalty)
        eos = set(settings.eos_token_ids)
        # HF drops single-token bad words that are an eos (NoBadWordsLogitsProcessor)
        words = [w for w in dict.fromkeys(settings.bad_words_ids) if not (len(w) == 1 and w[0] in eos)]
        self.bad_singles = np.array([w[0] for w in words if len(w) == 1], np.int64)
        self.bad_sequences = [(np.array(w[:-1], np.int64), w[-1]) for w in words if len(w) > 1]
        no_forced_bos = settings.forced_bos_token_id is None
        self.begin_index = prompt_length if (prompt_length > 1 or no_forced_bos) else prompt_length + 1
        self.eos = np.array(settings.eos_token_ids, np.int64)

    def __call__(self, ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """ids (R, L) int64: each row's decoder sequence so far (prompt included); scores (R, V)
        float32, modified in place and returned."""
        s, length, vocab = self.s, ids.shape[1], scores.shape[1]
        if s.repetition_penalty != 1.0:
            seen = np.zeros((ids.shape[0], vocab + 1), bool)  # ids past the lm head go to a spare column
            seen[np.arange(ids.shape[0])[:, None], np.minimum(ids, vocab)] = True
            penalised = np.where(scores < 0, scores * self.penalty, scores / self.penalty)
            np.copyto(scores, penalised, where=seen[:, :vocab])
        if s.no_repeat_ngram_size > 0:
            _ban_repeated_ngrams(ids, scores, s.no_repeat_ngram_size)
        if self.bad_singles.size or self.bad_sequences:
            _ban_bad_words(ids, scores, self.bad_singles, self.bad_sequences)
        if self.eos.size and length < self.min_length:
            scores[:, self.eos] = -np.inf
        if s.forced_bos_token_id is not None and length == 1:
            scores[:] = -np.inf
            scores[:, s.forced_bos_token_id] = 0.0
        if s.forced_eos_token_ids and length == self.max_length - 1:
            scores[:] = -np.inf
            scores[:, list(s.forced_eos_token_ids)] = 0.0
        if s.suppress_tokens:
            scores[:, [t for t in s.suppress_tokens if t < vocab]] = -np.inf
        if s.begin_suppress_tokens and length == self.begin_index:
            scores[:, [t for t in s.begin_suppress_tokens if t < vocab]] = -np.inf
        return scores


def _ban_repeated_ngrams(ids: np.ndarray, scores: np.ndarray, n: int) -> None:
    """In place: -inf for every token that would complete an n-gram already in the row
    (ids (R, L), prompt included, as HF's NoRepeatNGramLogitsProcessor)."""
    rows, length = ids.shape
    if length < n:
        return
    windows = sliding_window_view(ids, n, axis=1)  # (R, L-n+1, n)
    prefix = ids[:, length - n + 1:]  # (R, n-1): the n-gram the next token would complete
    r, w = np.nonzero((windows[:, :, :-1] == prefix[:, None, :]).all(axis=2))
    banned = windows[r, w, -1]
    inside = banned < scores.shape[1]
    scores[r[inside], banned[inside]] = -np.inf


def _ban_bad_words(ids: np.ndarray, scores: np.ndarray, singles: np.ndarray,
                   sequences: list[tuple[np.ndarray, int]]) -> None:
    """In place: single bad tokens always; a longer bad word's last token where the row ends
    with the rest of it. Raises on ids past the vocabulary, as HF does."""
    vocab = scores.shape[1]
    if (singles >= vocab).any() or any(last >= vocab or (prefix >= vocab).any() for prefix, last in sequences):
        raise ValueError(f"bad_words_ids holds token ids past the model vocabulary ({vocab})")
    if singles.size:
        scores[:, singles] = -np.inf
    for prefix, last in sequences:
        if prefix.size <= ids.shape[1]:
            scores[(ids[:, ids.shape[1] - prefix.size:] == prefix).all(axis=1), last] = -np.inf


# --------------------------------------------------------------------------- numerics
def _log_softmax32(logits: np.ndarray) -> np.ndarray:
    """(R, V) -> float32 log-probabilities, in torch's CPU order: (x - max) - log(sum(exp(x - max)))."""
    x = np.asarray(logits, np.float32)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True, dtype=np.float32))


def _top_k(values: np.ndarray, k: int) -> np.ndarray:
    """(B, M) -> (B, k) indices of the k largest per row, largest first; equal values: lower index
    first. argpartition then a sort of k items, not a full sort: M is beams x vocabulary."""
    if k >= values.shape[1]:
        return np.argsort(-values, axis=1, kind="stable")[:, :k]
    part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    threshold = np.take_along_axis(values, part, axis=1).min(axis=1)  # the k-th largest value
    out = np.empty((values.shape[0], k), np.int64)
    for b, row in enumerate(values):
        above = np.flatnonzero(row > threshold[b])
        chosen = np.concatenate([above, np.flatnonzero(row == threshold[b])[: k - above.size]])
        out[b] = chosen[np.argsort(-row[chosen], kind="stable")]
    return out


def _first_logits(stepper: Stepper, rows: np.ndarray) -> np.ndarray:
    """rows (R, P): P == 1 is one plain step at position 0; longer prompts are prefilled."""
    if rows.shape[1] == 1:
        return stepper.step(np.ascontiguousarray(rows[:, 0]), 0)
    return stepper.prefill(np.ascontiguousarray(rows))


def _check_prompts(prompts: np.ndarray, settings: HFGeneration) -> tuple[np.ndarray, int]:
    prompts = np.asarray(prompts, np.int64)
    if prompts.ndim != 2 or prompts.shape[1] < 1:
        raise ValueError(f"prompts must be (num_images, P) with P >= 1, not shape {prompts.shape}")
    max_length = settings.max_total_length(prompts.shape[1])
    if prompts.shape[1] >= max_length:
        raise ValueError(f"the prompt is {prompts.shape[1]} tokens but max_length is {max_length}: "
                         "nothing can be generated (set max_new_tokens)")
    return prompts, max_length


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class HFAnswer:
    """A greedy answer: ``ids`` without the prompt or the final eos; ``logprob`` the natural log
    of the product, over the chosen tokens and the eos, of softmax(processed logits) (HF's
    ``compute_transition_scores(..., normalize_logits=True)`` summed); ``finished``: it ended with
    an eos (False: it ran into max length, and logprob covers the tokens it has)."""

    ids: list[int]
    logprob: float
    finished: bool

    @property
    def probability(self) -> float:
        return float(np.exp(self.logprob))


@dataclass(frozen=True)
class HFHypothesis:
    """A beam-search result: ``ids`` without the prompt or a final eos, and HF's
    ``sequences_scores``: sum of the (processed) log-probabilities incl. eos / generated_tokens **
    length_penalty (float32)."""

    ids: list[int]
    score: float


# --------------------------------------------------------------------------- greedy
def hf_answers(stepper: Stepper, prompts: np.ndarray, settings: HFGeneration) -> list[HFAnswer]:
    """Greedy search as ``generate(num_beams=1, do_sample=False)``, with each answer's probability.
    prompts (num_images, P) int64; the stepper has num_images rows. A row that has finished is still
    stepped (the stepper's rows are fixed), fed the filler id (pad, else eos) as HF feeds it, until
    every row has finished or max length is reached."""
    if settings.num_beams != 1:
        raise ValueError(f"hf_answers is greedy; num_beams is {settings.num_beams} (use hf_beam_search)")
    prompts, max_length = _check_prompts(prompts, settings)
    rows, length = prompts.shape
    process = _Processors(settings, length, max_length)
    eos = np.array(settings.eos_token_ids, np.int64)
    ids = np.zeros((rows, max_length), np.int64)
    ids[:, :length] = prompts
    ends = np.full(rows, max_length)  # index of each row's eos in ids (max_length: none)
    logprob = np.zeros(rows)
    unfinished = np.ones(rows, bool)
    logits = _first_logits(stepper, prompts)
    while True:
        scores = process(ids[:, :length], np.array(logits, np.float32))  # float32 copy, as HF's logits
        chosen = scores.argmax(axis=1).astype(np.int64)  # first maximum on ties, like torch.argmax
        picked = scores[np.arange(rows), chosen].astype(np.float64)
        # log_softmax of the processed scores, for the probability only (float64: it never picks ids)
        shifted = scores.astype(np.float64) - scores.max(axis=1, keepdims=True)
        logprob += np.where(unfinished, picked - scores.max(axis=1) - np.log(np.exp(shifted).sum(axis=1)), 0.0)
        if eos.size:
            chosen = np.where(unfinished, chosen, settings.filler_id)
        ids[:, length] = chosen
        ended = unfinished & np.isin(chosen, eos)
        ends[ended] = length
        unfinished &= ~ended
        length += 1
        if length >= max_length or not unfinished.any():
            break
        logits = stepper.step(chosen, length - 1)
    start = prompts.shape[1]
    return [HFAnswer(ids[i, start:ends[i]].tolist(), float(logprob[i]), bool(ends[i] < max_length))
            for i in range(rows)]


# --------------------------------------------------------------------------- beam search
def hf_beam_search(stepper: Stepper, prompts: np.ndarray, settings: HFGeneration) -> list[HFHypothesis]:
    """Beam search as ``generate(num_beams=k, do_sample=False)``: the best hypothesis per image.
    prompts (num_images, P) int64; the stepper has num_images * k rows, image-major, its per-image
    state already repeated k times. ``stepper.reorder`` is called only when beams move rows.

    Per step (transformers ``_beam_search``): float32 log_softmax, processors, + running scores;
    the top (1 + n_eos, at least 2) * k candidates over beams x vocab; the best k of those that
    did not hit eos / max length keep running; those of the first k that did are offered to the
    finished set at score / generated_tokens ** length_penalty, and the best k of old + new stay.
    The search ends when no image can improve (see ``_improvable``), when early_stopping is True
    and every image has k finished hypotheses, or at max length. The result is the best finished."""
    prompts, max_length = _check_prompts(prompts, settings)
    images, start = prompts.shape
    k, penalty, early = settings.num_beams, settings.length_penalty, settings.early_stopping
    eos = np.array(settings.eos_token_ids, np.int64)
    keep = max(2, 1 + eos.size) * k
    process = _Processors(settings, start, max_length)
    image_rows = np.arange(images)[:, None] * k

    running = np.zeros((images, k, max_length), np.int64)
    running[:, :, :start] = prompts[:, None, :]
    running_scores = np.zeros((images, k), np.float32)
    running_scores[:, 1:] = _NEVER  # identical beams at the start: only the first may expand
    finished = running.copy()
    finished_scores = np.full((images, k), _NEVER, np.float32)
    finished_lengths = np.zeros((images, k), np.int64)  # generated tokens (incl. eos); 0 = empty slot
    is_finished = np.zeros((images, k), bool)
    improvable = np.ones(images, bool)
    top_k_mask = np.arange(keep) < k  # only the first k candidates may become finished

    length = start
    logits = _first_logits(stepper, np.repeat(prompts, k, axis=0))
    while True:
        logprobs = process(running.reshape(images * k, max_length)[:, :length], _log_softmax32(logits))
        vocab = logprobs.shape[1]
        if keep > k * vocab:
            raise ValueError(f"beam search keeps {keep} candidates but there are only {k * vocab}")
        totals = (logprobs.reshape(images, k, vocab) + running_scores[:, :, None]).reshape(images, k * vocab)
        top = _top_k(totals, keep)
        top_scores = np.take_along_axis(totals, top, axis=1)
        top_beams, top_tokens = top // vocab, top % vocab
        candidates = np.take_along_axis(running, top_beams[:, :, None], axis=1)  # (images, keep, max_length)
        candidates[:, :, length] = top_tokens
        hits = np.isin(top_tokens, eos) | (length + 1 >= max_length)

        # the next running beams: the best k candidates that did not just stop
        masked = top_scores + hits.astype(np.float32) * _NEVER
        best = _top_k(masked, k)
        running = np.take_along_axis(candidates, best[:, :, None], axis=1)
        running_scores = np.take_along_axis(masked, best, axis=1)
        sources = np.take_along_axis(top_beams, best, axis=1)

        # the finished set: the best k of the old ones and the first k candidates that stopped
        offered = hits & top_k_mask
        new_scores = top_scores / np.float32((length + 1 - start) ** penalty)
        full = is_finished.all(axis=1, keepdims=True) & (early is True)
        new_scores = new_scores + full.astype(np.float32) * _NEVER
        new_scores = new_scores + (~improvable)[:, None].astype(np.float32) * _NEVER
        new_scores = new_scores + (~offered).astype(np.float32) * _NEVER
        merged_scores = np.concatenate([finished_scores, new_scores], axis=1)
        kept = _top_k(merged_scores, k)
        finished = np.take_along_axis(np.concatenate([finished, candidates], axis=1), kept[:, :, None], axis=1)
        finished_scores = np.take_along_axis(merged_scores, kept, axis=1)
        new_lengths = np.full((images, keep), length + 1 - start)
        finished_lengths = np.take_along_axis(np.concatenate([finished_lengths, new_lengths], axis=1), kept, axis=1)
        is_finished = np.take_along_axis(np.concatenate([is_finished, offered], axis=1), kept, axis=1)

        length += 1
        improvable = _improvable(improvable, running_scores, finished_scores, is_finished, length, max_length,
                                 start, early, penalty)
        all_full = bool(is_finished.all()) and early is True
        if not improvable.any() or all_full or hits.all():
            break
        rows = (sources + image_rows).reshape(-1)
        if not np.array_equal(rows, np.arange(rows.size)):
            stepper.reorder(rows)
        logits = stepper.step(running[:, :, length - 1].reshape(-1), length - 1)

    out = []
    for i in range(images):
        ids = finished[i, 0, start:start + finished_lengths[i, 0]].tolist()
        if ids and ids[-1] in settings.eos_token_ids:
            ids.pop()
        out.append(HFHypothesis(ids, float(finished_scores[i, 0])))
    return out


def _improvable(improvable: np.ndarray, running_scores: np.ndarray, finished_scores: np.ndarray,
                is_finished: np.ndarray, length: int, max_length: int, start: int,
                early: bool | str, penalty: float) -> np.ndarray:
    """(images,) bool: can a running beam still beat the worst finished hypothesis? HF's heuristic
    (``_check_early_stop_heuristic``): the best running score divided by the current generated
    length ** length_penalty, or by the longest possible one when early_stopping is "never" and the
    penalty is positive (longer can score higher then). Once false, it stays false."""
    hypothetical = (max_length if early == "never" and penalty > 0.0 else length) - start
    best_running = running_scores[:, 0] / np.float32(hypothetical ** penalty)
    worst = np.where(is_finished, finished_scores.min(axis=1, keepdims=True), _NEVER)
    return improvable & (best_running[:, None] > worst).any(axis=1)


# --------------------------------------------------------------------------- entry point
def hf_generate(stepper: Stepper, prompts: np.ndarray, settings: HFGeneration) -> list[list[int]]:
    """The ids ``generate()`` returns, per image, without the prompt (P decoder start / prompt
    tokens) and without the eos that ended it; no other token is stripped (a pad the model chose
    stays). prompts (num_images, P) int64; the stepper has num_images * num_beams rows, image-major.
    P == 1 runs ``stepper.step`` at position 0; P > 1 ``stepper.prefill`` (positions 0..P-1); each
    later token is stepped at its index in the decoder sequence (P, P+1, ...)."""
    if settings.num_beams == 1:
        return [answer.ids for answer in hf_answers(stepper, prompts, settings)]
    return [hypothesis.ids for hypothesis in hf_beam_search(stepper, prompts, settings)]
