"""Engines that answer requests: one thread per engine, a bounded queue in front of them.

An engine is not thread-safe (its caches are reused), so each worker thread opens its own
and is the only one to touch it. A request that finds the queue full is refused at once
(``Busy``: HTTP 503 with Retry-After) rather than waiting in an unbounded backlog.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Callable

from edgevlm.runtime.serve.errors import Busy

_STOP = object()


class EngineWorkers:
    """``count`` threads, each with the engine ``open_engine()`` returns (called in that
    thread); ``submit(job)`` runs ``job(engine)`` on one of them and returns its Future.
    At most ``count * queue_size`` jobs wait."""

    def __init__(self, open_engine: Callable[[], object], count: int = 1, queue_size: int = 8):
        self.count, self.queue_size = count, queue_size
        self._jobs: queue.Queue = queue.Queue(maxsize=count * queue_size)
        self._threads: list[threading.Thread] = []
        self.busy_rejections = 0
        ready: list[BaseException | None] = []
        ready_lock, all_ready = threading.Lock(), threading.Event()

        def started(error: BaseException | None) -> None:
            with ready_lock:
                ready.append(error)
                if len(ready) == count:
                    all_ready.set()

        for i in range(count):
            thread = threading.Thread(target=self._work, args=(open_engine, started), name=f"engine-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        all_ready.wait()
        errors = [e for e in ready if e is not None]
        if errors:
            self.close()
            raise errors[0]

    @property
    def waiting(self) -> int:
        """Jobs queued, not yet taken by a worker."""
        return self._jobs.qsize()

    def submit(self, job: Callable[[object], object]) -> Future:
        future: Future = Future()
        try:
            self._jobs.put_nowait((job, future))
        except queue.Full:
            self.busy_rejections += 1
            raise Busy() from None
        return future

    def close(self) -> None:
        for _ in self._threads:
            try:
                self._jobs.put((_STOP, None), timeout=5)
            except queue.Full:
                break
        for thread in self._threads:
            thread.join(timeout=5)

    def _work(self, open_engine, started) -> None:
        try:
            engine = open_engine()
        except BaseException as exc:  # e.g. a bad engine folder: the server does not start
            started(exc)
            return
        started(None)
        try:
            while True:
                job, future = self._jobs.get()
                if job is _STOP:
                    return
                if not future.set_running_or_notify_cancel():  # the client went away while it waited
                    continue
                try:
                    future.set_result(job(engine))
                except BaseException as exc:  # the request's error, answered to its client
                    future.set_exception(exc)
        finally:
            engine.close()
