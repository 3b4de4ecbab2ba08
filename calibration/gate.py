"""The accuracy gate: INT8 against FP32 on images not used for calibration.

Greedy token agreement, BLEU-4 and CIDEr of both against the human captions, and the
cosine between their pooled embeddings (what scene gating compares). The gate fails when
CIDEr drops by more than ``max_cider_drop`` (relative).
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
    """Greedy token ids and pooled embeddings for every image."""
    ids, pooled = [], []
    settings = engine.settings(1)
    for start in range(0, len(images), batch):
        pixels = np.stack([engine.preprocess(image) for image in images[start : start + batch]])
        visual, emb = engine.encode(pixels)
        ids.extend(engine.generate(visual, settings))
        pooled.append(emb)
    return ids, np.concatenate(pooled)


def caption_scores(engine: CaptionEngine, ids: list[list[int]], references: list[list[str]]) -> dict:
    from edgevlm.metrics.caption_metrics import score_captions

    hyps = {i: engine.tokenizer.decode(t) for i, t in enumerate(ids)}
    return score_captions(dict(enumerate(references)), hyps, only=("BLEU", "CIDEr"))


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
    return {
        "images": len(data.images),
        "token_agreement": round(sum(a == b for a, b in zip(fp32_ids, int8_ids)) / len(fp32_ids), 4),
        "fp32_BLEU-4": round(fp32_scores["BLEU-4"], 4), "int8_BLEU-4": round(int8_scores["BLEU-4"], 4),
        "fp32_CIDEr": round(fp32_scores["CIDEr"], 4), "int8_CIDEr": round(int8_scores["CIDEr"], 4),
        "cider_drop_relative": round(drop, 4), "max_cider_drop": max_cider_drop,
        "pooled_cosine_mean": round(float(cosine.mean()), 5), "pooled_cosine_min": round(float(cosine.min()), 5),
        "passed": bool(drop <= max_cider_drop),
    }


def format_report(report: dict) -> str:
    lines = [f"accuracy gate on {report['images']} images not used for calibration:",
             f"  greedy token agreement  {report['token_agreement']:.2%}",
             f"  BLEU-4  fp32 {report['fp32_BLEU-4']:.4f}  int8 {report['int8_BLEU-4']:.4f}",
             f"  CIDEr   fp32 {report['fp32_CIDEr']:.4f}  int8 {report['int8_CIDEr']:.4f}  "
             f"drop {report['cider_drop_relative']:+.2%} (limit {report['max_cider_drop']:.0%})",
             f"  pooled embedding cosine  mean {report['pooled_cosine_mean']:.4f}  min {report['pooled_cosine_min']:.4f}",
             "PASS" if report["passed"] else "FAIL: CIDEr dropped more than the limit"]
    return "\n".join(lines)
