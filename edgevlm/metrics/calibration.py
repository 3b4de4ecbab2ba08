"""Does an answer's probability mean what it says (torch-free)? The calibration figures of
``edgevlm eval --pope`` and ``--vqa``.

For our user the probability decides between an answer and "I'm not sure", so it has to be
a frequency: of the answers given with p = 0.8, about 8 in 10 should be right. Written here
rather than taken from scikit-learn (``calibration_curve``, ``brier_score_loss``) because the
runtime's evaluation stays torch- and sklearn-free, and the figures are a few lines of numpy.
"""

from __future__ import annotations

import numpy as np

CALIBRATION_BINS = 20  # equal-width bins of the answer probability over [0, 1] (0.05 wide)
SURE_ABOVE = 0.9  # an answer this sure is said without doubt: wrong ones are the harmful ones


def calibration_report(probabilities, correct, bins: int = CALIBRATION_BINS, sure_above: float = SURE_ABOVE) -> dict:
    """probabilities (n,): each answer's probability in [0, 1]; correct (n,): whether it
    was right. -> {"questions", "accuracy", "mean_probability", "ece" (expected calibration
    error: the mean over ``bins`` equal-width bins, weighted by their answers, of |mean
    probability - accuracy|), "brier" (mean squared (probability - right)), "sure_share"
    (answers with p >= ``sure_above``), "sure_accuracy" (their accuracy; None if none),
    "sure_wrong_rate" (wrong answers with p >= ``sure_above``, as a share of all questions:
    what a user hears said confidently and wrongly), "bins": [{"low", "high", "n",
    "mean_probability", "accuracy"}] (non-empty bins only)}. All fractions in [0, 1]."""
    p = np.asarray(probabilities, np.float64).reshape(-1)
    right = np.asarray(correct, bool).reshape(-1)
    if p.shape != right.shape:
        raise ValueError(f"{p.size} probabilities but {right.size} correctness flags")
    if p.size and not (np.all(np.isfinite(p)) and p.min() >= 0.0 and p.max() <= 1.0):
        raise ValueError("answer probabilities must lie in [0, 1]")
    n = p.size
    edges = np.arange(bins + 1) / bins  # exactly k / bins (linspace's 0.15000000000000002 put p = 0.15 below it)
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)  # p = 1 joins the last bin
    table, ece = [], 0.0
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        if not count:
            continue
        mean_p, accuracy = float(p[members].mean()), float(right[members].mean())
        ece += count / n * abs(mean_p - accuracy)
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": count,
                      "mean_probability": mean_p, "accuracy": accuracy})
    sure = p >= sure_above
    return {
        "questions": n,
        "accuracy": float(right.mean()) if n else 0.0,
        "mean_probability": float(p.mean()) if n else 0.0,
        "ece": ece,
        "brier": float(np.mean((p - right) ** 2)) if n else 0.0,
        "sure_above": sure_above,
        "sure_share": float(sure.mean()) if n else 0.0,
        "sure_accuracy": float(right[sure].mean()) if sure.any() else None,
        "sure_wrong_rate": float((sure & ~right).mean()) if n else 0.0,
        "bins": table,
    }
