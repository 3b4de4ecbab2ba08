"""Question files (``edgevlm ask --questions``, ``eval --vqa``/``--pope``): read and check a
list of ``{"question_id", "image", "question"}``, and answer it image by image.

Torch-free and here, not in the CLI, because the evaluation answers the same files the
same way. Questions go through ``clean_question`` (no control characters or escape
sequences, at most MAX_QUESTION_CHARS characters), as typed ones do.

Strict by default (evaluation: any bad entry fails the whole file before any answer).
With ``keep_going`` (``ask --questions``) a bad entry or image becomes that entry's error
and the others are answered; only what leaves no entry to report on (not a list, an entry
without a usable, unique ``question_id``) still fails the file.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Callable, Iterator

from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import read_json
from edgevlm.runtime.preprocess import read_image_bgr
from edgevlm.runtime.text import clean_question, cut_note

log = logging.getLogger(__name__)

MAX_QUESTIONS_BYTES = 256 * 1024 * 1024  # 256 MB: ~2 million questions


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


def _checked_entry(path: str, index: int, entry: dict, images_dir: str | None, notify: Callable[[str], None]) -> dict:
    """One entry with a valid question_id -> the entry with "path" and a cleaned "question";
    an EdgeVLMError naming the entry for a missing key, a bad question or a missing image."""
    qid = entry["question_id"]
    if not {"image", "question"} <= set(entry):
        raise EdgeVLMError(f'{path}: entry [{index}] needs "question_id", "image" and "question"')
    image = entry["image"]
    if isinstance(image, bool) or not isinstance(image, (str, int)) or not str(image).strip():
        raise EdgeVLMError(f'{path}: entry [{index}] (question_id {qid}): "image" must be a file name')
    question = entry["question"]
    if isinstance(question, str):
        question, dropped = clean_question(question)
        if dropped:
            notify(f"{path}: entry [{index}] (question_id {qid}): {cut_note(dropped)}")
    if not isinstance(question, str) or not re.search(r"[A-Za-z0-9]", question):
        raise EdgeVLMError(f'{path}: entry [{index}] (question_id {qid}): "question" must be a string with words')
    return dict(entry, question=question, path=resolve_image(str(image), path, images_dir))


def load_questions(path: str, images_dir: str | None, keep_going: bool = False,
                   notify: Callable[[str], None] = log.warning) -> list[dict]:
    """Read and check a questions file -> entries with "path" added and "question" cleaned.
    Strict: the first bad entry is an EdgeVLMError (before any answer). ``keep_going``: a bad
    entry gets "error" (its message) instead of "path". ``notify`` hears of questions cut short."""
    if not os.path.isfile(path):
        raise EdgeVLMError(f"questions file not found: {path}")
    data = read_json(path, 'a list of {"question_id", "image", "question"}', MAX_QUESTIONS_BYTES)
    if not isinstance(data, list):
        raise EdgeVLMError(f'{path} must hold a JSON list of {{"question_id", "image", "question"}} objects')
    entries, seen = [], set()
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or "question_id" not in entry:
            raise EdgeVLMError(f'{path}: entry [{index}] needs "question_id", "image" and "question"')
        qid = entry["question_id"]
        if isinstance(qid, bool) or not isinstance(qid, (int, str)) or qid in seen:
            raise EdgeVLMError(f'{path}: entry [{index}]: "question_id" {qid!r} must be a number or string, '
                               "unique in the file")
        seen.add(qid)
        try:
            entries.append(_checked_entry(path, index, entry, images_dir, notify))
        except EdgeVLMError as exc:
            if not keep_going:
                raise
            entries.append(dict(entry, error=str(exc)))
    return entries


def _answer_one_image(engine, path: str, questions: list[str], abstain_below: float | None, keep_going: bool,
                      transform=None) -> list:
    """Answers (or, with ``keep_going``, EdgeVLMErrors) for the questions about one photo,
    which is read (then passed through ``transform``, if given) and encoded once; with
    ``keep_going`` a question the engine refuses fails alone."""
    try:
        image = read_image_bgr(path)
    except EdgeVLMError as exc:
        if not keep_going:
            raise
        return [exc] * len(questions)
    if transform is not None:
        image = transform(image)
    try:
        return engine.answer_image(image, questions, abstain_below)
    except EdgeVLMError:
        if not keep_going:
            raise
    found: list[object] = []
    for question in questions:  # rare: find the question the engine refused, answer the others
        try:
            found.extend(engine.answer_image(image, [question], abstain_below))
        except EdgeVLMError as exc:
            found.append(exc)
    return found


def answer_entries(engine, entries: list[dict], abstain_below: float | None = None,
                   keep_going: bool = False, transform=None) -> Iterator[tuple[dict, object]]:
    """Yield (entry, VQAAnswer), grouping questions by image so each photo is encoded once
    (order of the file kept in the output). ``keep_going``: (entry, EdgeVLMError) for an
    entry that failed to load, whose image cannot be read, or whose question was refused;
    ``transform``: image (H,W,3) -> image, applied to every photo read (eval's shifted copy)."""
    by_path: dict[str, list[int]] = {}
    answers: list[object] = [None] * len(entries)
    for index, entry in enumerate(entries):
        if "error" in entry:
            answers[index] = EdgeVLMError(entry["error"])
        else:
            by_path.setdefault(entry["path"], []).append(index)
    next_out = 0

    def ready():
        nonlocal next_out
        while next_out < len(entries) and answers[next_out] is not None:
            yield entries[next_out], answers[next_out]
            next_out += 1

    yield from ready()
    for path, indexes in by_path.items():
        found = _answer_one_image(engine, path, [entries[i]["question"] for i in indexes], abstain_below, keep_going,
                                  transform)
        for i, answer in zip(indexes, found):
            answers[i] = answer
        yield from ready()
