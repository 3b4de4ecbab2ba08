"""The calibration data contract: iterables of ``{input_name: ndarray}`` per graph.

The same dicts feed onnxruntime's calibrators, an FP32/INT8 comparison, or a TensorRT
calibrator. Decoder feeds are recorded from the runtime's own cache path: real caption
tokens on real images, written into the KV cache step by step exactly as at inference,
and, for VQA engines, question prompts prefilled as one prefix (the T > 1, both-ways
attention path), with questions generated from the image's captions.

BLIP VQA (``blip-vqa``) runs four graphs: vision -> question (the question encoded against the
image) -> cross_kv (the answer decoder's K/V over the question) -> decoder (the answer). Its
question, cross_kv and decoder feeds all come from the same calibration questions: generated
from the image's captions, or everyday generic ones when the source has none, tokenized by the
engine's own question prompt; the decoder's are recorded along the FP32 engine's own greedy
answer, through the runtime's cache path.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from edgevlm.data.vqa_questions import generate_questions
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.kv_cache import KVCache
from edgevlm.runtime.search_hf import hf_answers
from edgevlm.runtime.steppers import CacheStepper

from .sources import CalibrationSet


def vision_feeds(engine: CaptionEngine, calib: CalibrationSet) -> Iterator[dict]:
    for image in calib.images:
        yield {"pixels": engine.preprocess(image)[None]}


def cross_kv_feeds(engine: CaptionEngine, calib: CalibrationSet) -> Iterator[dict]:
    for feed in vision_feeds(engine, calib):
        yield {"visual_tokens": engine.encode(feed["pixels"])[0]}


class _RecordingBackend:
    """Runs the real backend and hands out a copy of every decoder feed."""

    def __init__(self, backend):
        self.backend = backend
        self.recorded: list[dict] = []

    def run(self, graph: str, feeds: dict) -> dict:
        if graph == "decoder":
            self.recorded.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        return self.backend.run(graph, feeds)


def decoder_feeds(engine: CaptionEngine, calib: CalibrationSet, per_image: int = 1) -> Iterator[dict]:
    """Teacher-forced decoder feeds along up to ``per_image`` human captions per image (or,
    for sources without captions, the FP32 engine's own greedy caption)."""
    m, tokens = engine.manifest.model, engine.manifest.special_tokens
    limit = m.cache_capacity - 1
    recorder = _RecordingBackend(engine.backend)
    cache = KVCache(m.n_layers, 1, m.n_heads, m.cache_capacity, m.head_dim)
    takes_prefix_len = engine.manifest.graph("decoder").takes("prefix_len")
    for image, human in zip(calib.images, calib.captions):
        visual, _ = engine.encode(engine.preprocess(image)[None])
        cross_k, cross_v = engine.cross_kv(visual)
        if human:
            sequences = [engine.tokenizer.encode(c)[: limit - 1] for c in human[:per_image]]
        else:
            sequences = engine.generate(visual, engine.settings(1))
        stepper = CacheStepper(recorder, cache, cross_k, cross_v, takes_prefix_len)
        for ids in sequences:
            for position, token in enumerate([tokens.bos] + ids):
                stepper.step(np.array([token], np.int64), position)
                yield recorder.recorded.pop()
        if engine.answers_questions and human:
            for prompt in _question_prompts(engine, human)[:per_image]:
                stepper.prefill(np.array([prompt], np.int64))
                yield recorder.recorded.pop()


def _question_prompts(engine: CaptionEngine, captions: list[str]) -> list[list[int]]:
    """VQA prompt ids for the questions the generator makes from these captions."""
    capacity = engine.manifest.model.cache_capacity
    return [engine.tokenizer.question_prompt(q, capacity) for q in _caption_questions(captions, 0)]


def _caption_questions(captions: list[str], image_id: int) -> list[str]:
    """The questions the generator makes from one image's captions (its "no" questions are
    seeded by ``image_id``)."""
    return [q["question"] for q in generate_questions([{"image_id": image_id, "file_name": "",
                                                        "captions": list(captions)}])]


# --------------------------------------------------------------------------- BLIP VQA
# Asked of images whose source has no captions (a folder, a video): the everyday kinds (what,
# yes/no, colour, count, where), so the question graph sees ordinary words and lengths.
GENERIC_QUESTIONS = ("what is in the picture?", "is there a person?", "what color is it?",
                     "how many people are there?", "where is this?")
QUESTIONS_PER_IMAGE = 2


def calibration_questions(captions: list[str], index: int, per_image: int = QUESTIONS_PER_IMAGE) -> list[str]:
    """Up to ``per_image`` questions about calibration image ``index``: generated from its
    captions, spread evenly over the generator's list (which is ordered by kind: colour,
    location, number, object, yes/no), else generic ones, rotated by ``index`` so that every
    generic question is asked somewhere in the set."""
    generated = _caption_questions(captions, index) if captions else []
    if generated:
        # linspace with num <= len steps by >= 1: the picks are distinct
        picks = np.linspace(0, len(generated) - 1, num=min(per_image, len(generated))).astype(int)
        return [generated[i] for i in picks]
    count = min(per_image, len(GENERIC_QUESTIONS))
    return [GENERIC_QUESTIONS[(index + k) % len(GENERIC_QUESTIONS)] for k in range(count)]


def _image_questions(engine: CaptionEngine, calib: CalibrationSet) -> Iterator[tuple[np.ndarray, str]]:
    """(visual tokens (1,N,D) of the FP32 vision graph, question) per calibration image and question."""
    for index, (image, captions) in enumerate(zip(calib.images, calib.captions)):
        visual, _ = engine.encode(engine.preprocess(image)[None])
        for question in calibration_questions(captions, index):
            yield visual, question


def question_feeds(engine: CaptionEngine, calib: CalibrationSet) -> Iterator[dict]:
    """The question graph's feeds: question_ids (1,Q) int64, the prompt the runtime itself
    builds for each calibration question ([CLS] words [SEP]), and visual_tokens (1,N,D) of
    the image it is asked about."""
    for visual, question in _image_questions(engine, calib):
        yield {"question_ids": np.array([engine.hf_question_ids(question)], np.int64),
               "visual_tokens": np.ascontiguousarray(visual, np.float32)}


def question_cross_kv_feeds(engine: CaptionEngine, calib: CalibrationSet) -> Iterator[dict]:
    """The answer decoder's cross_kv feeds: question_states (1,Q,D), the FP32 question graph's
    output for each of question_feeds (VQA's cross-attention reads the question, not the image)."""
    for feed in question_feeds(engine, calib):
        yield {"question_states": engine.backend.run("question", feed)["question_states"]}


def answer_decoder_feeds(engine: CaptionEngine, calib: CalibrationSet) -> Iterator[dict]:
    """The answer decoder's feeds, teacher-forced along the FP32 engine's own greedy answer to
    each calibration question, from bos at position 0: input_ids (1,1), position (),
    cache_k/cache_v (L,1,H,C,hd), cross_k/cross_v (L,1,H,Q,hd).

    Recorded from the runtime's own answer path (hf_answer_inputs, then hf_answers on a
    CacheStepper): greedy search feeds back each token it picks, so its decoder runs are the
    teacher-forced runs along its answer, and the cache is written exactly as at inference.
    The last picked token (eos, or the last one allowed) is never fed, as at inference."""
    m = engine.manifest.model
    recorder = _RecordingBackend(engine.backend)
    cache = KVCache(m.n_layers, 1, m.n_heads, m.cache_capacity, m.head_dim)
    takes_prefix_len = engine.manifest.graph("decoder").takes("prefix_len")
    for visual, question in _image_questions(engine, calib):
        cross_k, cross_v, prompt, settings = engine.hf_answer_inputs(visual, question, {})
        hf_answers(CacheStepper(recorder, cache, cross_k, cross_v, takes_prefix_len), prompt, settings)
        feeds, recorder.recorded = recorder.recorded, []
        yield from feeds


def decoder_step_feeds(engine: CaptionEngine, calib: CalibrationSet) -> Iterator[dict]:
    """The single-token step graph's feeds (export/step_graph.py): the decoder's one-token
    feeds, which are its inputs less ``prefix_len`` (0 at every step), the cache and cross K/V
    split per layer where the graph takes them so."""
    from edgevlm.runtime.steppers import LAYERED_STEP_INPUTS, per_layer, takes_layers
    from edgevlm.runtime.token_embeddings import STEP_EMBEDS_INPUT

    layered = takes_layers(engine.manifest)
    embeds = engine.manifest.graph("decoder_step").takes(STEP_EMBEDS_INPUT)
    for feed in decoder_feeds(engine, calib):
        if feed["input_ids"].shape[1] == 1:
            step = {name: value for name, value in feed.items() if name != "prefix_len"}
            if embeds:  # the token's row, as the stepper feeds it (runtime/token_embeddings.py)
                step[STEP_EMBEDS_INPUT] = engine.backend.token_embeddings().rows(step.pop("input_ids"))
            if layered:
                for name in LAYERED_STEP_INPUTS:  # the recorded copies are contiguous: so are their layers
                    step |= per_layer(name, step.pop(name))
            yield step


# model family -> graph -> feeds(engine, calib); the family registry's calibration side. Every
# family on the three-graph contract (vision, cross_kv, decoder) records its feeds the same way.
CONTRACT_FEEDS = {"vision": vision_feeds, "cross_kv": cross_kv_feeds, "decoder": decoder_feeds,
                  "decoder_step": decoder_step_feeds}  # ours only: the optional single-token graph
# BLIP VQA adds the question graph, and its cross_kv and decoder read the question, not the image.
BLIP_VQA_FEEDS = {"vision": vision_feeds, "question": question_feeds, "cross_kv": question_cross_kv_feeds,
                  "decoder": answer_decoder_feeds}
FAMILY_FEEDS = {"edgevlm-captioner": CONTRACT_FEEDS, "vision-encoder-decoder": CONTRACT_FEEDS, "git": CONTRACT_FEEDS,
                "blip": CONTRACT_FEEDS, "blip-vqa": BLIP_VQA_FEEDS}


def graph_feeds(engine: CaptionEngine, graph: str, calib: CalibrationSet) -> Iterator[dict]:
    """Real feeds for one of the engine's graphs, by the engine's model family."""
    from edgevlm.errors import EdgeVLMError

    family = engine.manifest.model.family
    if family not in FAMILY_FEEDS or graph not in FAMILY_FEEDS[family]:
        raise EdgeVLMError(f"no calibration feeds for graph {graph!r} of model family {family!r}; "
                           f"quantize supports {', '.join(sorted(FAMILY_FEEDS))}")
    return FAMILY_FEEDS[family][graph](engine, calib)


class FeedReader(CalibrationDataReader):
    """onnxruntime's reader interface over any iterable of feed dicts."""

    def __init__(self, feeds: Iterable[dict]):
        self._feeds = iter(feeds)

    def get_next(self) -> dict | None:
        return next(self._feeds, None)
