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

One line is one question, however long: at most MAX_LINE_BYTES of it are kept while reading
(memory stays bounded), ``clean_question`` removes control characters and escape sequences
(never echoed to the console, the event log or speech) and cuts it to MAX_QUESTION_CHARS
characters; the rest is dropped with one note (a 10,000-character paste was once read as
three questions and the first said back for four minutes).
"""

from __future__ import annotations

import collections
import io
import logging
import os
import re
import select
import threading
import time
from dataclasses import dataclass
from typing import Callable, TextIO

from edgevlm.runtime.narration.policy import Utterance
from edgevlm.runtime.text import clean_question, cut_note

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often a reader waiting on its descriptor checks close()
MAX_LINE_BYTES = 8192  # bytes of a line kept while reading: 500 characters of UTF-8 plus escapes
_UTF8_CONTINUATION = re.compile(rb"[\x80-\xbf]")
NO_ANSWERS = ("this engine answers no questions (a captioning-only model): narration goes on; "
              "ask with a VQA engine (--engine)")


@dataclass(frozen=True)
class Question:
    text: str
    asked_at: float  # the reader's clock (monotonic seconds) when the line was read


def _characters(data: bytes) -> int:
    """How many characters UTF-8 ``data`` holds (its bytes that start one)."""
    return len(data) - len(_UTF8_CONTINUATION.findall(data))


class QuestionReader:
    """Lines of ``stream`` -> pending questions (blank lines ignored, the latest ``keep`` kept).
    ``notify`` hears, in one line, of a question cut short (default: a logged warning). Without
    a stream no thread reads: questions arrive through ``ask`` (``edgevlm serve``)."""

    def __init__(self, stream: TextIO | None, clock: Callable[[], float] = time.monotonic, keep: int = 3,
                 notify: Callable[[str], None] | None = None):
        self.stream, self.clock = stream, clock
        self.notify = notify or log.warning
        self._pending: collections.deque[Question] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.ended = threading.Event()  # set at end of input (or a read error, or close())
        self.asked = 0  # questions read so far
        self.dropped = 0  # questions pushed out by newer ones before they were answered
        self._thread: threading.Thread | None = None

    def start(self) -> "QuestionReader":
        if self.stream is None:
            return self
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

    def ask(self, text: str) -> Question | None:
        """Queue ``text`` as a question from elsewhere than the stream; the Question queued
        (cleaned), or None when nothing of it is left to ask."""
        return self._add(text)

    # --- the reader thread ----------------------------------------------------------------
    def _add(self, line: str, unread: int = 0) -> Question | None:
        """Queue one line as a question; ``unread``: characters of it already dropped unread."""
        text, dropped = clean_question(line)
        dropped += unread
        if dropped:
            self.notify(cut_note(dropped))
        if not text:
            return None
        question = Question(text, self.clock())
        with self._lock:
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
            self._pending.append(question)
            self.asked += 1
        return question

    def _read(self) -> None:
        try:
            fd = _descriptor(self.stream)
            lines = self._fd_lines(fd) if fd is not None else self._text_lines()
            for line, unread in lines:
                self._add(line, unread)
        except (OSError, ValueError) as exc:  # a closed or broken stdin: no more questions, narration goes on
            log.info("questions: stopped reading (%s)", exc)
        finally:
            self.ended.set()

    def _text_lines(self):
        """(line kept, characters dropped unread) from a stream without a descriptor."""
        while not self._closed.is_set():
            line = self.stream.readline(MAX_LINE_BYTES)
            if not line:
                return
            unread = 0
            while not line.endswith("\n"):  # over-long: skip to the end of the line, counting
                rest = self.stream.readline(MAX_LINE_BYTES)
                if not rest:
                    break
                unread += len(rest.rstrip("\n"))
                if rest.endswith("\n"):
                    break
            yield line, unread

    def _fd_lines(self, fd: int):
        """(line kept, characters dropped unread) from descriptor ``fd`` as UTF-8 (bad bytes
        replaced), until EOF or close(). A line keeps its first MAX_LINE_BYTES bytes; the rest
        is counted and dropped, up to its newline."""
        kept, unread = bytearray(), 0
        while not self._closed.is_set():
            if _in_background(fd):
                self._closed.wait(POLL_S)
                continue
            readable, _, _ = select.select([fd], [], [], POLL_S)
            if not readable:
                continue
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:  # a non-blocking descriptor with nothing after all
                continue
            if not chunk:
                if kept or unread:
                    yield kept.decode("utf-8", "replace"), unread  # a last line without a newline
                return
            while chunk:
                end = chunk.find(b"\n")
                part, chunk = (chunk, b"") if end < 0 else (chunk[:end], chunk[end + 1 :])
                room = MAX_LINE_BYTES - len(kept)
                kept += part[:room]
                unread += _characters(part[room:])
                if end >= 0:
                    yield kept.decode("utf-8", "replace"), unread
                    kept, unread = bytearray(), 0


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
