"""``edgevlm ask``: answer questions about a photo, or the newest frame of a video or camera.

Runs on the torch-free runtime (the shipped engine by default). ``--questions FILE.json``
answers a list of ``{"question_id", "image", "question"}`` in one process, one JSON line
per question; photos are read once per distinct image. A bad entry or image is an
``error:`` line on stderr (with ``--json``, also ``{"question_id", "error"}`` on stdout in its
place), the other questions are answered, and the exit code is 1 at the end.

Questions, typed or filed, are cleaned (``clean_question``: no control characters or escape
sequences, at most 500 characters) before they are echoed or answered.
"""

from __future__ import annotations

import json

import click

from edgevlm.cli.options import backend_option, engine_option, provider_option, rebuild_option, threads_option
from edgevlm.errors import EdgeVLMError
from edgevlm.paths import resolve_engine


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
@engine_option
@provider_option
@backend_option
@rebuild_option
@threads_option
@click.option("--abstain-below", type=click.FloatRange(0.0, 1.0), default=None,
              help="Say \"I'm not sure\" when the answer's probability is below this (default: the engine's tuned value).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per answer.")
def command(source, question, questions_file, images_dir, engine_dir, provider, backend, rebuild, threads, abstain_below, as_json):
    """Answer QUESTION about SOURCE: a photo, or the newest frame of a video file, camera
    index, /dev/videoN, URL or GStreamer pipeline. Or answer every question in --questions FILE.

    \b
      edgevlm ask photo.jpg "is there a dog?"
      edgevlm ask 0 "how many people are there?" --json
      edgevlm ask --json --questions questions.json
    """
    from edgevlm.runtime.backends import configured_backend
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.question_file import answer_entries, load_questions
    from edgevlm.runtime.sources import FrameSource, source_kind
    from edgevlm.runtime.text import clean_question, cut_note

    note = lambda message: click.echo(f"note: {message}", err=True)  # noqa: E731
    if questions_file:
        if source or question:
            raise EdgeVLMError("give either SOURCE QUESTION or --questions FILE, not both")
        entries = load_questions(questions_file, images_dir, keep_going=True, notify=note)
        engine = CaptionEngine(resolve_engine(engine_dir), provider, threads, backend=configured_backend(backend, rebuild))
        failed = 0
        for entry, answer in answer_entries(engine, entries, abstain_below, keep_going=True):
            if isinstance(answer, EdgeVLMError):
                failed += 1
                click.echo(f"error: question {entry['question_id']}: {answer}", err=True)
                if as_json:
                    click.echo(json.dumps({"question_id": entry["question_id"], "error": str(answer)}))
            elif as_json:
                click.echo(json.dumps(_record(answer, question_id=entry["question_id"], image=entry["image"],
                                              question=entry["question"])))
            else:
                click.echo(f"{entry['question_id']} {entry['image']}: {entry['question']} -> {answer.text}")
        if failed:
            raise SystemExit(1)
        return
    if question is not None:
        question, dropped = clean_question(question)
        if dropped:
            note(cut_note(dropped))
    if not source or not question:
        raise EdgeVLMError('give a SOURCE and a QUESTION, e.g. edgevlm ask photo.jpg "is there a dog?", or --questions FILE')
    source_kind(source)  # a missing file fails before the engine loads
    engine = CaptionEngine(resolve_engine(engine_dir), provider, threads, backend=configured_backend(backend, rebuild))
    with FrameSource(source) as frames:
        frame = frames.newest_frame()
    answer = engine.answer_image(frame.image, [question], abstain_below)[0]
    if as_json:
        click.echo(json.dumps(_record(answer, image=frame.label, question=question)))
    else:
        click.echo(answer.text)
