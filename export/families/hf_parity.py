"""Parity of an engine made from a Hugging Face folder against transformers itself:
preprocessing against the slow image processor, every graph output against the torch
graph modules, decoder logits teacher-forced against the model's own forward, and token
ids against ``model.generate()`` with the same settings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import torch

from edgevlm.export.families.captioner_parity import teacher_forced_logits
from edgevlm.export.validate import compare


@dataclass(frozen=True)
class HFReference:
    """What transformers does for one family, for parity checks."""

    load: Callable  # (model_dir) -> (torch model, parts)
    processor: Callable  # (model_dir) -> the slow image processor
    generate: Callable  # (model, pixel_values (B,3,S,S) tensor, settings, beam_size) -> new ids per image
    logits: Callable  # (model, pixel_values (1,3,S,S) tensor, ids list) -> teacher-forced logits (T,V) tensor
    graph_modules: dict  # graph name -> module class (the exported graphs, in torch)
    # VQA families: (model, pixel_values (1,3,S,S), engine's question prompt ids, settings) -> answer ids
    answer: Callable | None = None


PARITY_QUESTIONS = ("is there a dog?", "what is the man riding?", "how many people are there?")

_KWARG_NAMES = {"forced_eos_token_ids": "forced_eos_token_id", "eos_token_ids": "eos_token_id"}


def generate_kwargs(settings, skip: tuple[str, ...] = ()) -> dict:
    """HFGeneration -> the keyword arguments that make ``model.generate()`` search the same way
    (every field passed explicitly, so the folder's generation_config cannot disagree); ``skip``:
    fields the model's generate() sets itself (BLIP: eos and pad)."""
    kwargs = {"do_sample": False, "num_return_sequences": 1}
    for name, value in dataclasses.asdict(settings).items():
        if name == "max_position_embeddings" or name in skip or value is None or value == ():
            continue
        kwargs[_KWARG_NAMES.get(name, name)] = [list(v) for v in value] if name == "bad_words_ids" else (
            list(value) if isinstance(value, tuple) else value)
    return kwargs


def slow_processor(model_dir: str):
    """The folder's image processor, Pillow backend: the exact reference the runtime matches."""
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(model_dir, backend="pil")


def strip_generated(rows, start_len: int, eos_ids: tuple[int, ...]) -> list[list[int]]:
    """generate() output rows -> new ids per row, cut before the first eos (pad follows it)."""
    out = []
    for row in rows:
        ids = [int(i) for i in row[start_len:]]
        cut = next((i for i, token in enumerate(ids) if token in eos_ids), len(ids))
        out.append(ids[:cut])
    return out


@torch.no_grad()
def hf_parity(engine, model_dir: str, images_bgr: list[np.ndarray], beam_size: int, reference: HFReference) -> dict:
    """-> {"outputs": [OutputCheck...], "tokens_identical", "captions": [(ours, transformers)], "passed"}."""
    model, _ = reference.load(model_dir)
    processor = reference.processor(model_dir)
    rgb = [cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in images_bgr]
    theirs_pixels = np.asarray(processor(images=rgb, return_tensors="np")["pixel_values"], np.float32)
    pixels = np.stack([engine.preprocess(image) for image in images_bgr])
    checks = [compare("preprocess.pixels", pixels, theirs_pixels)]

    t_pixels = torch.from_numpy(pixels)
    t_visual, t_pooled = reference.graph_modules["vision"](model)(t_pixels)
    sight = engine.see(pixels)
    checks += [compare("vision.visual_tokens", sight.visual, t_visual.numpy()),
               compare("vision.pooled", sight.pooled, t_pooled.numpy())]
    ours, theirs, identical = [], [], True
    if "caption" in engine.manifest.tasks:
        identical = _caption_parity(engine, model, reference, sight, t_pixels, t_visual, beam_size, checks, ours, theirs)
    answers = []
    if engine.answers_questions and reference.answer is not None:
        for row in range(len(images_bgr)):
            for question in PARITY_QUESTIONS:
                answer = engine.answer_visual(sight.visual[row : row + 1], [question])[0]
                settings = engine.hf_answer_inputs(sight.visual[row : row + 1], question, {})[3]
                question_ids = [engine.tokenizer.question_prompt(question, engine.manifest.model.cache_capacity)]
                expected = engine.tokenizer.decode(reference.answer(model, t_pixels[row : row + 1], question_ids,
                                                                    settings))
                answers.append((question, answer.answer, expected))
        identical = identical and all(a == b for _, a, b in answers)
    decode = engine.tokenizer.decode
    return {
        "outputs": checks,
        "tokens_identical": identical,
        "captions": [(decode(a), decode(b)) for a, b in zip(ours, theirs)],
        "answers": answers,  # (question, ours, transformers') per image and question
        "passed": identical and all(c.passed for c in checks),
    }


def _caption_parity(engine, model, reference: HFReference, sight, t_pixels, t_visual, beam_size: int, checks: list,
                    ours: list, theirs: list) -> bool:
    """Cross K/V and teacher-forced logits within tolerance (appended to ``checks``), caption
    ids (appended to ``ours``/``theirs``) -> whether the ids are identical."""
    t_cross_k, t_cross_v = reference.graph_modules["cross_kv"](model)(t_visual)
    cross_k, cross_v = engine.cross_kv(sight.visual)
    checks += [compare("cross_kv.cross_k", cross_k, t_cross_k.numpy()),
               compare("cross_kv.cross_v", cross_v, t_cross_v.numpy())]
    settings = engine.settings(beam_size)
    ours += engine.generate(sight.visual, settings)
    theirs += reference.generate(model, t_pixels, settings, beam_size)
    worst = None
    start = engine.manifest.special_tokens.bos
    for row, ids in enumerate(theirs):
        sequence = [start] + ids
        t_logits = reference.logits(model, t_pixels[row : row + 1], sequence)
        o_logits = teacher_forced_logits(engine, sequence, cross_k[:, row : row + 1], cross_v[:, row : row + 1])
        check = compare("decoder.logits", o_logits, t_logits.numpy())
        worst = check if worst is None or check.max_abs > worst.max_abs else worst
    checks.append(worst)
    return ours == theirs
