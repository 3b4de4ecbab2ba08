"""VQA scoring (torch-free): exact match after normalisation, per type, balanced yes/no
accuracy (the hallucination probe), and abstention.

An abstained question ("I'm not sure") counts as not answered correctly in ``accuracy``;
``answered_accuracy`` is the accuracy over the questions actually answered and
``coverage`` their share.
"""

from __future__ import annotations

import math
import re

from edgevlm.errors import EdgeVLMError

NUMBER_WORDS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
                "7": "seven", "8": "eight", "9": "nine", "10": "ten"}


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation or articles, digits as words ("2" -> "two"), grey = gray."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    words = [NUMBER_WORDS.get(w, w) for w in words if w not in ("a", "an", "the")]
    return " ".join("gray" if w == "grey" else w for w in words)


def answer_is_right(text: str, references: list[str]) -> bool:
    """Exact match after ``normalize_answer`` with any of the question's reference answers."""
    return normalize_answer(text) in {normalize_answer(a) for a in references}


def score_answers(questions: list[dict], answers: dict, threshold: float = 0.0,
                  per_question: dict | None = None, held_back: frozenset | set = frozenset()) -> dict:
    """questions: VQA dicts (question_id, answers, type); answers: question_id -> (text,
    probability). A question whose answer probability is below ``threshold`` (or its own
    threshold in ``per_question``: existence answers have the concept head's), or in
    ``held_back`` (the engine says "I'm not sure" to it at any threshold), is abstained.

    Returns accuracy, answered_accuracy, coverage, abstention_rate, yesno_balanced_accuracy
    (mean of accuracy on "yes" and on "no" questions), by_type {type: accuracy}, counts,
    and number_split {"count": accuracy where something is there to count, "none": where
    nothing is, and their "questions"} (counting and seeing absence are different skills).
    """
    by_type: dict[str, list[bool]] = {}
    yes_no: dict[str, list[bool]] = {"yes": [], "no": []}
    number: dict[str, list[bool]] = {"count": [], "none": []}
    answered = correct_answered = 0
    for q in questions:
        text, probability = answers[q["question_id"]]
        abstain = q["question_id"] in held_back or probability < (
            per_question.get(q["question_id"], threshold) if per_question else threshold)
        right = not abstain and answer_is_right(text, q["answers"])
        answered += not abstain
        correct_answered += right
        by_type.setdefault(q["type"], []).append(right)
        truth = normalize_answer(q["answers"][0])
        if q["type"] == "yesno" and truth in yes_no:
            yes_no[truth].append(right)
        if q["type"] == "number":
            number["none" if truth == "none" else "count"].append(right)
    total = len(questions)
    flat = [r for rows in by_type.values() for r in rows]
    return {
        "accuracy": sum(flat) / max(total, 1),
        "answered_accuracy": correct_answered / max(answered, 1),
        "coverage": answered / max(total, 1),
        "abstention_rate": 1 - answered / max(total, 1),
        "yesno_balanced_accuracy": (_mean(yes_no["yes"]) + _mean(yes_no["no"])) / 2,
        "threshold": threshold,
        "questions": total,
        "by_type": {t: _mean(rows) for t, rows in sorted(by_type.items())},
        "count_by_type": {t: len(rows) for t, rows in sorted(by_type.items())},
        "number_split": {kind: _mean(rows) for kind, rows in number.items()}
                        | {"questions": {kind: len(rows) for kind, rows in number.items()}},
    }


def _mean(values: list[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


# A wrong answer ("no, there is no car") costs our user twice what a right one gains: a blind
# user acts on it, while "I'm not sure" only sends them to ask again or feel for it. With
# calibrated probabilities cost C answers where P(right) >= C / (1 + C): 2/3 here. On the
# shipped engine's dev answers cost 1 chose existence 0.517 and decoder 0.501, cost 2 chooses
# 0.614 and 0.693 (MODEL_CARD.md, "Calibration").
DEFAULT_WRONG_COST = 2.0


def abstention_rule(wrong_cost: float) -> str:
    """How ``choose_threshold`` chose a threshold, in words (manifests and reports record it)."""
    return f"maximise right - {wrong_cost:g} x wrong answers (abstain scores 0)"


def choose_threshold(questions: list[dict], answers: dict, wrong_cost: float = DEFAULT_WRONG_COST,
                     held_back: frozenset | set = frozenset()) -> float:
    """The abstention threshold on answer probability that maximises
    (right answers - wrong_cost x wrong answers) / questions, abstentions scoring 0
    (plain accuracy, which never abstains, is the limit of cost 0); ``held_back`` questions
    abstain at any threshold, so they score 0 whatever it is. ``wrong_cost`` must be a
    finite number > 0 (EdgeVLMError otherwise)."""
    if not (math.isfinite(wrong_cost) and wrong_cost > 0):
        raise EdgeVLMError(f"the cost of a wrong answer must be a finite number > 0, not {wrong_cost}")
    scored = []
    for q in questions:
        if q["question_id"] in held_back:
            continue
        text, probability = answers[q["question_id"]]
        right = answer_is_right(text, q["answers"])
        scored.append((probability, right))
    scored.sort(reverse=True)
    best_utility, best_threshold, utility = 0.0, 1.0 + 1e-9, 0.0  # answer nothing: utility 0
    for i, (probability, right) in enumerate(scored):
        utility += 1.0 if right else -wrong_cost
        next_probability = scored[i + 1][0] if i + 1 < len(scored) else -1.0
        if probability != next_probability and utility > best_utility:
            best_utility, best_threshold = utility, probability
    return float(best_threshold)
