"""The prior-only baseline of ``edgevlm eval --vqa`` (torch-free): answer every question with
the most frequent training answer for the same question text, never looking at the image.

What a model scores above this is what it read from the picture. A question text never
seen gets the most frequent answer of its type ("yesno", "color", ...). Two sources of
"training" answers:

- a question file made from the training captions (``--prior-from``), used whole;
- without one, the evaluated file itself, leave-one-image-out: a question's answer comes
  from the same question on the *other* images only, so the prior never sees the answer
  it is scored on.

Question texts match after lower-casing and dropping punctuation (the words the model's
prompt is made of); answers are counted and given normalised (``normalize_answer``).
"""

from __future__ import annotations

import os
import re
from collections import Counter

from edgevlm.errors import EdgeVLMError
from edgevlm.metrics.vqa_metrics import normalize_answer, score_answers

PRIOR_KEYS = {"question", "answers", "type"}


def question_key(text: str) -> str:
    """"Is there a DOG?" -> "is there a dog"."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def load_training_answers(path: str) -> list[dict]:
    """A question file (python -m edgevlm.scripts.vqa_questions) whose images are not needed:
    -> its entries, each checked for "question", "answers" (non-empty list of strings), "type"."""
    from edgevlm.fileio import read_json

    if not os.path.isfile(path):
        raise EdgeVLMError(f"--prior-from file not found: {path}")
    data = read_json(path, "a VQA question file (python -m edgevlm.scripts.vqa_questions)")
    if not isinstance(data, list) or not data:
        raise EdgeVLMError(f"{path} must hold a non-empty JSON list of questions; make one with "
                           "python -m edgevlm.scripts.vqa_questions TRAIN_CAPTIONS.json OUT.json")
    for index, entry in enumerate(data):
        if (not isinstance(entry, dict) or not PRIOR_KEYS <= set(entry) or not isinstance(entry["question"], str)
                or not isinstance(entry["answers"], list) or not entry["answers"]
                or not all(isinstance(a, str) for a in entry["answers"])):
            raise EdgeVLMError(f"{path}: entry [{index}] needs 'question', 'type' and a non-empty 'answers' list of "
                               "strings (make the file with python -m edgevlm.scripts.vqa_questions)")
    return data


def _most_frequent(counts: Counter) -> str | None:
    """The most frequent answer; ties go to the alphabetically first (deterministic)."""
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else None


def prior_answers(entries: list[dict], pool: list[dict], leave_image_out: bool) -> tuple[dict, float]:
    """entries: questions to answer; pool: questions with answers (the first one counts),
    the training file or the evaluated file itself. leave_image_out: ignore the pool's
    questions about the entry's own "image".

    -> (question_id -> (answer, 1.0), the share of entries whose question text was in the
    pool). An entry with neither its text nor its type in the pool answers "" (wrong).
    """
    by_text: dict[str, Counter] = {}
    by_type: dict[str, Counter] = {}
    for entry in pool:
        answer = normalize_answer(entry["answers"][0])
        by_text.setdefault(question_key(entry["question"]), Counter())[answer] += 1
        by_type.setdefault(entry["type"], Counter())[answer] += 1
    own_text: dict[tuple, Counter] = {}
    own_type: dict[tuple, Counter] = {}
    if leave_image_out:
        for entry in pool:
            answer = normalize_answer(entry["answers"][0])
            own_text.setdefault((question_key(entry["question"]), entry["image"]), Counter())[answer] += 1
            own_type.setdefault((entry["type"], entry["image"]), Counter())[answer] += 1
    answers, seen = {}, 0
    for entry in entries:
        text, image = question_key(entry["question"]), entry.get("image")
        # Counter subtraction keeps only positive counts: the other images' answers.
        found = _most_frequent(by_text.get(text, Counter()) - own_text.get((text, image), Counter()))
        seen += found is not None
        if found is None:
            found = _most_frequent(by_type.get(entry["type"], Counter())
                                   - own_type.get((entry["type"], image), Counter())) or ""
        answers[entry["question_id"]] = (found, 1.0)
    return answers, seen / max(len(entries), 1)


def prior_report(entries: list[dict], model_report: dict, pool: list[dict], leave_image_out: bool,
                 source: str) -> dict:
    """The prior's exact-match accuracy beside the model's (``vqa_report``'s, every question
    answered): {"source", "accuracy", "by_type", "yesno_balanced_accuracy", "number_split",
    "question_text_seen" (share of questions answered from their own text), "margin" and
    "margin_by_type" (model minus prior, in accuracy points of [0, 1])}."""
    answers, seen = prior_answers(entries, pool, leave_image_out)
    scores = score_answers(entries, answers, 0.0)
    return {
        "source": source, "accuracy": scores["accuracy"], "by_type": scores["by_type"],
        "yesno_balanced_accuracy": scores["yesno_balanced_accuracy"], "question_text_seen": seen,
        "number_split": scores["number_split"],
        "margin": model_report["accuracy"] - scores["accuracy"],
        "margin_by_type": {t: model_report["by_type"][t] - v for t, v in scores["by_type"].items()},
    }
