"""One narrated stream of ``edgevlm serve``: a thread that owns its engine and source and runs
the same Narrator as ``edgevlm narrate`` (gate, policy, questions), without a voice of its own:
its events go to an EventChannel (server-sent events), its newest frame to ``frame.jpg``, and
the page or the client speaks.

Used by the local server and inside each Ray replica.
"""

from __future__ import annotations

import collections
import logging
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass

import cv2

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.narration.pipeline import NarrateOptions, Narrator
from edgevlm.runtime.narration.questions import QuestionReader
from edgevlm.runtime.serve.errors import HTTPProblem
from edgevlm.runtime.serve.events import EventChannel
from edgevlm.runtime.serve.jobs import answer_json, clean_request_question
from edgevlm.runtime.sources import FrameSource, ReconnectSettings, source_kind

log = logging.getLogger(__name__)

OPEN_WAIT_S = 20.0  # POST /v1/streams waits this long for the engine and source to open
QUESTIONS_KEPT = 8  # questions waiting for the next frame; older ones are answered "too many questions"


@dataclass(frozen=True)
class StreamSpec:
    source: str
    realtime: bool = True  # a video file is paced like a camera (newest frame wins)
    read_timeout: float = 5.0
    beam: int | None = None  # narration's default (NarrateOptions.beam)


def check_source(source) -> str:
    """The source as given, or 400: a missing file fails before a thread starts."""
    if not isinstance(source, str) or not source.strip():
        raise HTTPProblem(400, 'give a "source": a video file path, camera index, /dev/videoN or rtsp:// URL')
    try:
        kind = source_kind(source)
    except EdgeVLMError as exc:
        raise HTTPProblem(400, str(exc)) from None
    if kind in ("image", "images"):
        raise HTTPProblem(400, f"{source} is a photo or folder: streams narrate a video file, camera or URL; "
                               "send photos to POST /v1/caption")
    return source


class StreamRunner:
    """Start with ``start()``; ``stop()`` ends it. ``open_engine()`` is called on its thread;
    ``channel``: where its events go (default: a new EventChannel)."""

    def __init__(self, spec: StreamSpec, open_engine, stream_id: str | None = None,
                 channel: EventChannel | None = None):
        self.id = stream_id or uuid.uuid4().hex[:8]
        self.spec = spec
        self.channel = channel or EventChannel()  # a Ray replica's forwards the events to the hub
        self.state = "starting"  # -> running -> ended | failed
        self.error: str | None = None
        self.last_caption: str | None = None
        self._open_engine = open_engine
        self._narrator: Narrator | None = None
        self._questions = QuestionReader(None, keep=QUESTIONS_KEPT)
        self._answers: collections.defaultdict[str, collections.deque[Future]] = collections.defaultdict(collections.deque)
        self._answers_lock = threading.Lock()
        self._opened = threading.Event()
        self._stopping = threading.Event()
        self._stop_reason = "end of source"
        self._answers_questions = False
        self._thread = threading.Thread(target=self._run, name=f"stream-{self.id}", daemon=True)

    # --- control (HTTP threads) -----------------------------------------------------------
    def start(self, wait: float = OPEN_WAIT_S) -> "StreamRunner":
        """Start, and wait until the source is open; 400 naming why when it failed to open."""
        self._thread.start()
        self._opened.wait(wait)
        if self.state == "failed":
            raise HTTPProblem(400, f"cannot open stream {self.spec.source}: {self.error}")
        return self

    def stop(self, wait: float = 10.0, reason: str = "removed") -> None:
        """End the stream; its summary event says ``"ended_by": reason`` ("removed", "server stopping")."""
        self._stop_reason = reason
        self._stopping.set()
        if self._narrator is not None:
            self._narrator.stop()
        self._thread.join(wait)

    def info(self) -> dict:
        counters = self.channel.counters
        return {"id": self.id, "source": self.spec.source, "state": self.state, "frames": counters.frames,
                "captions": counters.captions, "last_caption": self.last_caption, "error": self.error}

    def frame_jpeg(self, quality: int = 80) -> bytes | None:
        """The newest frame narrated, as JPEG; None before the first."""
        narrator = self._narrator
        frame = narrator.last_frame if narrator is not None else None
        if frame is None:
            return None
        ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return data.tobytes() if ok else None

    def ask(self, question) -> Future:
        """Queue a question about the newest frame; its Future gets the answer's JSON object.
        Blocks while the stream is still opening (whether its engine answers is not known yet)."""
        text = clean_request_question(question)
        self._opened.wait(OPEN_WAIT_S)
        if self.state in ("ended", "failed"):
            raise HTTPProblem(409, f"stream {self.id} has {self.state}; ask about a running stream or POST /v1/ask")
        if self.state == "running" and not self._answers_questions:
            raise HTTPProblem(400, "this stream's engine answers no questions (a captioning-only model); "
                                   "serve a VQA engine (--engine)")
        future: Future = Future()
        with self._answers_lock:
            self._answers[text].append(future)
        if self._questions.ask(text) is None:
            raise HTTPProblem(400, 'give a "question", e.g. "is there a dog?"')
        return future

    # --- the stream's thread ------------------------------------------------------------------
    def _publish(self, record: dict) -> None:
        if record["event"] == "spoken" and not record.get("answer") and not record.get("notice"):
            self.last_caption = record.get("text")
        elif record["event"] == "frame" and self.state == "starting":
            self.state = "running"
        elif record["event"] == "answer":
            self._resolve(record)
        elif record["event"] == "summary":  # why it ended: the page says "removed" or "ended"
            record = record | {"ended_by": self._stop_reason}
        self.channel.publish(record)

    def _resolve(self, record: dict) -> None:
        with self._answers_lock:
            waiting = self._answers.get(record.get("question"))
            future = waiting.popleft() if waiting else None
            if waiting is not None and not waiting:
                del self._answers[record["question"]]
        if future is not None and not future.done():
            future.set_result(answer_json(record.get("text"), record.get("answer"), record.get("probability"),
                                          record.get("abstained")))

    def _fail_waiting(self, message: str) -> None:
        with self._answers_lock:
            futures = [f for waiting in self._answers.values() for f in waiting]
            self._answers.clear()
        for future in futures:
            if not future.done():
                future.set_exception(HTTPProblem(409, message))

    def _run(self) -> None:
        engine = None
        try:
            engine = self._open_engine()
            engine.check_captions()
            self._answers_questions = engine.answers_questions
            options = NarrateOptions(beam=self.spec.beam, realtime=self.spec.realtime)
            with FrameSource(self.spec.source, read_timeout=self.spec.read_timeout,
                             reconnect=ReconnectSettings()) as frames:
                self._narrator = Narrator(engine, frames, options, speech=None, on_line=log.info,
                                          questions=self._questions, on_event=self._publish)
                self.state = "running" if self.state == "starting" else self.state
                self._opened.set()
                if not self._stopping.is_set():
                    self._narrator.run()
            self.state = "ended"
        except Exception as exc:  # noqa: BLE001 - a stream's failure is reported on the stream, the server goes on
            self.state, self.error = "failed", str(exc) if isinstance(exc, EdgeVLMError) else f"{type(exc).__name__}: {exc}"
            log.warning("stream %s failed: %s", self.id, self.error)
            self.channel.publish({"event": "stream_error", "message": self.error})
        finally:
            self._opened.set()
            self._fail_waiting(f"stream {self.id} has {self.state}")
            self.channel.close()
            if engine is not None:
                engine.close()
