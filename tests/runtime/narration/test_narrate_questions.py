"""Questions typed during narration: the stdin reader, answers in the pipeline, the CLI.

Fakes from tests/support.py, as in test_narration_policy.py. Threads are synchronised with
events, never with sleeps; the timeouts below only keep a broken build from hanging the suite.
"""

import io
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

from edgevlm.runtime.engine import VQAAnswer
from edgevlm.runtime.narration.pipeline import NarrateOptions, Narrator
from edgevlm.runtime.narration.policy import PolicySettings
from edgevlm.runtime.narration.questions import NO_ANSWERS, Question, QuestionReader, merge_answers, spoken_answer
from edgevlm.runtime.sources import Frame
from tests.support import FakeClock, FakeEngine, FakeSpeech, make_video, scene_image

GUARD_S = 20.0  # a wait longer than this is a failure (a hang), never a timing check


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _frames(colours, start: int = 0, fps: float = 10.0) -> list[Frame]:
    """Frames of one dominant colour each; pixel (0,0) holds the frame index, so a frame can
    be told from its identical-looking neighbours (too small a change to move the gate)."""
    out = []
    for i, colour in enumerate(colours, start):
        image = scene_image(colour)
        image[0, 0, :] = i % 256
        out.append(Frame(image, i / fps, i, 100.0 + i / fps, f"f{i}"))
    return out


class AnsweringEngine(FakeEngine):
    """Answers "yes"; records each question and the frame index it was asked about."""

    answers_questions = True

    def __init__(self):
        super().__init__()
        self.encoded = 0
        self.asked: list[tuple[str, int]] = []
        self.answered = threading.Event()

    def encode(self, pixels):
        self.encoded += 1
        return super().encode(pixels)

    def answer_visual(self, visual, questions):
        self.asked += [(question, int(visual[0, 0, 0, 0])) for question in questions]
        self.answered.set()
        return [VQAAnswer("yes", "yes", 0.9, False) for _ in questions]

    def answer_sight(self, sight, questions):
        return self.answer_visual(sight.visual, questions)


class StagedSource:
    """A file source whose generator runs ``between`` (on the capture thread) after ``before``."""

    live, fps = False, 10.0

    def __init__(self, before, between, after=()):
        self.before, self.between, self.after = before, between, after

    def frames(self):
        yield from self.before
        self.between()
        yield from self.after


# --- the reader ---------------------------------------------------------------------------------
def test_reader_skips_blank_lines_keeps_the_latest_and_ends_at_eof():
    reader = QuestionReader(io.StringIO("first?\n\n   \nsecond?\nthird?\nfourth?"), keep=3).start()
    assert reader.ended.wait(GUARD_S)
    assert [q.text for q in reader.take()] == ["second?", "third?", "fourth?"] and reader.dropped == 1
    assert reader.take() == []


def test_reader_on_a_pipe_reads_whole_lines_and_closes_while_the_pipe_is_open():
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "r") as stream:
        reader = QuestionReader(stream).start()
        os.write(write_fd, "is there a dog?\nhalf a li".encode())
        _wait_until(lambda: len(reader) == 1, "the first line")
        os.write(write_fd, "ne\n".encode())
        _wait_until(lambda: len(reader) == 2, "the second line")
        assert [q.text for q in reader.take()] == ["is there a dog?", "half a line"]
        reader.close()  # the writer never closed: close() alone ends the thread
        assert reader.ended.is_set() and not reader._thread.is_alive()
    os.close(write_fd)


def test_several_waiting_answers_are_said_together_each_after_its_question():
    a = spoken_answer(Question("is there a dog?", 1.0), "yes", 0.5)
    b = spoken_answer(Question("how many people", 2.0), "two", 0.9)
    merged = merge_answers([a, b])
    assert merged.text == "is there a dog? yes. how many people? two."
    assert merged.lines == ["Q: is there a dog? A: yes", "Q: how many people A: two"]
    assert merged.captured_at == 1.0 and merge_answers([a]) is a


# --- the pipeline -------------------------------------------------------------------------------
class HeldSpeech(FakeSpeech):
    """Still saying its first utterance until a question's answer cuts it short (stop())."""

    def __init__(self, engine):
        super().__init__()
        self.engine, self.cut = engine, threading.Event()

    def synthesize(self, text, wav_path):
        if len(self.said) == 0:
            self.cut.wait(GUARD_S)
        return super().synthesize(text, wav_path)

    def stop(self):
        if self.engine.answered.is_set():  # scene changes call stop() too: only the answer's counts
            self.cut.set()
        return False


def test_a_question_is_answered_about_the_newest_frame_and_said_before_waiting_captions(tmp_path):
    engine = AnsweringEngine()
    speech = HeldSpeech(engine)
    read_fd, write_fd = os.pipe()
    before = _frames([2] * 10 + [1] * 10 + [0] * 10)  # red, green, blue: three captions

    def ask():  # once every frame so far is handled: captions 2 and 3 wait behind the first
        _wait_until(lambda: engine.encoded == len(before), "the frames before the question")
        os.write(write_fd, b"what is in front?\n")
        assert engine.answered.wait(GUARD_S)

    source = StagedSource(before, ask, _frames([2] * 10, start=30))
    events, subtitles = tmp_path / "events.jsonl", tmp_path / "n.vtt"
    options = NarrateOptions(policy=PolicySettings(min_gap=0.0), audio_out=str(tmp_path / "wav"),
                             events=str(events), subtitles=str(subtitles))
    lines = []
    with os.fdopen(read_fd, "r") as stream:
        summary = Narrator(engine, source, options, speech, lines.append, FakeClock(), questions=stream).run()
    os.close(write_fd)

    assert engine.asked == [("what is in front?", 29)]  # the newest frame, not the first of its scene
    # the answer first; the captions waiting when it came are never said; narration goes on
    assert lines == ["[    2.90s] Q: what is in front? A: yes", "[    3.10s] a man in a red shirt"]
    assert summary["questions"] == 1 and summary["question_to_answer_ms_p50"] is not None
    assert summary["stale_dropped"] >= 2 and summary["frames"] == 40
    logged = [json.loads(line) for line in events.read_text().splitlines()]
    answer = next(line for line in logged if line["event"] == "answer")
    assert {k: answer[k] for k in ("t", "question", "answer", "text", "probability", "abstained", "index")} == {
        "t": 2.9, "question": "what is in front?", "answer": "yes", "text": "yes", "probability": 0.9,
        "abstained": False, "index": 29}
    assert "question_to_answer_ms" in answer and "wall" in answer
    spoken = [line for line in logged if line["event"] == "spoken"]
    assert spoken[0]["answer"] is True and spoken[0]["text"] == "yes"
    assert "Q: what is in front? A: yes" in subtitles.read_text()
    assert logged[-1]["event"] == "summary" and logged[-1]["questions"] == 1


def _after_questions_are_read(narrator_box: dict, frames):
    """A source that starts once the narrator's reader has reached the end of its input."""
    def wait_for_eof():
        assert narrator_box["narrator"].questions.ended.wait(GUARD_S)

    return StagedSource([], wait_for_eof, frames)


def test_end_of_questions_does_not_end_narration(tmp_path):
    box, lines = {}, []
    engine = AnsweringEngine()
    options = NarrateOptions(policy=PolicySettings(min_gap=2.0), audio_out=str(tmp_path))
    source = _after_questions_are_read(box, _frames([2] * 50))
    box["narrator"] = Narrator(engine, source, options, FakeSpeech(), lines.append, FakeClock(),
                               questions=io.StringIO("is there a dog?\n\n"))
    summary = box["narrator"].run()
    assert engine.asked == [("is there a dog?", 0)]
    # the caption (of frame 0) waits min_gap after the answer, then narration goes on to the end
    assert lines == ["[    0.00s] Q: is there a dog? A: yes", "[    0.00s] a man in a red shirt"]
    assert box["narrator"].events.counts["spoken"] == 2
    assert summary["frames"] == 50 and summary["utterances"] == 1 and summary["questions"] == 1


def test_without_questions_narration_is_unchanged(tmp_path):
    box, lines = {}, []
    options = NarrateOptions(audio_out=str(tmp_path))
    box["narrator"] = Narrator(AnsweringEngine(), _after_questions_are_read(box, _frames([2] * 20)), options,
                               FakeSpeech(), lines.append, FakeClock(), questions=io.StringIO(""))
    summary = box["narrator"].run()
    assert lines == ["[    0.00s] a man in a red shirt"] and summary["questions"] == 0


def test_a_caption_only_engine_says_so_once_and_keeps_narrating(tmp_path):
    engine, lines, read_fd, write_fd = FakeEngine(), [], *os.pipe()
    notice = f"note: {NO_ANSWERS}"
    box = {}

    def ask_twice():  # the second question comes after the notice for the first
        os.write(write_fd, b"is there a dog?\n")
        _wait_until(lambda: notice in lines, "the notice")
        os.write(write_fd, b"what colour is it?\n")
        _wait_until(lambda: box["narrator"].questions.asked == 2, "the second question")

    source = StagedSource(_frames([2] * 10), ask_twice, _frames([1] * 30, start=10))
    options = NarrateOptions(policy=PolicySettings(min_gap=1.0), audio_out=str(tmp_path))
    with os.fdopen(read_fd, "r") as stream:
        box["narrator"] = Narrator(engine, source, options, FakeSpeech(), lines.append, FakeClock(), questions=stream)
        summary = box["narrator"].run()
    os.close(write_fd)
    assert lines.count(notice) == 1
    assert [line for line in lines if line != notice] == ["[    0.00s] a man in a red shirt", "[    1.10s] a dog on grass"]
    assert summary["questions"] == 0 and summary["captions"] == 2


def test_stop_ends_the_run_while_stdin_stays_open(tmp_path):
    read_fd, write_fd = os.pipe()
    box, engine = {}, AnsweringEngine()

    def endless():  # a camera that never ends; ctrl-C arrives once narration is under way
        for i in itertools.count():
            if i == 5:
                _wait_until(lambda: engine.encoded > 0, "a frame narrated")
                box["narrator"].stop()
            yield _frames([2], start=i)[0]

    class Camera:
        live, fps = True, 10.0
        frames = staticmethod(endless)

    with os.fdopen(read_fd, "r") as stream:
        box["narrator"] = Narrator(engine, Camera(), NarrateOptions(audio_out=str(tmp_path)),
                                   FakeSpeech(), lambda _: None, FakeClock(), questions=stream)
        thread = threading.Thread(target=lambda: box.update(summary=box["narrator"].run()), daemon=True)
        thread.start()
        thread.join(GUARD_S)  # the writer end is never closed: no EOF comes to end the reader
        assert not thread.is_alive() and not box["narrator"].questions._thread.is_alive()
    os.close(write_fd)
    assert box["summary"]["frames"] >= 1


# --- the CLI ------------------------------------------------------------------------------------
def _narrate(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "edgevlm.cli.main", "narrate", *args],
                          capture_output=True, text=True, timeout=120, **kwargs)


def test_cli_answers_a_typed_question_with_the_tiny_engine(tiny_engine_master, tmp_path):
    video = make_video(str(tmp_path / "v.avi"), seconds=2.0, fps=10)
    events = tmp_path / "events.jsonl"
    # --realtime: the run lasts the clip's 2 s, ample for the reader to see the question
    result = _narrate(video, "--engine", tiny_engine_master, "--tts", "none", "--realtime", "--events", str(events),
                      "--questions", input="is there a dog?\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert len([line for line in out if "] Q: is there a dog? A: " in line]) == 1
    assert any(line.startswith("[") and " Q: " not in line for line in out)  # and narration goes on
    answer = next(json.loads(line) for line in events.read_text().splitlines() if '"answer"' in line)
    assert answer["event"] == "answer" and answer["question"] == "is there a dog?"
    assert 0.0 <= answer["probability"] <= 1.0 and isinstance(answer["abstained"], bool)
    assert answer["text"] == ("I'm not sure" if answer["abstained"] else answer["answer"])
    assert json.loads(out[-1].removeprefix("summary: "))["questions"] == 1
    quiet = _narrate(video, "--engine", tiny_engine_master, "--tts", "none", "--realtime", "--no-questions",
                     input="is there a dog?\n")
    assert quiet.returncode == 0 and " Q: " not in quiet.stdout
    # A pipe is not read by default: in `while read f; do edgevlm narrate "$f"; done < list` it is the loop's list.
    piped = _narrate(video, "--engine", tiny_engine_master, "--tts", "none", input="is there a dog?\n")
    assert piped.returncode == 0 and " Q: " not in piped.stdout


def test_cli_caption_only_engine_notes_it_once_and_narrates(tiny_engine_dir, tmp_path):
    manifest = os.path.join(tiny_engine_dir, "edgevlm.json")
    with open(manifest) as f:
        data = json.load(f)
    data.pop("tasks", None)  # as an engine exported before VQA: captions only
    with open(manifest, "w") as f:
        json.dump(data, f)
    video = make_video(str(tmp_path / "v.avi"), seconds=2.0, fps=10)
    result = _narrate(video, "--engine", tiny_engine_dir, "--tts", "none", "--realtime", "--questions",
                      input="is there a dog?\nwhat colour is it?\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out.count(f"note: {NO_ANSWERS}") == 1 and " Q: " not in result.stdout
    assert any(line.startswith("[") for line in out) and out[-1].startswith("summary: ")


def test_cli_sigterm_stops_promptly_while_stdin_stays_open(tiny_engine_master, tmp_path):
    video = make_video(str(tmp_path / "long.avi"), seconds=120.0, fps=10)
    events = tmp_path / "events.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "edgevlm.cli.main", "narrate", video, "--engine",
                                tiny_engine_master, "--tts", "none", "--realtime", "--events", str(events),
                                "--questions"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (not events.exists() or "caption" not in events.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)  # stdin is still open: the question reader must not hold the exit
    stdout, stderr = process.stdout.read(), process.stderr.read()
    process.stdin.close()
    assert process.returncode == 0, stderr
    assert "Fatal Python error" not in stderr and stdout.splitlines()[-1].startswith("summary: ")
    assert json.loads(events.read_text().splitlines()[-1])["event"] == "summary"
