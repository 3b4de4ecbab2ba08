"""Parity of an engine made from a Hugging Face folder against transformers itself:
preprocessing against the slow image processor, every graph output against the torch
graph modules, decoder logits teacher-forced against the model's own forward, and token
ids against ``model.generate()`` with the same settings.

VQA engines are checked on every image and PARITY_QUESTIONS: answers against generate()'s,
and where the question is a graph of its own (BLIP VQA), the question states, the answer
decoder's cross K/V over them and its logits teacher-forced along transformers' answer, each
reported once, at its worst over all images and questions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import torch

from edgevlm.export.families.captioner_parity import teacher_forced_logits
from edgevlm.export.validate import OutputCheck, compare
from edgevlm.runtime.steppers import STEP_GRAPH


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
    # VQA families with a question graph: (model, pixel_values (1,3,S,S), question prompt ids (1,Q)
    # as a nested list, [bos] + answer ids) -> the answer decoder's teacher-forced logits (T,V) tensor
    answer_logits: Callable | None = None


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
        answers = _answer_parity(engine, model, reference, sight, t_pixels, t_visual, checks)
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
    start = engine.manifest.special_tokens.bos
    t_logits = [reference.logits(model, t_pixels[row : row + 1], [start] + ids).numpy() for row, ids in enumerate(theirs)]
    # per graph: the general decoder (prefill, GPU/TensorRT steps) and the step graph (CPU steps)
    for graph in ("decoder", STEP_GRAPH) if STEP_GRAPH in engine.manifest.graphs else ("decoder",):
        worst = None
        for row, ids in enumerate(theirs):
            o_logits = teacher_forced_logits(engine, [start] + ids, cross_k[:, row : row + 1], cross_v[:, row : row + 1],
                                             graph)
            check = compare(f"{graph}.logits", o_logits, t_logits[row])
            worst = check if worst is None or check.max_abs > worst.max_abs else worst
        checks.append(worst)
    return ours == theirs


def _answer_parity(engine, model, reference: HFReference, sight, t_pixels, t_visual, checks: list) -> list[tuple]:
    """Every image's answer to every PARITY_QUESTIONS question, ours and generate()'s ->
    [(question, ours, transformers')]. For engines with a question graph (BLIP VQA) the
    worst check of each of its numeric outputs over all of them is appended to ``checks``."""
    numeric = "question" in engine.manifest.graphs and reference.answer_logits is not None
    graphs = {name: reference.graph_modules[name](model).eval() for name in ("question", "cross_kv")} if numeric else {}
    worst: dict[str, OutputCheck] = {}
    answers = []
    for row in range(len(t_pixels)):
        visual, t_image = sight.visual[row : row + 1], t_pixels[row : row + 1]
        for question in PARITY_QUESTIONS:
            answer = engine.answer_visual(visual, [question])[0]
            settings = engine.hf_answer_inputs(visual, question, {})[3]
            question_ids = [engine.hf_question_ids(question)]
            expected = reference.answer(model, t_image, question_ids, settings)
            answers.append((question, answer.answer, engine.tokenizer.decode(expected)))
            if numeric:
                for check in _question_checks(engine, model, reference, graphs, visual, t_visual[row : row + 1],
                                              t_image, question_ids, expected):
                    worst[check.name] = _worse(worst.get(check.name), check)
    checks += worst.values()
    return answers


def _question_checks(engine, model, reference: HFReference, graphs: dict, visual: np.ndarray,
                     t_visual: torch.Tensor, t_pixels: torch.Tensor, question_ids: list[list[int]],
                     answer: list[int]) -> list[OutputCheck]:
    """One image and question through BLIP VQA's answer path, ours against torch's; each side
    fed its own upstream outputs, as a deployed engine is:
    - question.question_states (1,Q,D): the engine's question graph over our visual tokens
      (1,N,Dv) vs the torch question graph over transformers' (t_visual);
    - cross_kv.cross_k/v (L,1,H,Q,hd): the cross_kv graph over those states vs the torch one;
    - decoder.logits (T,V): the decoder teacher-forced along [bos] + transformers' ``answer``
      on our cross K/V vs the model's own text_decoder over its own question encoding."""
    ids = np.array(question_ids, np.int64)
    feeds = {"question_ids": ids, "visual_tokens": np.ascontiguousarray(visual, np.float32)}
    states = engine.backend.run("question", feeds)["question_states"]
    t_states = graphs["question"](torch.from_numpy(ids), t_visual)
    cross = engine.backend.run("cross_kv", {"question_states": states})
    t_cross_k, t_cross_v = graphs["cross_kv"](t_states)
    sequence = [engine.manifest.special_tokens.bos] + list(answer)
    logits = teacher_forced_logits(engine, sequence, cross["cross_k"], cross["cross_v"])
    t_logits = reference.answer_logits(model, t_pixels, question_ids, sequence)
    return [compare("question.question_states", states, t_states.numpy()),
            compare("cross_kv.cross_k", cross["cross_k"], t_cross_k.numpy()),
            compare("cross_kv.cross_v", cross["cross_v"], t_cross_v.numpy()),
            compare("decoder.logits", logits, t_logits.numpy())]


def _worse(current: OutputCheck | None, new: OutputCheck) -> OutputCheck:
    """The worse of two checks of one output: a failure over a pass (tolerances scale with each
    reference, so a smaller error can fail where a larger passes), then the larger error."""
    if current is None:
        return new
    return max(current, new, key=lambda check: (not check.passed, check.max_abs))
