"""The accuracy gate: INT8 against FP32 on images not used for calibration.

Greedy token agreement, BLEU-4 and CIDEr of both against the human captions, and the
cosine between their pooled embeddings (what scene gating compares). The gate fails when
CIDEr drops by more than ``max_cider_drop`` (relative).

The drop comes with a 95% paired-bootstrap interval over the images: on 1,000 Flickr8k dev
photos only about half of the INT8 captions differ from FP32's at all, and the drop of a
corpus CIDEr moves by about +-2% from which photos happen to be in the set, so a reader
must see whether a figure such as -1.5% can be told from 0 or from a 1% limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.engine import CaptionEngine


@dataclass
class EvalSet:
    images: list[np.ndarray]
    references: list[list[str]]
    names: list[str]


def check_gateable(engine: CaptionEngine) -> None:
    """The gate scores captions: refuse, in one line and before anything is quantized, an
    engine that cannot caption (a question-only model such as BLIP VQA)."""
    if "caption" not in engine.manifest.tasks:
        raise EdgeVLMError(f"--eval gates on captions, and {engine.manifest.root} answers questions only "
                           f"(a {engine.manifest.model.family} model): quantize it without --eval")


def run_engine(engine: CaptionEngine, images: list[np.ndarray], batch: int = 32) -> tuple[list[list[int]], np.ndarray]:
    """Greedy token ids and pooled embeddings for every image: the captions a user gets.

    The vision graph runs ``batch`` images at a time (its static INT8 ranges make each image's
    output independent of the others), but every caption is decoded on its own, as narration
    and ``caption`` decode them: the decoder's dynamic INT8 quantizes each step's activations
    with one scale over all rows, so a caption decoded among 31 others is not the caption a
    user gets. Concept-head word bans apply, as they do for users."""
    ids, pooled = [], []
    settings = engine.settings(1)
    for start in range(0, len(images), batch):
        sight = engine.see(np.stack([engine.preprocess(image) for image in images[start : start + batch]]))
        for row in range(len(sight.visual)):
            concepts = None if sight.concepts is None else sight.concepts[row : row + 1]
            ids.extend(engine.generate(sight.visual[row : row + 1], settings, concepts))
        pooled.append(sight.pooled)
    return ids, np.concatenate(pooled)


def caption_scores(engine: CaptionEngine, ids: list[list[int]], references: list[list[str]]) -> dict:
    from edgevlm.metrics.caption_metrics import score_captions

    hyps = {i: engine.tokenizer.decode(t) for i, t in enumerate(ids)}
    return score_captions(dict(enumerate(references)), hyps, only=("BLEU", "CIDEr"), per_image=True)


def bootstrap_drop_interval(fp32: np.ndarray, int8: np.ndarray, rounds: int = 2000, seed: int = 0,
                            level: float = 0.95) -> tuple[float, float]:
    """Paired bootstrap over images of the relative drop mean(fp32) -> mean(int8).

    fp32, int8: (N,) per-image scores of the same images (CIDEr: its corpus figure is their
    mean; the idf stays the full set's, as usual for CIDEr intervals). -> (low, high) of the
    ``level`` interval, as fractions (0.01 = 1% lower)."""
    fp32, int8 = np.asarray(fp32, np.float64), np.asarray(int8, np.float64)
    rows = np.random.default_rng(seed).integers(0, len(fp32), (rounds, len(fp32)))
    base = fp32[rows].mean(1)
    drops = (base - int8[rows].mean(1)) / np.maximum(base, 1e-9)
    tail = (1 - level) / 2
    return float(np.quantile(drops, tail)), float(np.quantile(drops, 1 - tail))


def compare_engines(fp32: CaptionEngine, int8: CaptionEngine, data: EvalSet, max_cider_drop: float = 0.02,
                    fp32_cache: dict | None = None) -> dict:
    """-> report dict with "passed". ``fp32_cache`` keeps FP32 results across calls."""
    if fp32_cache is not None and "ids" in fp32_cache:
        fp32_ids, fp32_pooled, fp32_scores = fp32_cache["ids"], fp32_cache["pooled"], fp32_cache["scores"]
    else:
        fp32_ids, fp32_pooled = run_engine(fp32, data.images)
        fp32_scores = caption_scores(fp32, fp32_ids, data.references)
        if fp32_cache is not None:
            fp32_cache.update(ids=fp32_ids, pooled=fp32_pooled, scores=fp32_scores)
    int8_ids, int8_pooled = run_engine(int8, data.images)
    int8_scores = caption_scores(int8, int8_ids, data.references)
    cosine = (fp32_pooled * int8_pooled).sum(1) / (
        np.linalg.norm(fp32_pooled, axis=1) * np.linalg.norm(int8_pooled, axis=1) + 1e-12)
    drop = (fp32_scores["CIDEr"] - int8_scores["CIDEr"]) / max(fp32_scores["CIDEr"], 1e-9)
    low, high = bootstrap_drop_interval(fp32_scores["CIDEr_per_image"], int8_scores["CIDEr_per_image"])
    return {
        "images": len(data.images),
        "token_agreement": round(sum(a == b for a, b in zip(fp32_ids, int8_ids)) / len(fp32_ids), 4),
        "fp32_BLEU-4": round(fp32_scores["BLEU-4"], 4), "int8_BLEU-4": round(int8_scores["BLEU-4"], 4),
        "fp32_CIDEr": round(fp32_scores["CIDEr"], 4), "int8_CIDEr": round(int8_scores["CIDEr"], 4),
        "cider_drop_relative": round(drop, 4), "cider_drop_ci95": [round(low, 4), round(high, 4)],
        "max_cider_drop": max_cider_drop,
        "pooled_cosine_mean": round(float(cosine.mean()), 5), "pooled_cosine_min": round(float(cosine.min()), 5),
        "passed": bool(drop <= max_cider_drop),
    }


def format_report(report: dict) -> str:
    lines = [f"accuracy gate on {report['images']} images not used for calibration:",
             f"  greedy token agreement  {report['token_agreement']:.2%}",
             f"  BLEU-4  fp32 {report['fp32_BLEU-4']:.4f}  int8 {report['int8_BLEU-4']:.4f}",
             f"  CIDEr   fp32 {report['fp32_CIDEr']:.4f}  int8 {report['int8_CIDEr']:.4f}  "
             f"drop {report['cider_drop_relative']:+.2%} (95% interval {report['cider_drop_ci95'][0]:+.2%} to "
             f"{report['cider_drop_ci95'][1]:+.2%}; limit {report['max_cider_drop']:.0%})",
             f"  pooled embedding cosine  mean {report['pooled_cosine_mean']:.4f}  min {report['pooled_cosine_min']:.4f}",
             "PASS" if report["passed"] else "FAIL: CIDEr dropped more than the limit"]
    return "\n".join(lines)
