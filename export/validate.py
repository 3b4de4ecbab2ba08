"""Parity of an engine against its PyTorch model folder: per-output errors and greedy tokens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgevlm.generate import TorchStepper, concept_word_ids, search_settings
from edgevlm.runtime.grounding import caption_bias
from edgevlm.model_io import load_model
from edgevlm.runtime.engine import CaptionEngine, GraphStepper
from edgevlm.runtime.search import beam_search

ATOL = 1e-4
RTOL = 1e-3  # of the reference's largest magnitude


@dataclass
class OutputCheck:
    name: str
    max_abs: float
    max_rel: float  # max_abs / max |reference|
    passed: bool


def _compare(name: str, ours: np.ndarray, reference: np.ndarray) -> OutputCheck:
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    if ours.shape != reference.shape:
        return OutputCheck(name, float("inf"), float("inf"), False)
    diff = np.abs(ours - reference)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    finite = bool(np.isfinite(ours).all())  # NaN always fails
    return OutputCheck(name, max_abs, max_abs / max(scale, 1e-12), finite and max_abs <= ATOL + RTOL * scale)


@torch.no_grad()
def validate_engine(engine_dir: str, model_dir: str, images_bgr: list[np.ndarray], beam_size: int = 1) -> dict:
    """-> {"outputs": [OutputCheck...], "tokens_identical": bool, "captions": [(ours, torch)], "passed"}."""
    engine = CaptionEngine(engine_dir)
    model, tokenizer = load_model(model_dir)
    pixels = np.stack([engine.preprocess(image) for image in images_bgr])
    sight = engine.see(pixels)
    visual = sight.visual
    features = model.encoder_features(torch.from_numpy(pixels))
    t_visual, t_pooled = model.projector(features), features.mean(dim=(2, 3))
    cross_k, cross_v = engine.cross_kv(visual)
    t_cross_k, t_cross_v = model.decoder.cross_kv(t_visual)
    checks = [_compare("vision.visual_tokens", visual, t_visual.numpy()),
              _compare("vision.pooled", sight.pooled, t_pooled.numpy()),
              _compare("cross_kv.cross_k", cross_k, t_cross_k.numpy()),
              _compare("cross_kv.cross_v", cross_v, t_cross_v.numpy())]
    t_concepts, bias = None, None
    if model.concepts is not None:  # the heads are part of the contract too
        t_concepts = torch.sigmoid(model.concepts(features)).numpy()
        checks.append(_compare("vision.concept_probs", sight.concepts, t_concepts))
        bias = caption_bias(t_concepts, float(model.cfg.concepts.ban_below), concept_word_ids(model, tokenizer),
                            model.cfg.decoder.vocab_size)
        checks.append(_compare("vision.novelty", sight.novelty, 1.0 - t_concepts.max(axis=1)))

    settings = engine.settings(beam_size)
    ours = engine.generate(visual, settings, sight.concepts)
    theirs = beam_search(TorchStepper(model, t_visual, beam_size, settings.max_new_tokens), len(images_bgr),
                         model.cfg.bos_id, model.cfg.eos_id, search_settings(model.cfg, beam_size), bias)
    # Decoder logits, teacher-forced along PyTorch's own greedy sequence, step by step.
    worst = None
    for row, ids in enumerate(theirs):
        sequence = [model.cfg.bos_id] + ids
        t_logits, _, _ = model.decoder(torch.tensor([sequence]), t_cross_k[:, row : row + 1], t_cross_v[:, row : row + 1])
        o_logits = _teacher_forced_logits(engine, sequence, cross_k[:, row : row + 1], cross_v[:, row : row + 1])
        check = _compare("decoder.logits", o_logits, t_logits[0].numpy())
        worst = check if worst is None or check.max_abs > worst.max_abs else worst
    checks.append(worst)
    identical = ours == theirs
    return {
        "outputs": checks,
        "tokens_identical": identical,
        "captions": [(tokenizer.decode(a), tokenizer.decode(b)) for a, b in zip(ours, theirs)],
        "passed": identical and all(c.passed for c in checks),
    }


def _teacher_forced_logits(engine: CaptionEngine, sequence: list[int], cross_k, cross_v) -> np.ndarray:
    """The engine's decoder graph fed ``sequence`` one token at a time -> logits (T, V)."""
    stepper = GraphStepper(engine.backend, engine.cache_for(1), cross_k, cross_v)
    return np.stack([stepper.step(np.array([token], np.int64), position)[0] for position, token in enumerate(sequence)])
