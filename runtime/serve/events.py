"""A stream's events, from the narration thread to any number of HTTP clients.

Each event (the JSON object ``--events`` writes) gets an increasing id; the newest
``keep`` stay, so a client that reconnects with ``Last-Event-ID`` resumes where it left off
(unless it was away so long they are gone), and memory stays flat on a stream that runs
for days. Subscribers wait on asyncio events that the narration thread sets through their
loop (``call_soon_threadsafe``): no polling, no lock held across an await.
"""

from __future__ import annotations

import asyncio
import collections
import threading

LATENCY_BUCKETS_MS = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class EventChannel:
    def __init__(self, keep: int = 1000):
        self._events: collections.deque[tuple[int, dict]] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()
        self._next_id = 1
        self._closed = False
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.counters = StreamCounters()

    def publish(self, record: dict) -> None:
        """Any thread: add one event and wake the subscribers."""
        with self._lock:
            self._events.append((self._next_id, record))
            self._next_id += 1
            self.counters.add(record)
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        """No more events: subscribers end after the last one."""
        with self._lock:
            self._closed = True
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def since(self, after: int) -> tuple[list[tuple[int, dict]], bool]:
        """The kept events with id > ``after``, oldest first, and whether the channel is closed."""
        with self._lock:
            return [(i, r) for i, r in self._events if i > after], self._closed

    async def wait(self, after: int, timeout: float) -> None:
        """Until there is an event with id > ``after``, the channel closes, or ``timeout`` s pass."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._lock:
            if self._closed or self._next_id - 1 > after:
                return
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(waiter)


class StreamCounters:
    """What /metrics reports for a stream, counted from its events (so a stream run anywhere,
    e.g. on a Ray replica, is counted the same way from the events it sends back)."""

    def __init__(self):
        self.frames = self.captions = self.utterances = self.questions = 0
        self.skipped = collections.Counter()  # reason -> frames or captions not said
        self.errors = collections.Counter()  # kind -> count
        self.caption_ms = Histogram()  # frame captured -> caption ready
        self.speech_ms = Histogram()  # frame captured -> caption said
        self.answer_ms = Histogram()  # question asked -> answer ready

    def add(self, record: dict) -> None:
        kind = record.get("event")
        if kind == "frame":
            self.frames += 1
        elif kind == "caption":
            self.captions += 1
            self.caption_ms.observe(record.get("frame_to_caption_ms"))
        elif kind == "spoken" and not record.get("answer") and not record.get("notice"):
            self.utterances += 1
            if not record.get("reannounce"):
                self.speech_ms.observe(record.get("frame_to_speech_ms"))
        elif kind == "answer":
            self.questions += 1
            self.answer_ms.observe(record.get("question_to_answer_ms"))
        elif kind == "skip_unchanged":
            self.skipped["unchanged"] += 1
        elif kind == "skip_duplicate":
            self.skipped["duplicate"] += 1
        elif kind in ("source_lost", "source_skipped", "source_ended_early", "stream_error"):
            self.errors[kind] += 1

    def as_dict(self) -> dict:
        return {"frames": self.frames, "captions": self.captions, "utterances": self.utterances,
                "questions": self.questions, "skipped": dict(self.skipped), "errors": dict(self.errors),
                "caption_ms": self.caption_ms.as_dict(), "speech_ms": self.speech_ms.as_dict(),
                "answer_ms": self.answer_ms.as_dict()}


class Histogram:
    """Cumulative counts of milliseconds under each of LATENCY_BUCKETS_MS, their sum and count."""

    def __init__(self):
        self.buckets = [0] * len(LATENCY_BUCKETS_MS)
        self.count, self.sum = 0, 0.0

    def observe(self, ms) -> None:
        if ms is None:
            return
        self.count += 1
        self.sum += float(ms)
        for i, bound in enumerate(LATENCY_BUCKETS_MS):
            if ms <= bound:
                self.buckets[i] += 1

    def as_dict(self) -> dict:
        return {"buckets": list(self.buckets), "count": self.count, "sum": round(self.sum, 3)}
