"""Batches keep going (issue 16): `caption` over a folder or many files and `ask --questions`
report a bad item on stderr (and under --json as {key, "error"} in its place), answer the
rest, and exit 1 at the end."""

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from edgevlm.cli.main import cli
from tests.support import SAMPLE_PHOTOS


@pytest.fixture()
def folder_with_an_empty_jpg(tmp_path):
    """9 images: 8 copies of the sample photos, and an empty img3.jpg, third in name order."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(["img0", "img1", "img2", "img4", "img5", "img6", "img7", "img8"]):
        shutil.copy(SAMPLE_PHOTOS[i % len(SAMPLE_PHOTOS)], folder / f"{name}.jpg")
    (folder / "img3.jpg").write_bytes(b"")
    return folder


def _invoke(args):
    result = CliRunner().invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_caption_folder_with_an_empty_jpg_captions_the_other_8_and_exits_1(tiny_engine_master, folder_with_an_empty_jpg):
    result = _invoke(["caption", str(folder_with_an_empty_jpg), "--engine", tiny_engine_master])
    lines = result.stdout.splitlines()
    assert len(lines) == 8 and all(": " in line for line in lines)
    assert [os.path.basename(line.split(": ")[0]) for line in lines] == [f"img{i}.jpg" for i in (0, 1, 2, 4, 5, 6, 7, 8)]
    empty = folder_with_an_empty_jpg / "img3.jpg"
    assert result.stderr.splitlines() == [f"error: cannot decode image {empty}: an empty file; use a JPEG/PNG file"]
    assert result.exit_code == 1


def test_caption_json_puts_an_error_object_in_the_bad_files_place(tiny_engine_master, folder_with_an_empty_jpg):
    result = _invoke(["caption", str(folder_with_an_empty_jpg), "--engine", tiny_engine_master, "--json"])
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 9 and result.exit_code == 1
    assert records[3] == {"image": str(folder_with_an_empty_jpg / "img3.jpg"),
                          "error": f"cannot decode image {folder_with_an_empty_jpg / 'img3.jpg'}: an empty file; use a JPEG/PNG file"}
    assert all(set(r) == {"image", "caption"} for i, r in enumerate(records) if i != 3)
    assert len(result.stderr.splitlines()) == 1


def test_caption_many_files_and_a_bad_video_keep_going(tiny_engine_master, tmp_path):
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"not a video at all" * 10)
    notes = tmp_path / "notes.jpg"
    notes.write_text("hello")
    args = ["caption", SAMPLE_PHOTOS[0], str(bad_video), str(notes), SAMPLE_PHOTOS[1], "--engine", tiny_engine_master, "--json"]
    result = _invoke(args)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == [SAMPLE_PHOTOS[0], str(bad_video), str(notes), SAMPLE_PHOTOS[1]]
    assert "caption" in records[0] and "caption" in records[3]
    assert records[1]["source"] == str(bad_video) and "video" in records[1]["error"]
    assert records[2]["error"] == f"cannot decode image {notes}: not an image or corrupt; use a JPEG/PNG file"
    assert len(result.stderr.splitlines()) == 2 and result.exit_code == 1


def test_caption_without_failures_exits_0(tiny_engine_master):
    result = _invoke(["caption", *SAMPLE_PHOTOS[:2], "--engine", tiny_engine_master])
    assert result.exit_code == 0 and result.stderr == "" and len(result.stdout.splitlines()) == 2


def test_caption_with_a_model_keeps_the_bad_files_batch_mates(tiny_model_master, folder_with_an_empty_jpg):
    result = _invoke(["caption", str(folder_with_an_empty_jpg), "--model", tiny_model_master, "--json"])
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [("error" in r) for r in records] == [False, False, False, True, False, False, False, False, False]
    assert all(isinstance(r.get("caption", ""), str) for r in records)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1


def test_caption_a_missing_source_still_fails_before_any_output(tiny_engine_master, tmp_path):
    result = _invoke(["caption", SAMPLE_PHOTOS[0], str(tmp_path / "gone.jpg"), "--engine", tiny_engine_master])
    assert result.exit_code == 1 and result.stdout == "" and "source not found" in result.stderr


def _questions(tmp_path, entries) -> str:
    path = tmp_path / "questions.json"
    path.write_text(json.dumps(entries))
    return str(path)


def test_ask_questions_reports_bad_entries_and_answers_the_rest(tiny_engine_master, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    path = _questions(tmp_path, [
        {"question_id": 1, "image": SAMPLE_PHOTOS[0], "question": "is there a dog?"},
        {"question_id": 2, "image": str(empty), "question": "is there a dog?"},
        {"question_id": 3, "image": "gone.jpg", "question": "is there a dog?"},
        {"question_id": 4, "image": SAMPLE_PHOTOS[0], "question": "???"},
        {"question_id": 5, "image": SAMPLE_PHOTOS[0]},
        {"question_id": 6, "image": SAMPLE_PHOTOS[1], "question": "how many people are there?"},
    ])
    result = _invoke(["ask", "--questions", path, "--engine", tiny_engine_master, "--json"])
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["question_id"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert {"answer", "probability"} <= set(records[0]) and {"answer", "probability"} <= set(records[5])
    assert records[1] == {"question_id": 2, "error": f"cannot decode image {empty}: an empty file; use a JPEG/PNG file"}
    assert "image 'gone.jpg' not found" in records[2]["error"]
    assert '"question" must be a string with words' in records[3]["error"]
    assert 'needs "question_id", "image" and "question"' in records[4]["error"]
    errors = result.stderr.splitlines()
    assert [line.split(":")[0:2] for line in errors] == [["error", " question 2"], ["error", " question 3"],
                                                          ["error", " question 4"], ["error", " question 5"]]
    assert result.exit_code == 1


def test_ask_questions_text_output_skips_failures_and_exits_1(tiny_engine_master, tmp_path):
    path = _questions(tmp_path, [{"question_id": "a", "image": "gone.jpg", "question": "is there a dog?"},
                                 {"question_id": "b", "image": SAMPLE_PHOTOS[0], "question": "is there a dog?"}])
    result = _invoke(["ask", "--questions", path, "--engine", tiny_engine_master])
    assert result.stdout.startswith(f"b {SAMPLE_PHOTOS[0]}: is there a dog? -> ") and len(result.stdout.splitlines()) == 1
    assert result.stderr.startswith("error: question a: ") and result.exit_code == 1


def test_ask_questions_all_good_exits_0(tiny_engine_master, tmp_path):
    path = _questions(tmp_path, [{"question_id": 1, "image": SAMPLE_PHOTOS[0], "question": "is there a dog?"}])
    result = _invoke(["ask", "--questions", path, "--engine", tiny_engine_master, "--json"])
    assert result.exit_code == 0 and result.stderr == "" and json.loads(result.stdout)["question_id"] == 1


def test_ask_questions_file_that_is_not_a_list_still_fails_whole(tiny_engine_master, tmp_path):
    path = _questions(tmp_path, {"question_id": 1})
    result = _invoke(["ask", "--questions", path, "--engine", tiny_engine_master])
    assert result.exit_code == 1 and result.stdout == "" and "must hold a JSON list" in result.stderr
