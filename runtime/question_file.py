"""Question files (``edgevlm ask --questions``, ``eval --vqa``/``--pope``): read and check a
list of ``{"question_id", "image", "question"}``, and answer it image by image.

Torch-free and here, not in the CLI, because the evaluation answers the same files the
same way.
"""

from __future__ import annotations

import os
import re

from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import read_json
from edgevlm.runtime.preprocess import read_image_bgr


def resolve_image(image: str, questions_file: str, images_dir: str | None) -> str:
    """A questions file's "image": absolute, or under --images, else ``images/`` beside the
    file, else beside the file itself."""
    if os.path.isabs(image):
        return image
    base = os.path.dirname(os.path.abspath(questions_file))
    candidates = [os.path.join(images_dir, image)] if images_dir else [os.path.join(base, "images", image),
                                                                       os.path.join(base, image)]
    for path in candidates:
        if os.path.isfile(path):
            return path
    where = images_dir or f"{base}/images or {base}"
    raise EdgeVLMError(f"{questions_file}: image {image!r} not found in {where}; pass --images DIR")


def load_questions(path: str, images_dir: str | None) -> list[dict]:
    """Read and check a questions file -> entries with "path" added (fails before any answer)."""
    if not os.path.isfile(path):
        raise EdgeVLMError(f"questions file not found: {path}")
    data = read_json(path, 'a list of {"question_id", "image", "question"}')
    if not isinstance(data, list):
        raise EdgeVLMError(f'{path} must hold a JSON list of {{"question_id", "image", "question"}} objects')
    entries, seen = [], set()
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or not {"question_id", "image", "question"} <= set(entry):
            raise EdgeVLMError(f'{path}: entry [{index}] needs "question_id", "image" and "question"')
        qid = entry["question_id"]
        if not isinstance(qid, (int, str)) or qid in seen:
            raise EdgeVLMError(f'{path}: entry [{index}]: "question_id" {qid!r} must be a number or string, '
                               "unique in the file")
        seen.add(qid)
        if not isinstance(entry["question"], str) or not re.search(r"[A-Za-z0-9]", entry["question"]):
            raise EdgeVLMError(f'{path}: entry [{index}] (question_id {qid}): "question" must be a string with words')
        entries.append(dict(entry, path=resolve_image(str(entry["image"]), path, images_dir)))
    return entries


def answer_entries(engine, entries: list[dict], abstain_below: float | None = None):
    """Yield (entry, VQAAnswer), grouping questions by image so each photo is encoded once
    (order of the file kept in the output)."""
    by_path: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        by_path.setdefault(entry["path"], []).append(index)
    answers = [None] * len(entries)
    next_out = 0
    for path, indexes in by_path.items():
        found = engine.answer_image(read_image_bgr(path), [entries[i]["question"] for i in indexes], abstain_below)
        for i, answer in zip(indexes, found):
            answers[i] = answer
        while next_out < len(entries) and answers[next_out] is not None:
            yield entries[next_out], answers[next_out]
            next_out += 1
