"""Questions typed on stdin (issue 16): one line is one question, however long, cut to
MAX_QUESTION_CHARS with one note saying how much was dropped; control characters and escape
sequences never reach the console, the event log or speech."""

import io
import os
import time

from edgevlm.runtime.narration.questions import MAX_LINE_BYTES, QuestionReader
from edgevlm.runtime.text import MAX_QUESTION_CHARS

GUARD_S = 20.0  # only a hang fails


def _read_all(data: bytes, via_pipe: bool):
    """Feed ``data`` through a pipe (the descriptor path) or a StringIO; -> (questions, notes)."""
    notes = []
    if via_pipe:
        read_fd, write_fd = os.pipe()
        stream = os.fdopen(read_fd, "r")
        reader = QuestionReader(stream, keep=10, notify=notes.append).start()
        for start in range(0, len(data), 1000):  # in pieces, as a terminal or a slow writer sends them
            os.write(write_fd, data[start : start + 1000])
        os.close(write_fd)
    else:
        stream = io.StringIO(data.decode("utf-8"))
        reader = QuestionReader(stream, keep=10, notify=notes.append).start()
    assert reader.ended.wait(GUARD_S)
    stream.close()
    return [q.text for q in reader.take()], notes


def test_a_10000_character_line_is_one_bounded_question_and_one_note():
    long_line = ("is there a dog " * 700)[:10_000]
    for via_pipe in (True, False):
        questions, notes = _read_all((long_line + "\nis there a cat?\n").encode(), via_pipe)
        assert len(questions) == 2, via_pipe
        assert len(questions[0]) <= MAX_QUESTION_CHARS and long_line.startswith(questions[0])
        assert questions[1] == "is there a cat?"
        cut = len(long_line.strip()) - MAX_QUESTION_CHARS
        assert notes == [f"question cut to {MAX_QUESTION_CHARS} characters ({cut} more dropped)"], via_pipe


def test_an_endless_line_keeps_memory_bounded_and_counts_what_it_dropped():
    endless = "é" * (4 * MAX_LINE_BYTES)  # two UTF-8 bytes each: counted as characters, not bytes
    questions, notes = _read_all(endless.encode(), via_pipe=True)  # no newline at all, then EOF
    assert questions == ["é" * MAX_QUESTION_CHARS]
    assert notes == [f"question cut to {MAX_QUESTION_CHARS} characters ({len(endless) - MAX_QUESTION_CHARS} more dropped)"]


def test_control_bytes_and_escape_sequences_are_stripped_before_anyone_sees_them():
    # U+009B is the one-character CSI (C1): UTF-8 b"\xc2\x9b".
    typed = "is there a \x1b[31mdog\x1b[0m?\x07\x00\r\n\x1b]0;owned\x07how\tmany\u009b2J people?\n\x1b[2J\x1b[H\n".encode()
    for via_pipe in (True, False):
        questions, notes = _read_all(typed, via_pipe)
        assert questions == ["is there a dog?", "how many people?"] and notes == []


def test_a_question_is_stamped_when_read():
    clock_values = iter([5.0, 6.0])
    reader = QuestionReader(io.StringIO("one?\ntwo?\n"), clock=lambda: next(clock_values)).start()
    assert reader.ended.wait(GUARD_S)
    assert [(q.text, q.asked_at) for q in reader.take()] == [("one?", 5.0), ("two?", 6.0)]
    assert time.monotonic() > 0


def test_narrate_echoes_logs_and_answers_only_the_cleaned_question(tiny_engine_master, tmp_path):
    import json
    import subprocess
    import sys

    from tests.support import make_video

    video = make_video(str(tmp_path / "v.avi"), seconds=2.0, fps=10)
    events = tmp_path / "events.jsonl"
    typed = "is there a \x1b[31mdog\x1b[0m?\x07" + " and" * 3000 + "\n"  # 12,000+ characters on one line
    result = subprocess.run([sys.executable, "-m", "edgevlm.cli.main", "narrate", video, "--engine", tiny_engine_master,
                             "--tts", "none", "--realtime", "--events", str(events), "--questions"],
                            input=typed, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    asked = [line for line in result.stdout.splitlines() if " Q: " in line]
    assert len(asked) == 1 and asked[0].split(" Q: ")[1].startswith("is there a dog? and and")
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    answer = next(json.loads(line) for line in events.read_text().splitlines() if '"answer"' in line)
    assert answer["question"].startswith("is there a dog? and") and len(answer["question"]) <= MAX_QUESTION_CHARS
    assert "question cut to 500 characters" in result.stderr and json.loads(
        result.stdout.splitlines()[-1].removeprefix("summary: "))["questions"] == 1
