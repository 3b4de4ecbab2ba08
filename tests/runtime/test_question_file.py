"""Question files from users (issue 16): strict for evaluation, keep-going for `ask`;
questions cleaned and bounded, with a note; sizes and types checked."""

import json

import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime import question_file
from edgevlm.runtime.question_file import answer_entries, load_questions
from edgevlm.runtime.text import MAX_QUESTION_CHARS
from tests.support import SAMPLE_PHOTOS


def _file(tmp_path, entries) -> str:
    path = tmp_path / "questions.json"
    path.write_text(json.dumps(entries))
    return str(path)


def test_questions_are_cleaned_and_a_long_one_is_cut_with_a_note(tmp_path):
    path = _file(tmp_path, [{"question_id": 1, "image": SAMPLE_PHOTOS[0], "question": "is there a \x1b[31mdog\x1b[0m?\x00"},
                            {"question_id": 2, "image": SAMPLE_PHOTOS[0], "question": "is it " + "x" * 10_000}])
    notes = []
    entries = load_questions(path, None, notify=notes.append)
    assert entries[0]["question"] == "is there a dog?"
    assert len(entries[1]["question"]) == MAX_QUESTION_CHARS
    assert notes == [f"{path}: entry [1] (question_id 2): question cut to {MAX_QUESTION_CHARS} characters "
                     f"({10_006 - MAX_QUESTION_CHARS} more dropped)"]


def test_strict_loading_fails_on_the_first_bad_entry_keep_going_marks_it(tmp_path):
    path = _file(tmp_path, [{"question_id": 1, "image": ["a list"], "question": "is there a dog?"},
                            {"question_id": 2, "image": SAMPLE_PHOTOS[0], "question": "is there a dog?"}])
    with pytest.raises(EdgeVLMError, match=r'entry \[0\] \(question_id 1\): "image" must be a file name'):
        load_questions(path, None)
    entries = load_questions(path, None, keep_going=True)
    assert "must be a file name" in entries[0]["error"] and "path" in entries[1]


def test_unusable_question_ids_still_fail_the_whole_file(tmp_path):
    for qid in ([1], True, None):
        path = _file(tmp_path, [{"question_id": qid, "image": SAMPLE_PHOTOS[0], "question": "is there a dog?"}])
        with pytest.raises(EdgeVLMError, match="must be a number or string, unique in the file"):
            load_questions(path, None, keep_going=True)


def test_a_questions_file_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    path = _file(tmp_path, [{"question_id": 1, "image": SAMPLE_PHOTOS[0], "question": "is there a dog?"}])
    monkeypatch.setattr(question_file, "MAX_QUESTIONS_BYTES", 10)
    with pytest.raises(EdgeVLMError, match="over the 10 bytes limit for this file"):
        load_questions(path, None)


def test_keep_going_answers_isolate_the_question_the_engine_refuses(tiny_engine_master, tmp_path):
    from edgevlm.runtime.engine import CaptionEngine

    path = _file(tmp_path, [{"question_id": 1, "image": SAMPLE_PHOTOS[0], "question": "is there a dog?"},
                            {"question_id": 2, "image": SAMPLE_PHOTOS[0], "question": "[SEP] [PAD]"},  # no words left
                            {"question_id": 3, "image": SAMPLE_PHOTOS[0], "question": "how many people are there?"}])
    engine = CaptionEngine(tiny_engine_master)
    found = dict((entry["question_id"], answer) for entry, answer in
                 answer_entries(engine, load_questions(path, None, keep_going=True), keep_going=True))
    assert isinstance(found[2], EdgeVLMError) and "has no words" in str(found[2])
    assert not isinstance(found[1], EdgeVLMError) and not isinstance(found[3], EdgeVLMError)
    with pytest.raises(EdgeVLMError, match="has no words"):
        list(answer_entries(engine, load_questions(path, None)))  # strict: evaluation stops
