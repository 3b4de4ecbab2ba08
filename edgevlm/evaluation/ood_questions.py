"""Questions about people and dogs on out-of-domain images: part of ``edgevlm eval --ood``.

No image of the OOD set shows a person or a dog (``scripts/ood_images.py``), so every answer
to these questions other than "no"/"none"/"0" (or "I'm not sure", or a frame message) is wrong:
"yes" to "is there a person?", "two" to "how many people are there?", any colour of a dog
that is not there. Captions are checked for such inventions by ``ood_eval``; a blind user
also asks, and a confident wrong answer is what hurts. Torch-free.
"""

from __future__ import annotations

from edgevlm.metrics.calibration import SURE_ABOVE
from edgevlm.metrics.vqa_metrics import normalize_answer

# The first three are existence questions (the concept head answers them); the two counts are
# answered "none" by the head where it finds nothing, else by the decoder; the colour question
# by the decoder, weighed by the head's P(dog present).
OOD_QUESTIONS = (
    "is there a person?",
    "is there a dog?",
    "do you see any people?",
    "how many people are there?",
    "how many dogs are there?",
    "what color is the dog?",
)
# An answer saying nothing is there starts with one of these, after normalize_answer ("0" ->
# "zero"): "no", "none", "zero people", "nobody", "no one", "nothing"; or ends in "none" ("there
# are none"). Our decoder says "no" or "none"; a GIT engine answers in VQAv2's freer words.
ABSENT_FIRST_WORDS = frozenset({"no", "none", "zero", "nobody", "nothing"})
MAX_WRONG_EXAMPLES = 10


def question_entries(ood_entries: list[dict]) -> list[dict]:
    """load_ood's entries -> one question entry per (image, OOD_QUESTIONS item):
    {"question_id", "image", "question", "path", "group"} (answer_entries' input)."""
    return [{"question_id": i * len(OOD_QUESTIONS) + j, "image": e["file"], "question": q, "path": e["path"],
             "group": e["group"]}
            for i, e in enumerate(ood_entries) for j, q in enumerate(OOD_QUESTIONS)]


def says_absent(text: str) -> bool:
    """Does the answer say nothing is there ("no", "none", "0", "nobody", "there are none")?
    A "no" to "what color is the dog?" counts too: it denies the dog rather than naming a
    colour (grounded_answer gives "no" the head's P(absent) as well)."""
    words = normalize_answer(text).split()
    return bool(words) and (words[0] in ABSENT_FIRST_WORDS or words[-1] == "none")


def said_wrong(answer) -> bool:
    """A VQAAnswer said to the user (not "I'm not sure", not a frame message) that claims a
    person or a dog is there: anything but an answer that ``says_absent``."""
    return not answer.abstained and not says_absent(answer.answer)


def question_counts(answers: list) -> dict:
    """VQAAnswers -> questions, said_wrong (count and share of questions), said_wrong_sure
    (of those, said at p >= SURE_ABOVE), not_sure (abstained on doubt), frame_messages
    (abstained: nothing to see); rates 0 over zero questions."""
    n = len(answers)
    wrong = [a for a in answers if said_wrong(a)]
    sure = int(sum(a.probability >= SURE_ABOVE for a in wrong))
    frames = sum(a.source == "frame" for a in answers)
    doubts = sum(a.abstained and a.source != "frame" for a in answers)
    return {"questions": n, "said_wrong": len(wrong), "said_wrong_rate": len(wrong) / max(n, 1),
            "said_wrong_sure": sure, "said_wrong_sure_rate": sure / max(n, 1), "sure_above": SURE_ABOVE,
            "not_sure": doubts, "not_sure_rate": doubts / max(n, 1),
            "frame_messages": frames, "frame_message_rate": frames / max(n, 1)}


def ood_question_report(entries: list[dict], answers: list) -> dict:
    """question_entries' entries and their VQAAnswers (same order) -> question_counts over
    all, "by_question" and "by_group", and "examples": up to MAX_WRONG_EXAMPLES wrong answers
    said, the surest first ({file, question, answer, probability})."""
    if len(entries) != len(answers):
        raise ValueError("ood_question_report: one answer per question entry")
    pairs = list(zip(entries, answers))
    wrong = sorted((p for p in pairs if said_wrong(p[1])), key=lambda p: -p[1].probability)
    return {
        **question_counts(answers),
        "by_question": {q: question_counts([a for e, a in pairs if e["question"] == q]) for q in OOD_QUESTIONS},
        "by_group": {g: question_counts([a for e, a in pairs if e["group"] == g])
                     for g in sorted({e["group"] for e in entries})},
        "examples": [{"file": e["image"], "question": e["question"], "answer": a.answer,
                      "probability": round(a.probability, 4)} for e, a in wrong[:MAX_WRONG_EXAMPLES]],
    }
