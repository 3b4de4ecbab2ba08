"""Scores of a POPE-style existence set (torch-free): the body of ``edgevlm eval --pope``.

The headline is the macro balanced accuracy per sampling: per category the mean of the
recall on "yes" questions and on "no" questions, then the mean over categories. A model
that answers from how often a category appears, without looking, scores 0.5 on it in every
category, however frequent the category (the ``prior_only`` figures show it on the set).

An answer counts as "yes" when its normalised text is exactly "yes"; anything else
("no", "two", an empty answer) counts as "no". Every answer is scored as given, however
unsure; the abstention figures say what the "I'm not sure" threshold would have held back.
"""

from __future__ import annotations

from edgevlm.data.pope_questions import SAMPLINGS, WORDINGS
from edgevlm.errors import EdgeVLMError
from edgevlm.metrics.calibration import calibration_report
from edgevlm.metrics.vqa_metrics import normalize_answer

POPE_KEYS = {"category", "sampling", "wording", "trained_wording"}


def check_pope_entries(entries: list[dict], path: str) -> None:
    """Every entry a POPE question: the generator's extra keys and one "yes"/"no" answer."""
    for index, entry in enumerate(entries):
        if not POPE_KEYS <= set(entry) or entry.get("answers") not in (["yes"], ["no"]):
            raise EdgeVLMError(f"{path}: entry [{index}] is not a POPE question (needs {sorted(POPE_KEYS)} and "
                               'answers ["yes"] or ["no"]); make the file with python -m edgevlm.scripts.pope_questions')


def says_yes(text: str) -> bool:
    return normalize_answer(text) == "yes"


def _rates(rows: list[tuple[bool, bool]]) -> dict:
    """rows: (truth is yes, answered yes) -> accuracy, balanced accuracy, precision, recall
    (positive = yes), F1, yes ratio, n. A recall with no question of its kind counts 0."""
    tp = sum(t and p for t, p in rows)
    fp = sum(p and not t for t, p in rows)
    fn = sum(t and not p for t, p in rows)
    tn = len(rows) - tp - fp - fn
    recall_yes = tp / (tp + fn) if tp + fn else 0.0
    recall_no = tn / (tn + fp) if tn + fp else 0.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    return {
        "accuracy": (tp + tn) / max(len(rows), 1), "balanced_accuracy": (recall_yes + recall_no) / 2,
        "precision": precision, "recall": recall_yes,
        "f1": 2 * precision * recall_yes / (precision + recall_yes) if precision + recall_yes else 0.0,
        "yes_ratio": (tp + fp) / max(len(rows), 1), "n": len(rows),
    }


def balanced_accuracy_interval(rows: list[tuple[bool, bool]], z: float = 1.96) -> tuple[float, float]:
    """rows: (truth is yes, answered yes) -> an approximate 95% interval (lo, hi) of the
    balanced accuracy, from the two recalls' Agresti-Coull intervals (add 2 successes and 2
    failures to each: a 5/5 recall is not certain) combined as independent normals.

    Why: a small category (5 photos with it, 5 without) moves 0.1 per answer, so its
    balanced accuracy alone cannot say whether it is below a bar; the interval says so."""
    variance = 0.0
    for truth in (True, False):
        answers = [said for t, said in rows if t == truth]
        right = sum(said == truth for said in answers)
        p = (right + 2) / (len(answers) + 4)
        variance += p * (1 - p) / (len(answers) + 4)
    centre = _rates(rows)["balanced_accuracy"]
    half = z * 0.5 * variance ** 0.5
    return max(0.0, centre - half), min(1.0, centre + half)


def _sampling_scores(entries: list[dict], said_yes: dict) -> dict:
    """The headline figures, per-category and per-wording tables of one sampling's entries;
    said_yes: question_id -> answered "yes"."""
    rows = [(e["answers"] == ["yes"], said_yes[e["question_id"]]) for e in entries]
    overall = _rates(rows)
    by_category: dict[str, list] = {}
    by_wording: dict[str, list] = {}
    for entry, row in zip(entries, rows):
        by_category.setdefault(entry["category"], []).append(row)
        by_wording.setdefault(entry["wording"], []).append((row, entry["trained_wording"]))
    per_category = {c: {k: v for k, v in _rates(r).items() if k in ("balanced_accuracy", "yes_ratio", "n")}
                    | {"ci95": balanced_accuracy_interval(r)} for c, r in sorted(by_category.items())}
    per_wording = {}
    for wording, pairs in by_wording.items():
        rates = _rates([row for row, _ in pairs])
        per_wording[wording] = {k: rates[k] for k in ("accuracy", "balanced_accuracy", "yes_ratio", "n")} | {
            "trained": pairs[0][1]}
    # The generator's order (trained wordings first), then any other wording by name.
    per_wording = dict(sorted(per_wording.items(), key=lambda kv: (WORDINGS.index(kv[0]) if kv[0] in WORDINGS
                                                                    else len(WORDINGS), kv[0])))
    macro = sum(c["balanced_accuracy"] for c in per_category.values()) / max(len(per_category), 1)
    worst = min(per_category.items(), key=lambda kv: (kv[1]["balanced_accuracy"], kv[0]), default=(None, {}))
    return {
        "questions": len(entries), "categories": len(per_category), "macro_balanced_accuracy": macro,
        **{k: overall[k] for k in ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "yes_ratio")},
        "min_category": {"category": worst[0], "balanced_accuracy": worst[1].get("balanced_accuracy", 0.0),
                         "ci95": worst[1].get("ci95", (0.0, 0.0))},
        "per_category": per_category, "per_wording": per_wording,
    }


def majority_answers(entries: list[dict]) -> dict:
    """The blind guesser: question_id -> says "yes", when "yes" is the majority answer of
    the question's category on these entries (ties, as in every balanced category, say "no")."""
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry["category"]] = counts.get(entry["category"], 0) + (1 if entry["answers"] == ["yes"] else -1)
    return {e["question_id"]: counts[e["category"]] > 0 for e in entries}


def pope_report(entries: list[dict], answers: dict, threshold: float, per_question: dict | None = None,
                held_back: frozenset | set = frozenset()) -> dict:
    """entries: POPE questions (``pope_questions``); answers: question_id -> (answer text,
    probability in [0, 1]); threshold: answers below it would be "I'm not sure" (as would
    ``held_back`` questions' at any threshold: vqa_eval.engine_answers).

    -> {"questions", "threshold", "samplings": {sampling: {macro_balanced_accuracy,
    accuracy, balanced_accuracy, precision, recall, f1 (positive = "yes"), yes_ratio,
    abstention_rate, answered_accuracy (over answers at or above threshold; 0 if none),
    min_category {category, balanced_accuracy}, per_category {cat: {balanced_accuracy,
    yes_ratio, n}}, per_wording {wording: {accuracy, balanced_accuracy, yes_ratio, n,
    trained}} (a wording's questions pooled over its categories), prior_only {the same
    headline figures of the category-majority guesser}, calibration (every answer's
    probability against its being right: metrics/calibration.py)}}}. All fractions in
    [0, 1]; samplings in generator order.
    """
    missing = [e["question_id"] for e in entries if e["question_id"] not in answers]
    if missing:
        raise EdgeVLMError(f"no answer for {len(missing)} questions (question_id {missing[0]}, ...): answer every "
                           "question of the file")
    said_yes = {e["question_id"]: says_yes(answers[e["question_id"]][0]) for e in entries}
    out = {}
    order = list(SAMPLINGS) + sorted({e["sampling"] for e in entries} - set(SAMPLINGS))
    for sampling in order:
        rows = [e for e in entries if e["sampling"] == sampling]
        if not rows:
            continue
        scores = _sampling_scores(rows, said_yes)
        limit = (lambda e: per_question.get(e["question_id"], threshold)) if per_question else (lambda e: threshold)
        answered = [e for e in rows if e["question_id"] not in held_back and answers[e["question_id"]][1] >= limit(e)]
        right = sum(said_yes[e["question_id"]] == (e["answers"] == ["yes"]) for e in answered)
        scores["abstention_rate"] = 1 - len(answered) / len(rows)
        scores["answered_accuracy"] = right / len(answered) if answered else 0.0
        scores["calibration"] = calibration_report(
            [answers[e["question_id"]][1] for e in rows],
            [said_yes[e["question_id"]] == (e["answers"] == ["yes"]) for e in rows])
        prior = _sampling_scores(rows, majority_answers(rows))
        scores["prior_only"] = {k: prior[k] for k in ("macro_balanced_accuracy", "accuracy", "balanced_accuracy",
                                                      "precision", "recall", "f1", "yes_ratio")}
        out[sampling] = scores
    return {"questions": len(entries), "threshold": threshold, "samplings": out}
