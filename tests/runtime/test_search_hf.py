"""runtime/search_hf.py gives the ids transformers' ``generate()`` gives, greedy and beam search.

Tiny random-init HF models are built here (never downloaded): a ViT + GPT-2 encoder-decoder
captioner and a GPT-2 decoder-only model that continues a prompt (the VQA shape). Their eos row
of the LM head is scaled up so hypotheses end at varied steps, some at max length. Each model is
wrapped as a stepper that re-runs the whole prefix every step (``generate(use_cache=False)`` does
the same, so both see bit-identical logits and the comparison tests the search, not float noise)
and that reorders by permuting the kept histories: a missed or wrong reorder changes the logits.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from transformers.modeling_outputs import BaseModelOutput  # noqa: E402

from edgevlm.runtime.search_hf import HFGeneration, hf_answers, hf_beam_search, hf_generate  # noqa: E402

VOCAB, PAD, START, EOS, TWIN = 99, 0, 1, 2, 3
SEEDS = [0, 1, 2, 3, 4]
IMAGES = 3
PROMPT = 4  # decoder-only prompt length
POSITIONS = 16  # decoder-only max_position_embeddings: caps generate()'s default length


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; restored afterwards for the other tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _decoder_config(**extra):
    return transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_inner=37,
                                   initializer_range=0.3, bos_token_id=START, eos_token_id=EOS,
                                   pad_token_id=PAD, tie_word_embeddings=False, **extra)


def _boost_eos(lm_head):
    with torch.no_grad():
        lm_head.weight[EOS] *= 3.0  # eos likely enough that beams finish at different lengths


@functools.lru_cache(maxsize=None)
def captioner(seed: int, twin_eos: bool = False):
    """ViT encoder (image 32, patch 16) + GPT-2 decoder with cross-attention, random init.
    ``twin_eos``: token TWIN's LM-head row is made close to eos's (and both larger), so with
    eos_token_id=[EOS, TWIN] more than k of the top 2k candidates can be eos."""
    torch.manual_seed(seed)
    encoder = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=37, image_size=32, patch_size=16, initializer_range=0.3)
    decoder = _decoder_config(n_positions=64, add_cross_attention=True, is_decoder=True)
    config = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    model = transformers.VisionEncoderDecoderModel(config).eval()
    _boost_eos(model.decoder.lm_head)
    if twin_eos:
        with torch.no_grad():
            weight = model.decoder.lm_head.weight
            weight[EOS] *= 1.5
            weight[TWIN] = weight[EOS] + 0.1 * torch.randn(weight.shape[1], generator=torch.Generator().manual_seed(seed))
    pixels = torch.randn(IMAGES, 3, 32, 32, generator=torch.Generator().manual_seed(100 + seed))
    return model, pixels


@functools.lru_cache(maxsize=None)
def language_model(seed: int):
    """GPT-2 decoder-only, random init, and two prompts of PROMPT tokens."""
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(_decoder_config(n_positions=POSITIONS)).eval()
    _boost_eos(model.lm_head)
    prompts = np.random.default_rng(seed).integers(3, VOCAB, size=(2, PROMPT))
    return model, prompts


class HistoryStepper:
    """The stepper protocol over a torch model without a cache: each call runs every row's whole
    decoder sequence and returns the last position's logits (R, V) float32."""

    def __init__(self, run):
        self.run = run  # (R, T) int64 histories -> (R, V) logits
        self.calls = 0
        self.history = None
        self.reorders = []

    def prefill(self, prompts):
        self.history = np.array(prompts, np.int64)
        self.calls += 1
        return self.run(self.history)

    def step(self, tokens, position):
        assert tokens.dtype == np.int64 and tokens.ndim == 1
        if position == 0:
            self.history = tokens[:, None].copy()
        else:
            assert position == self.history.shape[1], "step must be at the next cache slot"
            self.history = np.concatenate([self.history, tokens[:, None]], axis=1)
        self.calls += 1
        return self.run(self.history)

    def reorder(self, rows):
        assert not np.array_equal(rows, np.arange(len(rows))), "reorder only when rows move"
        self.reorders.append(np.array(rows))
        self.history = self.history[rows]


def captioner_stepper(seed: int, beams: int, twin_eos: bool = False) -> HistoryStepper:
    model, pixels = captioner(seed, twin_eos)
    with torch.no_grad():  # encoded once per image, repeated per beam, as generate() expands it
        hidden = model.encoder(pixel_values=pixels).last_hidden_state.repeat_interleave(beams, dim=0)

    def run(history):
        with torch.no_grad():
            out = model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                        decoder_input_ids=torch.from_numpy(history), use_cache=False)
        return out.logits[:, -1].float().numpy()

    return HistoryStepper(run)


def language_stepper(seed: int) -> HistoryStepper:
    model, _ = language_model(seed)

    def run(history):
        with torch.no_grad():  # logits_to_keep=1 as generate() passes it: the same lm-head matmul
            out = model(input_ids=torch.from_numpy(history), use_cache=False, logits_to_keep=1)
        return out.logits[:, -1].float().numpy()

    return HistoryStepper(run)


def _generate(model, inputs: dict, **settings):
    """generate() with exactly ``settings``: the dict output (scores, beam indices) and how many
    decoder forwards it ran (one per step; a stepper that stops at the same step runs as many)."""
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            out = model.generate(**inputs, **settings, do_sample=False, use_cache=False,
                                 return_dict_in_generate=True, output_scores=True)
    finally:
        hook.remove()
    return out, len(calls)


def _reference_ids(out, prompt_length: int, eos_ids: set[int], beams: int) -> list[list[int]]:
    """generate()'s sequences as hf_generate reports them: no prompt, no final eos, no filler.
    Greedy rows end at their first eos (pads follow); a beam row's length is its beam-index count."""
    rows = out.sequences[:, prompt_length:].tolist()
    if beams == 1:
        return [row[: next((i for i, t in enumerate(row) if t in eos_ids), len(row))] for row in rows]
    lengths = (out.beam_indices != -1).sum(dim=1).tolist()
    result = []
    for row, length in zip(rows, lengths):
        row = row[:length]
        result.append(row[:-1] if row and row[-1] in eos_ids else row)
    return result


def _check_captioner(seed: int, twin_eos: bool = False, **settings) -> list[list[int]]:
    """Our search on the captioner equals generate() with ``settings``, in ids and in the number
    of decoder runs (it stops at the same step); returns the ids."""
    model, pixels = captioner(seed, twin_eos)
    beams = settings.get("num_beams", 1)
    settings = {"eos_token_id": EOS, "pad_token_id": PAD, "decoder_start_token_id": START, **settings}
    out, forwards = _generate(model, {"pixel_values": pixels}, **settings)
    hf = HFGeneration.from_generation_config({}, **settings)
    stepper = captioner_stepper(seed, beams, twin_eos)
    ids = hf_generate(stepper, hf.start_prompts(IMAGES), hf)
    assert ids == _reference_ids(out, 1, set(hf.eos_token_ids), beams)
    assert stepper.calls == forwards
    if beams == 1:
        assert stepper.reorders == []
    return ids


def _check_language(seed: int, max_position_embeddings=None, **settings) -> list[list[int]]:
    model, prompts = language_model(seed)
    beams = settings.get("num_beams", 1)
    settings = {"eos_token_id": EOS, "pad_token_id": PAD, **settings}
    out, forwards = _generate(model, {"input_ids": torch.from_numpy(prompts),
                                      "attention_mask": torch.ones(prompts.shape, dtype=torch.long)}, **settings)
    hf = HFGeneration.from_generation_config({}, max_position_embeddings=max_position_embeddings, **settings)
    stepper = language_stepper(seed)
    ids = hf_generate(stepper, prompts, hf)
    assert ids == _reference_ids(out, PROMPT, set(hf.eos_token_ids), beams)
    assert stepper.calls == forwards
    return ids


# --------------------------------------------------------------------------- greedy
@pytest.mark.parametrize("seed", SEEDS)
def test_greedy_matches_generate_with_its_probability(seed):
    model, pixels = captioner(seed)
    settings = {"max_new_tokens": 10, "eos_token_id": EOS, "pad_token_id": PAD, "decoder_start_token_id": START}
    out, _ = _generate(model, {"pixel_values": pixels}, **settings)
    hf = HFGeneration.from_generation_config({}, **settings)
    answers = hf_answers(captioner_stepper(seed, 1), hf.start_prompts(IMAGES), hf)
    expected = _reference_ids(out, 1, {EOS}, 1)
    assert [a.ids for a in answers] == expected
    # probability: the product over the chosen tokens, eos included, of softmax(processed logits)
    logprobs = torch.stack(out.scores, dim=1).double().log_softmax(dim=-1)  # (images, steps, V)
    chosen = out.sequences[:, 1:]
    for i, answer in enumerate(answers):
        steps = len(expected[i]) + answer.finished
        picked = logprobs[i, torch.arange(steps), chosen[i, :steps]].sum().item()
        assert answer.finished == (EOS in chosen[i].tolist())
        assert answer.logprob == pytest.approx(picked, abs=1e-5)
        assert 0.0 < answer.probability <= 1.0


# --------------------------------------------------------------------------- beam search
BEAM_CASES = [
    {"length_penalty": 1.0, "early_stopping": False},
    {"length_penalty": 0.6, "early_stopping": True},
    {"length_penalty": 2.0, "early_stopping": False},
    {"length_penalty": 2.0, "early_stopping": True},  # seed 4: all beams full long before the heuristic gives up
    {"length_penalty": 2.0, "early_stopping": "never"},
]


@pytest.mark.parametrize("case", BEAM_CASES, ids=lambda c: f"lp{c['length_penalty']}-es{c['early_stopping']}")
@pytest.mark.parametrize("seed", SEEDS)
def test_beam_search_matches_generate(seed, case):
    model, pixels = captioner(seed)
    settings = {"num_beams": 3, "max_new_tokens": 10, "eos_token_id": EOS, "pad_token_id": PAD,
                "decoder_start_token_id": START, **case}
    out, forwards = _generate(model, {"pixel_values": pixels}, **settings)
    hf = HFGeneration.from_generation_config({}, **settings)
    stepper = captioner_stepper(seed, 3)
    hypotheses = hf_beam_search(stepper, hf.start_prompts(IMAGES), hf)
    assert [h.ids for h in hypotheses] == _reference_ids(out, 1, {EOS}, 3)
    assert stepper.calls == forwards  # early stopping ends the search at generate()'s step
    # the finished-score formula: float32 sums / generated_length ** length_penalty, as sequences_scores
    np.testing.assert_allclose([h.score for h in hypotheses], out.sequences_scores.numpy(), rtol=1e-5)
    assert stepper.reorders, "three beams over ten steps move rows at least once"


def test_beam_tests_see_hypotheses_end_at_varied_lengths():
    """The eos boost does its job: across the seeds, beam results end early and at max length."""
    lengths = {len(ids) for seed in SEEDS for ids in _check_captioner(seed, num_beams=3, max_new_tokens=10)}
    assert 10 in lengths and len(lengths) >= 4


@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize("seed", [0, 2])
def test_min_new_tokens_suppresses_eos(seed, beams):
    ids = _check_captioner(seed, num_beams=beams, max_new_tokens=10, min_new_tokens=6)
    assert all(len(row) >= 6 for row in ids)


@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize("seed", [1, 3])
def test_no_repeat_ngram_and_repetition_penalty(seed, beams):
    ids = _check_captioner(seed, num_beams=beams, max_new_tokens=10, no_repeat_ngram_size=2,
                           repetition_penalty=1.3)
    for row in ids:
        pairs = list(zip([START] + row, row))
        assert len(pairs) == len(set(pairs))


@pytest.mark.parametrize("beams", [1, 3])
def test_bad_words_suppress_and_forced_eos(beams):
    ids = _check_captioner(4, num_beams=beams, max_length=9, bad_words_ids=[[5], [7, 8]],
                           suppress_tokens=[11, 12], forced_eos_token_id=EOS)
    assert all(not {5, 11, 12} & set(row) for row in ids)


@pytest.mark.parametrize("seed", [1, 6])
def test_several_eos_ids_keep_more_candidates(seed):
    # two likely eos ids: generate keeps (1 + 2) * k candidates per step, so k live beams remain
    # even when more than k of the best 2k end; these seeds end differently with only 2k kept
    ids = _check_captioner(seed, twin_eos=True, num_beams=3, max_new_tokens=10, eos_token_id=[EOS, TWIN],
                           length_penalty=2.0)
    assert all(TWIN not in row for row in ids)
    _check_captioner(seed, twin_eos=True, max_new_tokens=10, eos_token_id=[EOS, TWIN])


# --------------------------------------------------------------------------- decoder-only, prompted
@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prompted_decoder_only_matches_generate(seed, beams):
    # the prompt counts in max_length and min_length, and in the n-grams: prefill then steps at P, P+1..
    _check_language(seed, num_beams=beams, max_length=PROMPT + 9, min_length=PROMPT + 2,
                    no_repeat_ngram_size=2, length_penalty=0.6)


@pytest.mark.filterwarnings("ignore:Using the model-agnostic default `max_length`")
def test_default_length_is_twenty_new_tokens_capped_by_the_position_table():
    hf = HFGeneration.from_generation_config({}, max_position_embeddings=POSITIONS)
    assert hf.max_new_tokens_for(PROMPT) == POSITIONS - PROMPT  # min(20 + P, 16) - P
    assert HFGeneration().max_new_tokens_for(1) == 20
    ids = _check_language(3, max_position_embeddings=POSITIONS, num_beams=3)
    assert max(len(row) for row in ids) <= POSITIONS - PROMPT


# --------------------------------------------------------------------------- settings
def test_settings_read_generation_config_with_hf_defaults():
    hf = HFGeneration.from_generation_config({"eos_token_id": [2, 5], "decoder_start_token_id": 1, "num_beams": 4,
                                              "max_length": 24, "early_stopping": True, "top_k": 5,
                                              "_from_model_config": True, "transformers_version": "5.24.0"})
    assert hf.eos_token_ids == (2, 5) and hf.filler_id == 2 and hf.start_token_id == 1
    assert hf.num_beams == 4 and hf.early_stopping is True and hf.length_penalty == 1.0
    assert hf.max_new_tokens_for(1) == 23 and hf.max_new_tokens_for(PROMPT) == 24 - PROMPT
    assert HFGeneration.from_generation_config({"bos_token_id": 7}).start_token_id == 7
    assert HFGeneration(min_new_tokens=3).min_total_length(5) == 8


def test_settings_round_trip_through_json():
    hf = HFGeneration.from_generation_config({"eos_token_id": 2, "bad_words_ids": [[5], [7, 8]], "num_beams": 3,
                                              "early_stopping": "never", "suppress_tokens": [4]},
                                             max_position_embeddings=64, length_penalty=0.6)
    text = json.dumps(hf.to_json())
    assert HFGeneration.from_json(json.loads(text)) == hf


@pytest.mark.parametrize("config, field", [
    ({"do_sample": True}, "do_sample"),
    ({"num_beam_groups": 2, "diversity_penalty": 0.5}, "num_beam_groups"),
    ({"sequence_bias": [[[5], 1.0]]}, "sequence_bias"),
    ({"num_return_sequences": 2}, "num_return_sequences"),
    ({"forced_decoder_ids": [[1, 5]]}, "forced_decoder_ids"),
    ({"early_stopping": "sometimes"}, "early_stopping"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
])
def test_unsupported_settings_are_refused_by_name(config, field):
    with pytest.raises(ValueError, match=field):
        HFGeneration.from_generation_config(config)


def test_ignore_fields_accepts_a_named_unknown_key():
    hf = HFGeneration.from_generation_config({"lang_to_id": {"en": 3}}, ignore_fields=("lang_to_id",))
    assert hf == HFGeneration()


def test_a_prompt_as_long_as_max_length_is_refused():
    with pytest.raises(ValueError, match="max_length"):
        hf_generate(language_stepper(0), np.ones((2, 6), np.int64), HFGeneration(max_length=6, eos_token_ids=EOS))


# --------------------------------------------------------------------------- processors, directly
PROCESSOR_SETTINGS = {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "bad_words_ids": [[5], [7, 8], [EOS]],
                      "min_length": 6, "forced_bos_token_id": 9, "forced_eos_token_id": EOS,
                      "suppress_tokens": [4], "begin_suppress_tokens": [6], "max_length": 9}


@pytest.mark.parametrize("prompt_length", [1, 3])
@pytest.mark.parametrize("length", range(1, 9))
def test_processors_equal_generates_own_list(length, prompt_length):
    """Our processors against the list generate() builds (``_get_logits_processor``, in its order)
    on histories from a 7-token alphabet, so n-grams, bad words and the prompt's own tokens repeat."""
    model, _ = language_model(0)
    settings = {"eos_token_id": EOS, **PROCESSOR_SETTINGS}
    config = transformers.GenerationConfig(**settings)
    model._prepare_special_tokens(config, device="cpu")
    reference = model._get_logits_processor(config, input_ids_seq_length=prompt_length, device="cpu", model_kwargs={})
    rng = np.random.default_rng(length * 10 + prompt_length)
    ids = rng.integers(3, 10, size=(6, length))
    scores = rng.standard_normal((6, VOCAB)).astype(np.float32) * 3
    expected = reference(torch.from_numpy(ids), torch.from_numpy(scores.copy())).numpy()

    from edgevlm.runtime.search_hf import _Processors  # the unit under test: no public surface

    hf = HFGeneration.from_generation_config({}, **settings)
    ours = _Processors(hf, prompt_length, hf.max_total_length(prompt_length))(ids, scores.copy())
    np.testing.assert_array_equal(ours, expected)


def test_top_k_breaks_exact_ties_toward_the_lower_index():
    from edgevlm.runtime.search_hf import _top_k

    values = np.array([[1.0, 3.0, 3.0, -np.inf, 3.0, 2.0, 3.0],
                       [-np.inf, -np.inf, 0.5, -np.inf, -np.inf, -np.inf, -np.inf]], np.float32)
    assert _top_k(values, 3).tolist() == [[1, 2, 4], [2, 0, 1]]
    assert _top_k(values, 7).tolist() == np.argsort(-values, axis=1, kind="stable").tolist()
