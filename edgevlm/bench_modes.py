"""Bench's other timings on the runtime alone: beam-3 captions and questions (``ask``), each
per image end to end (preprocessing, frame check, vision, search, decoding), in ms."""

from __future__ import annotations

import time

import numpy as np

from edgevlm.benchmark import percentiles_ms

# An existence question (the concept head answers it from the vision graph alone, where the
# engine has one) and one only the decoder can answer (prefill + a few greedy steps).
EXISTENCE_QUESTION = "is there a dog?"
DECODER_QUESTION = "what is the man doing?"


def beam_timing(engine, images: list[np.ndarray], rounds: int, beam: int = 3, rerank: bool = False) -> dict:
    """Per-caption p50/p90 ms and mean tokens (eos included) of ``caption_images`` at ``beam``,
    re-ranked by the engine's caption memory only with ``rerank`` (plain beam 3 stays
    comparable across engines and runs)."""
    was = engine.use_memory
    engine.use_memory = rerank and was
    try:
        engine.caption_images(images[:1], beam)  # warm-up: the beam-sized cache (and the memory) on first use
        times, tokens = [], []
        for _ in range(rounds):
            for image in images:
                t = time.perf_counter()
                engine.caption_images([image], beam)
                times.append(time.perf_counter() - t)
        sight = engine.caption_sight(np.stack([engine.preprocess(image) for image in images]), beam)
        ids = engine.generate(sight.visual, engine.settings(beam), sight.concepts, sight.pooled, sight.mirror)  # what was said
    finally:
        engine.use_memory = was
    tokens = [len(row) + 1 for row in ids]
    p50, p90 = percentiles_ms(times)
    return {"beam": beam, "ms_p50": p50, "ms_p90": p90, "mean_tokens": round(float(np.mean(tokens)), 2)}


def ask_timing(engine, images: list[np.ndarray], rounds: int,
               questions: tuple[str, ...] = (EXISTENCE_QUESTION, DECODER_QUESTION)) -> dict | None:
    """question -> {"route": "concepts"|"decoder", "ms_p50", "ms_p90"} of ``answer_image``
    with that one question; None for an engine that answers no questions."""
    if not engine.answers_questions:
        return None
    for question in questions:
        engine.answer_image(images[0], [question])  # warm-up
    times: dict[str, list[float]] = {q: [] for q in questions}
    for _ in range(rounds):  # interleaved, as bench's peers: machine noise hits every question alike
        for image in images:
            for question in questions:
                t = time.perf_counter()
                engine.answer_image(image, [question])
                times[question].append(time.perf_counter() - t)
    out = {}
    for question in questions:
        p50, p90 = percentiles_ms(times[question])
        route = "concepts" if engine.answered_by_concepts(question) else "decoder"
        out[question] = {"route": route, "ms_p50": p50, "ms_p90": p90}
    return out
