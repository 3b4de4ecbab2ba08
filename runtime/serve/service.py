"""What the HTTP app asks of the engines, and the local implementation: worker threads for
requests, one thread per stream. ``ray_service.py`` implements the same methods on Ray Serve,
so the app in front is the same code either way.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import numpy as np

from edgevlm.paths import resolve_engine
from edgevlm.runtime.serve.errors import HTTPProblem
from edgevlm.runtime.serve.jobs import answer_record, caption_record
from edgevlm.runtime.serve.settings import ServeSettings
from edgevlm.runtime.serve.stream_runner import StreamRunner, StreamSpec, check_source
from edgevlm.runtime.serve.workers import EngineWorkers

ANSWER_WAIT_S = 30.0  # a stream question not answered by then: 504 (the stream is stalled)


class Service:
    """The engines behind the API. Requests: ``caption``/``ask`` (awaitables, 503 when full).
    Streams: ``add_stream``/``streams``/``remove_stream``/``frame_jpeg`` (blocking: the app runs
    them in its thread pool), ``ask_stream`` and the events (``events_since``, ``wait_events``)."""

    async def caption(self, image: np.ndarray) -> dict: ...
    async def ask(self, image: np.ndarray, question: str, abstain_below: float | None) -> dict: ...
    def add_stream(self, spec: StreamSpec) -> dict: ...
    def streams(self) -> list[dict]: ...
    def remove_stream(self, stream_id: str) -> None: ...
    def frame_jpeg(self, stream_id: str) -> bytes | None: ...
    async def ask_stream(self, stream_id: str, question: str) -> dict: ...
    async def events_since(self, stream_id: str, after: int) -> tuple[list[tuple[int, dict]], bool]: ...
    async def wait_events(self, stream_id: str, after: int, timeout: float) -> None: ...
    def stats(self) -> dict: ...
    def close(self) -> None: ...


def engine_opener(settings: ServeSettings):
    """A function that opens one engine as the settings say (called on the thread that owns it)."""
    engine_dir = resolve_engine(settings.engine_dir)

    def open_engine():
        from edgevlm.runtime.backends import configured_backend
        from edgevlm.runtime.engine import CaptionEngine

        # Configured here, in the process that opens the engine (a Ray replica's own).
        backend = configured_backend(settings.backend, settings.rebuild)
        return CaptionEngine(engine_dir, settings.provider, settings.threads, backend=backend)

    return open_engine


async def _result(future: Future, timeout: float | None = None):
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    except asyncio.TimeoutError:
        raise HTTPProblem(504, "no answer in time: the stream is stalled; try again") from None


class LocalService(Service):
    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self._open_engine = engine_opener(settings)
        self.workers = EngineWorkers(self._open_engine, settings.workers, settings.queue_size)
        self._streams: dict[str, StreamRunner] = {}
        self._lock = threading.Lock()
        self._closed = False

    async def caption(self, image):
        return await _result(self.workers.submit(lambda engine: caption_record(engine, image)))

    async def ask(self, image, question, abstain_below):
        return await _result(self.workers.submit(lambda engine: answer_record(engine, image, question, abstain_below)))

    # --- streams ----------------------------------------------------------------------------
    def add_stream(self, spec: StreamSpec) -> dict:
        check_source(spec.source)
        with self._lock:
            running = sum(r.state in ("starting", "running") for r in self._streams.values())
            if running >= self.settings.max_streams:
                raise HTTPProblem(503, f"already {running} streams, the most this server runs (--max-streams); "
                                       "DELETE one first", {"Retry-After": "30"})
            runner = StreamRunner(spec, self._open_engine)
            self._streams[runner.id] = runner
        try:
            runner.start()
        except HTTPProblem:  # the source or engine did not open: keep nothing
            with self._lock:
                self._streams.pop(runner.id, None)
            raise
        return runner.info()

    def _runner(self, stream_id: str) -> StreamRunner:
        with self._lock:
            runner = self._streams.get(stream_id)
        if runner is None:
            raise HTTPProblem(404, f"no stream {stream_id}; GET /v1/streams lists them")
        return runner

    def streams(self) -> list[dict]:
        with self._lock:
            runners = list(self._streams.values())
        return [r.info() for r in runners]

    def remove_stream(self, stream_id: str) -> None:
        runner = self._runner(stream_id)
        runner.stop()  # first: its followers get the last events (the summary) before it is gone
        with self._lock:
            self._streams.pop(stream_id, None)

    def frame_jpeg(self, stream_id: str) -> bytes | None:
        return self._runner(stream_id).frame_jpeg()

    async def ask_stream(self, stream_id: str, question: str) -> dict:
        runner = self._runner(stream_id)
        return await _result(await asyncio.to_thread(runner.ask, question), ANSWER_WAIT_S)  # may wait for it to open

    async def events_since(self, stream_id, after):
        return self._runner(stream_id).channel.since(after)

    async def wait_events(self, stream_id, after, timeout):
        await self._runner(stream_id).channel.wait(after, timeout)

    def stats(self) -> dict:
        with self._lock:
            runners = list(self._streams.values())
        return {"queue_waiting": self.workers.waiting, "queue_capacity": self.workers.count * self.workers.queue_size,
                "busy_rejections": self.workers.busy_rejections,
                "streams": {r.id: r.channel.counters.as_dict() | {"state": r.state} for r in runners}}

    def close(self) -> None:
        """Stop the streams and the workers; a second call does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runners = list(self._streams.values())
            self._streams.clear()
        for runner in runners:
            runner.stop(reason="server stopping")
        self.workers.close()
