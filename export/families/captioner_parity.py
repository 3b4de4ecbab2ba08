"""Parity of our captioner's engine against its PyTorch model folder: every graph output
within tolerance, decoder logits teacher-forced (through the general decoder graph and, where
exported, the single-token decoder_step graph, which the engine's search steps on), and
token ids identical to PyTorch's."""

from __future__ import annotations

import numpy as np
import torch

from edgevlm.export.validate import compare
from edgevlm.generate import TorchStepper, concept_word_ids, search_settings
from edgevlm.model_io import load_model
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.grounding import caption_bias
from edgevlm.runtime.preprocess import preprocess_with
from edgevlm.runtime.search import beam_search
from edgevlm.runtime.steppers import STEP_GRAPH, CacheStepper


@torch.no_grad()
def captioner_parity(engine: CaptionEngine, model_dir: str, images_bgr: list[np.ndarray], beam_size: int = 1) -> dict:
    """-> {"outputs": [OutputCheck...], "tokens_identical": bool, "captions": [(ours, torch)], "passed"}."""
    model, tokenizer = load_model(model_dir)
    sight = engine.see(np.stack([engine.preprocess(image) for image in images_bgr]))
    visual = sight.visual
    # the model's own pixels: an INT8 engine may take another layout (runtime/pixel_layout.py)
    pixels = np.stack([preprocess_with(image, model.cfg.preprocess) for image in images_bgr])
    features = model.encoder_features(torch.from_numpy(pixels))
    t_visual, t_pooled = model.projector(features), features.mean(dim=(2, 3))
    cross_k, cross_v = engine.cross_kv(visual)
    t_cross_k, t_cross_v = model.decoder.cross_kv(t_visual)
    checks = [compare("vision.visual_tokens", visual, t_visual.numpy()),
              compare("vision.pooled", sight.pooled, t_pooled.numpy()),
              compare("cross_kv.cross_k", cross_k, t_cross_k.numpy()),
              compare("cross_kv.cross_v", cross_v, t_cross_v.numpy())]
    t_concepts, bias = None, None
    if model.concepts is not None:  # the heads are part of the contract too
        t_concepts = torch.sigmoid(model.concepts(features)).numpy()
        checks.append(compare("vision.concept_probs", sight.concepts, t_concepts))
        bias = caption_bias(t_concepts, float(model.cfg.concepts.ban_below), concept_word_ids(model, tokenizer),
                            model.cfg.decoder.vocab_size)
        checks.append(compare("vision.novelty", sight.novelty, 1.0 - t_concepts.max(axis=1)))

    settings = engine.settings(beam_size)
    ours = engine.generate(visual, settings, sight.concepts)
    theirs = beam_search(TorchStepper(model, t_visual, beam_size, settings.max_new_tokens), len(images_bgr),
                         model.cfg.bos_id, model.cfg.eos_id, search_settings(model.cfg, beam_size), bias)
    # Decoder logits, teacher-forced along PyTorch's own greedy sequence, step by step, per graph.
    for graph in ("decoder", STEP_GRAPH) if STEP_GRAPH in engine.manifest.graphs else ("decoder",):
        worst = None
        for row, ids in enumerate(theirs):
            sequence = [model.cfg.bos_id] + ids
            t_logits, _, _ = model.decoder(torch.tensor([sequence]), t_cross_k[:, row : row + 1],
                                           t_cross_v[:, row : row + 1])
            o_logits = teacher_forced_logits(engine, sequence, cross_k[:, row : row + 1], cross_v[:, row : row + 1],
                                             graph)
            check = compare(f"{graph}.logits", o_logits, t_logits[0].numpy())
            worst = check if worst is None or check.max_abs > worst.max_abs else worst
        checks.append(worst)
    identical = ours == theirs
    return {
        "outputs": checks,
        "tokens_identical": identical,
        "captions": [(tokenizer.decode(a), tokenizer.decode(b)) for a, b in zip(ours, theirs)],
        "passed": identical and all(c.passed for c in checks),
    }


def teacher_forced_logits(engine: CaptionEngine, sequence: list[int], cross_k, cross_v,
                          graph: str | None = None) -> np.ndarray:
    """The engine's decoder fed ``sequence`` one token at a time -> logits (T, V); ``graph``
    ("decoder" or "decoder_step") picks the graph the steps run on a host-cache stepper,
    None: whatever the engine's own stepper runs."""
    stepper = engine.backend.decoder_stepper(cross_k, cross_v)
    if graph is not None and isinstance(stepper, CacheStepper):
        stepper = CacheStepper(engine.backend, stepper.cache, cross_k, cross_v, stepper.takes_prefix_len, graph)
    return np.stack([stepper.step(np.array([token], np.int64), position)[0] for position, token in enumerate(sequence)])
