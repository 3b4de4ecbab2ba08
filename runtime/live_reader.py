"""Reading a live source (camera, URL, GStreamer pipeline) on a background thread that keeps
only the newest frame, and reconnects when the source drops.

A live source is lost when reads fail ``MAX_FAILED_READS`` times in a row (end of stream:
the server went away; decoder errors), when a read fails after no frame for
``read_timeout`` seconds (FFmpeg's read timeout: a stalled stream), or when the consumer
has seen no frame for ``read_timeout`` seconds (a read that blocks: a stalled camera).
Then, with ``ReconnectSettings``, the capture is released and reopened at once, then after
``interval`` seconds, doubling up to ``max_interval`` (bounded backoff, as NanoLLM's video
source and DeepStream's nvurisrcbin do), ``attempts`` times or forever (0); the consumer
gets a ``LOST`` change once and a ``BACK`` change with the first frame after it. Without
them (``caption``), a lost source is an error, as before.

Watchdog: a read or open that has not returned after ``stuck_after`` seconds cannot be
interrupted (OpenCV has no cancel, and releasing a capture under a blocked read is undefined
behaviour), so the consumer raises a one-line error and the run ends instead of hanging;
the stuck daemon thread is abandoned to process exit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.stream_items import BACK, LOST, Frame, SourceChange, SourceStats

MAX_FAILED_READS = 5  # failed reads in a row that mean "lost" (a single corrupt frame does not)
POLL_S = 0.25  # how often a waiting consumer checks for a stall or a stuck read, seconds


@dataclass(frozen=True)
class ReconnectSettings:
    """How a lost live source is reopened. Seconds for the waits; ``attempts`` 0 = forever."""

    interval: float = 1.0  # wait after the first failed reopen (the first is immediate), seconds
    max_interval: float = 5.0  # the wait doubles up to this, seconds
    attempts: int = 0  # reopen attempts per loss before giving up; 0: never give up

    def __post_init__(self):
        if self.interval <= 0:
            raise EdgeVLMError(f"reconnect interval must be above 0 s (got {self.interval})")
        if self.max_interval < self.interval:
            raise EdgeVLMError(f"reconnect max_interval ({self.max_interval} s) must be at least "
                               f"the interval ({self.interval} s)")
        if self.attempts < 0:
            raise EdgeVLMError(f"reconnect attempts must be 0 (forever) or more (got {self.attempts})")

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before reopen ``attempt`` (1-based): 0, interval, 2x, 4x ... max."""
        return 0.0 if attempt <= 1 else min(self.interval * 2 ** (attempt - 2), self.max_interval)


class LiveReader:
    """Reads ``capture`` on a daemon thread; ``reopen()`` gives a fresh capture (or one that is
    not opened) after a loss. Iterate ``items()`` for frames (newest only) and changes."""

    def __init__(self, capture, reopen: Callable[[], object], spec: str, read_timeout: float,
                 reconnect: ReconnectSettings | None, stuck_after: float, clock: Callable[[], float] = time.monotonic):
        self.spec, self.read_timeout, self.reconnect, self.stuck_after = spec, read_timeout, reconnect, stuck_after
        self._reopen, self.clock = reopen, clock
        self._cond = threading.Condition(threading.RLock())  # re-entrant: _next may mark a loss
        self._stop = threading.Event()
        self._newest: Frame | None = None
        # (index of the newest frame when it happened, change): a change is handed out after that frame
        self._changes: list[tuple[int, SourceChange]] = []
        self._error: str | None = None
        self._call: tuple[str, float] | None = None  # ("read" | "open", started): what the thread is inside
        self._started = clock()
        self._last_frame_at = self._started
        self._lost_at: float | None = None  # clock() when lost; None while frames come
        self._attempt = 0  # reopen attempts since the loss (the backoff's position)
        self.stats = SourceStats()
        self.capture = capture  # the current capture, None between a loss and a reopen
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    # --- the reader thread ----------------------------------------------------------------
    def _run(self) -> None:
        index, failures = 0, 0
        while not self._stop.is_set():
            if self.capture is None and not self._open_again():
                return
            ok, image = self._inside("read", self.capture.read)
            now = self.clock()
            if ok:
                failures = 0
                with self._cond:
                    self._last_frame_at = now
                    if self._lost_at is not None:
                        self._mark_back(now)
                    t = now - self._started
                    self._newest = Frame(image, t, index, now, f"{self.spec}@{t:.2f}s")
                    self._cond.notify_all()
                index += 1
                continue
            failures += 1
            if failures < MAX_FAILED_READS and now - self._last_frame_at < self.read_timeout:
                continue  # one bad frame (a decoder error): read on
            failures = 0
            if self.reconnect is None:
                self._fail(f"live source {self.spec} stopped delivering frames")
                return
            self._mark_lost(now, "the stream ended" if now - self._last_frame_at < self.read_timeout
                            else f"no frame for {self.read_timeout:g} s")
            self.capture.release()  # the read returned: releasing is safe now
            self.capture = None

    def _open_again(self) -> bool:
        """Reopen after a loss, with backoff; False when stopped or out of attempts. The attempt
        count runs on until a frame comes back: a capture that opens but reads nothing backs off too."""
        while not self._stop.is_set():
            self._attempt += 1
            attempt = self._attempt
            if self.reconnect.attempts and attempt > self.reconnect.attempts:
                self._fail(f"live source {self.spec} lost and not back after {self.reconnect.attempts} reconnect "
                           "attempts; check the camera or stream, or allow more with --reconnect-attempts (0: forever)")
                return False
            if self._stop.wait(self.reconnect.wait_before(attempt)):
                return False
            with self._cond:
                self.stats.reconnect_attempts += 1
            try:
                capture = self._inside("open", self._reopen)
            except Exception:  # an opener that raises is one failed attempt, like one not opened
                continue
            if capture is not None and capture.isOpened():
                self.capture = capture
                return True
            if capture is not None:
                capture.release()
        return False

    def _inside(self, what: str, call):
        """``call()``, recorded so that the watchdog can see a read or open that never returns."""
        with self._cond:
            self._call = (what, self.clock())
        try:
            return call()
        finally:
            with self._cond:
                self._call = None

    def _fail(self, message: str) -> None:
        with self._cond:
            self._error = message
            self._cond.notify_all()

    # --- state changes ----------------------------------------------------------------------
    def _mark_lost(self, now: float, reason: str) -> None:
        with self._cond:
            if self._lost_at is not None:
                return  # already said
            self._lost_at = now
            self.stats.source_lost += 1
            message = f"live source {self.spec} lost ({reason}); reconnecting"
            self._changes.append((self._newest_index(), SourceChange(LOST, now - self._started, message,
                                                                     {"reason": reason})))
            self._cond.notify_all()

    def _mark_back(self, now: float) -> None:
        with self._cond:
            gone = now - self._lost_at
            self.stats.source_back += 1
            self.stats.seconds_without_source += gone
            self._changes.append((self._newest_index(), SourceChange(
                BACK, now - self._started, f"live source {self.spec} back after {gone:.1f} s",
                {"seconds_without_source": round(gone, 2), "reconnect_attempts": self._attempt})))
            self._lost_at, self._attempt = None, 0

    def _newest_index(self) -> int:
        return self._newest.index if self._newest is not None else -1

    # --- the consumer ---------------------------------------------------------------------
    def items(self, stop: threading.Event | None = None) -> Iterator[Frame | SourceChange]:
        """Newest frames (each once) and source changes, in order, until ``stop`` is set (checked
        while waiting, so a consumer stopping during an outage is not kept waiting); raises
        EdgeVLMError when the source is gone for good (no reconnect, or out of attempts) or
        capture is stuck."""
        last = -1
        while True:
            with self._cond:
                item = self._next(last)
                while item is None:
                    if stop is not None and stop.is_set():
                        return
                    self._cond.wait(POLL_S)
                    item = self._next(last)
            if isinstance(item, Frame):
                last = item.index
            yield item

    def _next(self, last: int) -> Frame | SourceChange | None:
        """Under the lock: the next item to hand out, or None to wait; raises as ``items``."""
        if self._changes:
            after, change = self._changes[0]
            if after > last and self._newest_index() == after:  # the frame before the change goes first
                return self._newest
            self._changes.pop(0)
            return change
        if self._newest is not None and self._newest.index != last:
            return self._newest
        if self._error:
            raise EdgeVLMError(self._error)
        now = self.clock()
        if self._call is not None and now - self._call[1] > self.stuck_after:
            raise EdgeVLMError(f"capture of {self.spec} is stuck: a {self._call[0]} has not returned for "
                               f"{now - self._call[1]:.0f} s; unplug and replug the camera (or restart its server) "
                               "and run again")
        if now - self._last_frame_at >= self.read_timeout and self._lost_at is None:
            if self.reconnect is None:
                raise EdgeVLMError(f"no frame from {self.spec} for {self.read_timeout:.0f} s: is it still connected?")
            # A blocked read (a stalled camera): say so now; the reader reconnects once the read returns.
            self._mark_lost(now, f"no frame for {self.read_timeout:g} s")
            return self._next(last)
        return None

    # --- ending ----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.read_timeout + 1.0)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def source_stats(self) -> SourceStats:
        """The counters so far; an outage still going on counts up to now."""
        with self._cond:
            stats = SourceStats(**vars(self.stats))
            if self._lost_at is not None:
                stats.seconds_without_source += self.clock() - self._lost_at
            stats.seconds_without_source = round(stats.seconds_without_source, 2)
            return stats
