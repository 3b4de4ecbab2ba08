"""Parity of an engine against its PyTorch model folder, dispatched on the engine's model
family: per-output errors within ATOL + RTOL * max|reference|, and token ids identical."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ATOL = 1e-4
RTOL = 1e-3  # of the reference's largest magnitude


@dataclass
class OutputCheck:
    name: str
    max_abs: float
    max_rel: float  # max_abs / max |reference|
    passed: bool


def compare(name: str, ours: np.ndarray, reference: np.ndarray) -> OutputCheck:
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    if ours.shape != reference.shape:
        return OutputCheck(name, float("inf"), float("inf"), False)
    diff = np.abs(ours - reference)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    finite = bool(np.isfinite(ours).all())  # NaN always fails
    return OutputCheck(name, max_abs, max_abs / max(scale, 1e-12), finite and max_abs <= ATOL + RTOL * scale)


def validate_engine(engine_dir: str, model_dir: str, images_bgr: list[np.ndarray], beam_size: int = 1) -> dict:
    """-> {"outputs": [OutputCheck...], "tokens_identical": bool, "captions": [(ours, reference)], "passed"}."""
    from edgevlm.export.families import export_family
    from edgevlm.runtime.engine import CaptionEngine

    with CaptionEngine(engine_dir) as engine:
        return export_family(engine.manifest.model.family).validate(engine, model_dir, images_bgr, beam_size)
