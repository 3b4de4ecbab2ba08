"""Hallucination and self-consistency of generated captions: the part of ``edgevlm eval
--data`` beyond BLEU/CIDEr, for a PyTorch model folder or an engine.

- ``caption_report``: CHAIR, repeated words and (given an ``ask``) consistency, keyed by
  the index of each image in ``items``.
- ``engine_captions`` / ``engine_ask`` and ``model_ask``: where the captions and the
  answers come from. The engine captions preprocessed pixels with ``caption_pixels`` (the
  raw grounded captions: metrics read what the model says, not the hedged text), and
  answers about the same pixels, so caption and answer see the same image.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from edgevlm.data.coco import CaptionedImage
from edgevlm.data.object_lexicon import mentioned
from edgevlm.errors import EdgeVLMError
from edgevlm.evaluation.hallucination import Ask, chair, consistency, repeated_word_rate

NO_ANSWERS = "{what} answers no questions, so captions cannot be checked for consistency; pass --no-consistency"


def caption_report(items: list[CaptionedImage], captions: list[str], ask: Ask | None = None,
                   progress: bool = False) -> dict:
    """items[i]'s human captions against captions[i] (one generated caption per image) ->
    {"chair": chair(), "repeated_words": repeated_word_rate(), "consistency": consistency()
    or None without ``ask``}. ``ask(i, questions)`` answers about items[i]'s image."""
    if len(items) != len(captions):
        raise ValueError(f"caption_report: {len(captions)} captions for {len(items)} images")
    generated = dict(enumerate(captions))
    report = {
        "chair": chair(generated, {i: list(item.captions) for i, item in enumerate(items)}),
        "repeated_words": repeated_word_rate(captions),
        "consistency": None,
    }
    if ask is not None:
        report["consistency"] = consistency(generated, _with_progress(ask, captions) if progress else ask)
    return report


def _with_progress(ask: Ask, captions: list[str]) -> Ask:
    """``ask`` that advances a progress bar; consistency() asks once per caption naming an object."""
    from tqdm import tqdm

    bar = tqdm(total=sum(bool(mentioned(c)) for c in captions), desc="consistency", unit="image")

    def counted(key: Hashable, questions: list[str]) -> list[tuple[str, float, bool]]:
        answers = ask(key, questions)
        bar.update(1)
        if bar.n >= bar.total:
            bar.close()
        return answers

    return counted


# --------------------------------------------------------------------------- engines
def engine_captions(engine, paths: list[str], beam_size: int | None, batch_size: int = 32,
                    progress: bool = False) -> list[str]:
    """Image files -> the engine's raw grounded captions (``caption_pixels``), in batches."""
    from edgevlm.runtime.preprocess import read_image_bgr

    captions: list[str] = []
    batches = range(0, len(paths), batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="captioning", unit="batch")
    for start in batches:
        pixels = np.stack([engine.preprocess(read_image_bgr(p)) for p in paths[start : start + batch_size]])
        captions.extend(engine.caption_pixels(pixels, beam_size))
    return captions


def engine_ask(engine, paths: list[str]) -> Ask:
    """ask(i, questions) -> (text, probability, abstained) per question about paths[i], from
    the engine at its own thresholds (existence questions from its concept head, if any)."""
    from edgevlm.runtime.preprocess import read_image_bgr

    if not engine.answers_questions:
        raise EdgeVLMError(NO_ANSWERS.format(what=f"the engine {engine.manifest.root}"))

    def ask(key: int, questions: list[str]) -> list[tuple[str, float, bool]]:
        sight = engine.question_sight(engine.preprocess(read_image_bgr(paths[key]))[None], questions)
        return [(a.text, a.probability, a.abstained) for a in engine.answer_sight(sight, questions)]

    return ask


# --------------------------------------------------------------------------- PyTorch
def model_ask(model, tokenizer, paths: list[str]) -> Ask:
    """The same with a PyTorch model, abstaining as its exported engine would before any
    tuning: concept answers below the model's concepts.abstain_below, decoder answers below
    DEFAULT_ABSTAIN_BELOW or empty."""
    from edgevlm.evaluation.vqa_eval import ModelAnswerer
    from edgevlm.runtime.engine import DEFAULT_ABSTAIN_BELOW, NOT_SURE, unknown_object_answer
    from edgevlm.features import load_pixels

    if tokenizer.sep_id is None:
        raise EdgeVLMError(NO_ANSWERS.format(what="this model (its tokenizer has no [SEP] token)"))
    answer = ModelAnswerer(model, tokenizer)
    below = {"concepts": float(model.cfg.concepts.abstain_below), "decoder": DEFAULT_ABSTAIN_BELOW}

    def ask(key: int, questions: list[str]) -> list[tuple[str, float, bool]]:
        out = []
        for question, (text, probability, source) in zip(questions, answer(load_pixels(paths[key], model.cfg),
                                                                           questions)):
            if source == "unknown_object":  # said as the engine says it
                out.append((unknown_object_answer(answer.existence.unknown_object(question)).text, probability, True))
                continue
            abstained = probability < below[source] or not text
            out.append((NOT_SURE if abstained else text, probability, abstained))
        return out

    return ask
