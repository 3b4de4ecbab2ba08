"""What a worker does with an engine for one request: the same engine calls as the CLI's
``caption`` and ``ask``, answered as the JSON objects of the API. Shared by the local
workers and the Ray replicas."""

from __future__ import annotations

import numpy as np

from edgevlm.runtime.serve.errors import HTTPProblem
from edgevlm.runtime.text import clean_question

MISSING_QUESTION = 'give a "question", e.g. "is there a dog?"'


def clean_request_question(question) -> str:
    """The question as the CLI would ask it (control characters removed, cut to length); 400 when empty."""
    if not isinstance(question, str):
        raise HTTPProblem(400, MISSING_QUESTION)
    text, _ = clean_question(question)
    if not text:
        raise HTTPProblem(400, MISSING_QUESTION)
    return text


def caption_record(engine, image_bgr: np.ndarray) -> dict:
    """(H,W,3) uint8 BGR -> {"caption", "issue", "hedged"} ("caption" is what to tell the user:
    the reason when nothing can be seen, a guess when the image is unfamiliar)."""
    engine.check_captions()
    description = engine.describe_images([image_bgr])[0]
    return {"caption": description.text, "issue": description.issue, "hedged": description.hedged}


def answer_record(engine, image_bgr: np.ndarray, question: str, abstain_below: float | None = None) -> dict:
    """(H,W,3) uint8 BGR + question -> {"answer", "probability", "abstained", "model_answer"}
    ("answer" is what to tell the user: "I'm not sure" below the engine's threshold)."""
    answer = engine.answer_image(image_bgr, [question], abstain_below)[0]
    return answer_json(answer.text, answer.answer, answer.probability, answer.abstained)


def answer_json(text: str, model_answer: str | None, probability: float | None, abstained: bool) -> dict:
    return {"answer": text, "probability": None if probability is None else round(float(probability), 4),
            "abstained": bool(abstained), "model_answer": model_answer}
