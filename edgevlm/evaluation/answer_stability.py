"""Do answers survive a camera's jitter? The same questions on the photo shifted by one pixel.

Why: a worn camera never holds still, and a blind user who asks "is there a car?" twice about
the same street should not hear "yes" and then "no". Measured at stop 38 on the shipped
engine: a one-pixel shift changes the greedy caption of 73% of video frames and moves ~1.5 of
the 50 concept probabilities per frame across 0.5. This puts a number on what reaches the
user: how often the spoken answer ("yes", "no" or "I'm not sure") stays the same, and how
often it flips between "yes" and "no" (the harmful kind; "I'm not sure" on one side is the
threshold doing its job).
"""

from __future__ import annotations

import cv2
import numpy as np

from edgevlm.evaluation.pope_metrics import says_yes

SHIFT_PIXELS = 1


def shifted(image: np.ndarray, pixels: int = SHIFT_PIXELS) -> np.ndarray:
    """(H, W, 3) -> the same size, content moved ``pixels`` up and left, the edge repeated:
    what a camera moved by that much sees (before the model's resize)."""
    return cv2.copyMakeBorder(image[pixels:, pixels:], 0, pixels, 0, pixels, cv2.BORDER_REPLICATE)


def _spoken(answer: tuple[str, float], threshold: float, held_back: bool = False) -> str:
    """(answer text, probability) -> "yes", "no" or "not sure", as the user hears it
    (``held_back``: the engine says "I'm not sure" to it at any threshold)."""
    text, probability = answer
    if held_back or probability < threshold:
        return "not sure"
    return "yes" if says_yes(text) else "no"  # the rule pope_report scores "yes" by


def stability_report(entries: list[dict], answers: dict, moved: dict, threshold: float,
                     per_question: dict | None = None,
                     held_back: tuple[frozenset | set, frozenset | set] = (frozenset(), frozenset())) -> dict:
    """entries: POPE questions; answers / moved: question_id -> (answer text, probability) on
    the photo and on it shifted (``shifted``); threshold (or per_question's own): "I'm not
    sure" below it; held_back: the question_ids held back on the photo and on the shifted one
    (vqa_eval.engine_answers). -> {"shift_pixels", "questions", "same_answer", "yes_no_flips",
    "by_sampling": {sampling: {"questions", "same_answer", "yes_no_flips"}}}, fractions in [0, 1]."""
    def limit(entry):
        return (per_question or {}).get(entry["question_id"], threshold)

    def summary(rows):
        heard = [(_spoken(answers[e["question_id"]], limit(e), e["question_id"] in held_back[0]),
                  _spoken(moved[e["question_id"]], limit(e), e["question_id"] in held_back[1])) for e in rows]
        same = sum(a == b for a, b in heard)
        flips = sum({a, b} == {"yes", "no"} for a, b in heard)
        count = max(len(rows), 1)
        return {"questions": len(rows), "same_answer": same / count, "yes_no_flips": flips / count}

    by_sampling = {}
    for entry in entries:
        by_sampling.setdefault(entry.get("sampling", "all"), []).append(entry)
    return {"shift_pixels": SHIFT_PIXELS, **summary(entries),
            "by_sampling": {name: summary(rows) for name, rows in by_sampling.items()}}
