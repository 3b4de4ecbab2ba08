"""How much a yes/no answer depends on the wording of the question (torch-free); run by
``python -m edgevlm.scripts.vqa_wording``.

Each generated yes/no question's object is recovered and asked about in every wording below
about the same photo. The last two wordings are never generated for training: they measure
how well the model carries over to phrasings it has not seen.
"""

from __future__ import annotations

import re

from edgevlm.metrics.vqa_metrics import normalize_answer
from edgevlm.runtime.preprocess import read_image_bgr

WORDINGS = {  # name -> (question from (article, noun, plural), in the training templates?)
    "is there a X?": (lambda a, x, xs: f"is there {a}{x}?", True),
    "are there any Xs?": (lambda a, x, xs: f"are there any {xs}?", True),
    "do you see a X?": (lambda a, x, xs: f"do you see {a}{x}?", True),
    "is a X in the picture?": (lambda a, x, xs: f"is {a}{x} in the picture?", False),
    "is there a X here?": (lambda a, x, xs: f"is there {a}{x} here?", False),
}


def recover_object(question: str) -> tuple[str, str, str] | None:
    """A generated yes/no question -> (article, noun, plural), or None if not recognised."""
    from edgevlm.data.vqa_questions import PLURAL_NOUNS, noun_forms

    match = re.match(r"^(?:is there|do you see|can you see) (?:an? )?(\w+)(?: in the picture)?\?$", question)
    if match:
        noun = match.group(1)
    else:
        match = re.match(r"^are there any (\w+)\?$", question)
        if not match:
            return None
        plural = match.group(1)
        noun = {v: k for k, v in PLURAL_NOUNS.items()}.get(plural, plural.removesuffix("s"))
    article, plural = noun_forms(noun)
    return article, noun, plural


def wording_accuracy(engine, entries: list[dict]) -> list[dict]:
    """entries: yes/no VQA entries whose object ``recover_object`` finds -> one row per
    wording: {"wording", "trained_wording", "questions", "accuracy"}."""
    right = {name: 0 for name in WORDINGS}
    for entry in entries:
        article, noun, plural = recover_object(entry["question"])
        questions = [make(article, noun, plural) for make, _ in WORDINGS.values()]
        answers = engine.answer_image(read_image_bgr(entry["path"]), questions, abstain_below=0.0)
        for name, answer in zip(WORDINGS, answers):
            right[name] += normalize_answer(answer.answer) == normalize_answer(entry["answers"][0])
    return [{"wording": name, "trained_wording": trained, "questions": len(entries),
             "accuracy": round(right[name] / max(len(entries), 1), 4)} for name, (_, trained) in WORDINGS.items()]
