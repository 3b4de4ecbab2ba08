"""``edgevlm ask``: answer questions about a photo, or the newest frame of a video or camera.

Runs on the torch-free runtime (the shipped engine by default). ``--questions FILE.json``
answers a list of ``{"question_id", "image", "question"}`` in one process, one JSON line
per question; photos are read once per distinct image.
"""

from __future__ import annotations

import json
import os
import re

import click

from edgevlm.cli.caption_cmd import resolve_engine
from edgevlm.errors import EdgeVLMError


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
    from edgevlm.fileio import read_json

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
    from edgevlm.runtime.preprocess import read_image_bgr

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


def _record(answer, **fields) -> dict:
    return fields | {"answer": answer.text, "model_answer": answer.answer,
                     "probability": round(answer.probability, 4), "abstained": answer.abstained}


@click.command("ask")
@click.argument("source", required=False)
@click.argument("question", required=False)
@click.option("--questions", "questions_file", type=click.Path(), default=None,
              help='JSON list of {"question_id", "image", "question"}: answer all, one JSON line each.')
@click.option("--images", "images_dir", type=click.Path(), default=None,
              help="Folder the questions file's images are in (default: images/ beside it, or beside it).")
@click.option("--engine", "engine_dir", default=None, type=click.Path(), help="Engine folder (default: the shipped engine).")
@click.option("--provider", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None, help="onnxruntime intra-op threads.")
@click.option("--abstain-below", type=click.FloatRange(0.0, 1.0), default=None,
              help="Say \"I'm not sure\" when the answer's probability is below this (default: the engine's tuned value).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per answer.")
def command(source, question, questions_file, images_dir, engine_dir, provider, threads, abstain_below, as_json):
    """Answer QUESTION about SOURCE: a photo, or the newest frame of a video file, camera
    index, /dev/videoN, URL or GStreamer pipeline. Or answer every question in --questions FILE.

    \b
      edgevlm ask photo.jpg "is there a dog?"
      edgevlm ask 0 "how many people are there?" --json
      edgevlm ask --json --questions questions.json
    """
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.sources import FrameSource, source_kind

    if questions_file:
        if source or question:
            raise EdgeVLMError("give either SOURCE QUESTION or --questions FILE, not both")
        entries = load_questions(questions_file, images_dir)
        engine = CaptionEngine(resolve_engine(engine_dir), provider, threads)
        for entry, answer in answer_entries(engine, entries, abstain_below):
            if as_json:
                click.echo(json.dumps(_record(answer, question_id=entry["question_id"], image=entry["image"],
                                              question=entry["question"])))
            else:
                click.echo(f"{entry['question_id']} {entry['image']}: {entry['question']} -> {answer.text}")
        return
    if not source or not question or not question.strip():
        raise EdgeVLMError('give a SOURCE and a QUESTION, e.g. edgevlm ask photo.jpg "is there a dog?", or --questions FILE')
    source_kind(source)  # a missing file fails before the engine loads
    engine = CaptionEngine(resolve_engine(engine_dir), provider, threads)
    with FrameSource(source) as frames:
        frame = frames.newest_frame()
    answer = engine.answer_image(frame.image, [question], abstain_below)[0]
    if as_json:
        click.echo(json.dumps(_record(answer, image=frame.label, question=question)))
    else:
        click.echo(answer.text)
