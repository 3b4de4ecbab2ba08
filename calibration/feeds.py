"""The calibration data contract: iterables of ``{input_name: ndarray}`` per graph.

The same dicts feed onnxruntime's calibrators, an FP32/INT8 comparison, or a TensorRT
calibrator. Decoder feeds are recorded from the runtime's own cache path: real caption
tokens on real images, written into the KV cache step by step exactly as at inference,
and, for VQA engines, question prompts prefilled as one prefix (the T > 1, both-ways
attention path), with questions generated from the image's captions.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from edgevlm.data.vqa_questions import generate_questions
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.kv_cache import KVCache
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
    questions = generate_questions([{"image_id": 0, "file_name": "", "captions": list(captions)}])
    capacity = engine.manifest.model.cache_capacity
    return [engine.tokenizer.question_prompt(q["question"], capacity) for q in questions]


# model family -> graph -> feeds(engine, calib); the family registry's calibration side. Every
# family on the three-graph contract (vision, cross_kv, decoder) records its feeds the same way.
CONTRACT_FEEDS = {"vision": vision_feeds, "cross_kv": cross_kv_feeds, "decoder": decoder_feeds}
FAMILY_FEEDS = {"edgevlm-captioner": CONTRACT_FEEDS, "vision-encoder-decoder": CONTRACT_FEEDS, "git": CONTRACT_FEEDS,
                "blip": CONTRACT_FEEDS}


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
