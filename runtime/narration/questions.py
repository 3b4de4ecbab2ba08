"""Questions typed during narration (one per line on standard input), and their answers.

A daemon thread reads lines and queues them; it never touches the engine (not thread-safe):
the inference thread takes the pending questions between frames and answers them about the
newest frame. The queue keeps only the latest ``keep`` questions, so a flood of lines cannot
grow memory. End of input ends the reader only: narration goes on.

A stream with a file descriptor (stdin: a terminal, pipe or file) is read with ``select`` +
``os.read``, never through ``sys.stdin``'s buffered reader: a thread blocked inside that
reader holds its lock, and interpreter shutdown then aborts ("could not acquire lock for
<stdin>"). Polling also lets ``close()`` end the thread within ``POLL_S`` while the stream
stays open. Streams without a descriptor (``io.StringIO`` in tests) are read line by line.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import select
import threading
import time
from dataclasses import dataclass
from typing import Callable, TextIO

from edgevlm.runtime.narration.policy import Utterance

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often a reader waiting on its descriptor checks close()
MAX_LINE_BYTES = 4096  # a longer line is cut here (a question is a few words)
NO_ANSWERS = ("this engine answers no questions (a captioning-only model): narration goes on; "
              "ask with a VQA engine (--engine)")


@dataclass(frozen=True)
class Question:
    text: str
    asked_at: float  # the reader's clock (monotonic seconds) when the line was read


class QuestionReader:
    """Lines of ``stream`` -> pending questions (blank lines ignored, the latest ``keep`` kept)."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic, keep: int = 3):
        self.stream, self.clock = stream, clock
        self._pending: collections.deque[Question] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.ended = threading.Event()  # set at end of input (or a read error, or close())
        self.asked = 0  # questions read so far
        self.dropped = 0  # questions pushed out by newer ones before they were answered
        self._thread: threading.Thread | None = None

    def start(self) -> "QuestionReader":
        self._thread = threading.Thread(target=self._read, name="questions", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 2 * POLL_S) -> None:
        """Stop reading; returns within ``timeout`` even while the stream stays open."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def take(self) -> list[Question]:
        """The pending questions, oldest first; the queue is left empty."""
        with self._lock:
            questions = list(self._pending)
            self._pending.clear()
        return questions

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    # --- the reader thread ----------------------------------------------------------------
    def _add(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        with self._lock:
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
            self._pending.append(Question(text, self.clock()))
            self.asked += 1

    def _read(self) -> None:
        try:
            fd = _descriptor(self.stream)
            lines = self._fd_lines(fd) if fd is not None else self._text_lines()
            for line in lines:
                self._add(line)
        except (OSError, ValueError) as exc:  # a closed or broken stdin: no more questions, narration goes on
            log.info("questions: stopped reading (%s)", exc)
        finally:
            self.ended.set()

    def _text_lines(self):
        while not self._closed.is_set():
            line = self.stream.readline()
            if not line:
                return
            yield line

    def _fd_lines(self, fd: int):
        """Lines read from descriptor ``fd`` as UTF-8 (bad bytes replaced), until EOF or close()."""
        buffer = b""
        while not self._closed.is_set():
            if _in_background(fd):
                self._closed.wait(POLL_S)
                continue
            readable, _, _ = select.select([fd], [], [], POLL_S)
            if not readable:
                continue
            try:
                chunk = os.read(fd, MAX_LINE_BYTES)
            except BlockingIOError:  # a non-blocking descriptor with nothing after all
                continue
            if not chunk:
                if buffer:
                    yield buffer.decode("utf-8", "replace")  # a last line without a newline
                return
            buffer += chunk
            *whole, buffer = buffer.split(b"\n")
            if len(buffer) > MAX_LINE_BYTES:  # no newline in sight: keep memory bounded
                whole, buffer = [*whole, buffer[:MAX_LINE_BYTES]], b""
            yield from (line.decode("utf-8", "replace") for line in whole)


def _in_background(fd: int) -> bool:
    """True for a background job's terminal (`edgevlm narrate 0 &`): reading it would get
    the process stopped by the kernel (SIGTTIN), so it waits to be brought to the foreground."""
    try:
        return os.isatty(fd) and os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:
        return False


def _descriptor(stream) -> int | None:
    """The stream's file descriptor, or None for in-memory streams."""
    try:
        return stream.fileno()
    except (AttributeError, io.UnsupportedOperation):
        return None


# --- answers, as utterances -----------------------------------------------------------------
@dataclass
class SpokenAnswer(Utterance):
    """Answers said ahead of any caption. ``text`` is what is said; ``captured_at`` is when
    the (first) question was typed, so speech latency is question -> speech."""

    pairs: tuple[tuple[str, str], ...] = ()  # (question, answer text) for each question answered

    @property
    def lines(self) -> list[str]:
        """"Q: ... A: ..." per question: for the console and the subtitles."""
        return [f"Q: {question} A: {answer}" for question, answer in self.pairs]


def spoken_answer(question: Question, answer_text: str, t: float) -> SpokenAnswer:
    """One answered question -> the utterance: the answer alone is said (the user just asked)."""
    return SpokenAnswer(answer_text, t, question.asked_at, pairs=((question.text, answer_text),))


def merge_answers(answers: list[SpokenAnswer]) -> SpokenAnswer:
    """Answers waiting at once (oldest first) -> one utterance that says each after its
    question: a bare "yes. two." would not say which is which."""
    if len(answers) == 1:
        return answers[0]
    pairs = tuple(pair for answer in answers for pair in answer.pairs)
    said = " ".join(f"{question.rstrip('?.!')}? {answer}." for question, answer in pairs)
    return SpokenAnswer(said, answers[-1].t, answers[0].captured_at, pairs=pairs)
