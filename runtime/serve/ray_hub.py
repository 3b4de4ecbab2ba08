"""The hub of ``edgevlm serve --ray``: a small Ray actor that holds every stream's spec, the
replica that runs it and its events, and that the replicas long-poll for their commands.
Why a hub, and the protocol: ``ray_service.py``'s docstring. Imported only with the ray extra
installed (the actor itself is plain Python, so its logic is tested without Ray).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
import uuid

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.serve.errors import HTTPProblem
from edgevlm.runtime.serve.events import EventChannel
from edgevlm.runtime.serve.stream_runner import OPEN_WAIT_S, StreamSpec


log = logging.getLogger(__name__)

HUB_NAMESPACE = "edgevlm"
POLL_S = 1.0  # a replica's idle long poll returns after this many seconds (its heartbeat)
LOST_S = 30.0  # a replica silent this many seconds is lost; its streams end
STOP_WAIT_S = 15.0  # DELETE waits this long for the replica to stop the stream
FRAME_WAIT_S = 10.0  # frame.jpg waits this long for the replica's frame
REMOVED_KEEP_S = 60.0  # a deleted stream's events stay this long for the followers it had (not new ones)
REMOVED_KEPT = 64  # and for at most this many deleted streams


# --------------------------------------------------------------------------- outcomes
# Results cross process boundaries as plain tuples: an HTTPProblem raised in a replica would
# arrive wrapped in Ray's RayTaskError, without its status and headers.
def attempt(work) -> tuple:
    try:
        return ("ok", work())
    except HTTPProblem as exc:
        return problem(exc.status, exc.message, exc.headers)
    except EdgeVLMError as exc:  # the app answers it 400, as locally
        return ("edgevlm", str(exc))


def problem(status: int, message: str, headers: dict | None = None) -> tuple:
    return ("problem", status, message, dict(headers or {}))


def unwrap(outcome: tuple):
    if outcome[0] == "ok":
        return outcome[1]
    if outcome[0] == "problem":
        raise HTTPProblem(outcome[1], outcome[2], outcome[3])
    raise EdgeVLMError(outcome[1])


def not_found(stream_id: str) -> tuple:
    return problem(404, f"no stream {stream_id}; GET /v1/streams lists them")


def choose_replica(loads: list[tuple[str, int, int]]) -> str | None:
    """``loads``: (replica, live streams, streams kept) in registration order -> the replica for
    the next stream: fewest live, then fewest kept, then the earliest registered. None: none."""
    if not loads:
        return None
    return min(enumerate(loads), key=lambda item: (item[1][1], item[1][2], item[0]))[1][0]


# --------------------------------------------------------------------------- the hub (a Ray actor)
class _Replica:
    def __init__(self, key: str, rank, order: int):
        self.key, self.rank, self.order = key, rank, order
        self.inbox: list[tuple] = []  # (call id, op, stream id, argument)
        self.wake = asyncio.Event()
        self.seen = time.monotonic()
        self.report: dict = {}


class _Stream:
    """A stream as the hub mirrors it from its events (state as ``StreamRunner`` keeps it)."""

    def __init__(self, stream_id: str, spec: StreamSpec, replica: str, keep: int):
        self.id, self.spec, self.replica = stream_id, spec, replica
        self.channel = EventChannel(keep)
        self.state, self.error, self.last_caption = "starting", None, None

    def observe(self, record: dict) -> None:
        kind = record.get("event")
        if kind == "spoken" and not record.get("answer") and not record.get("notice"):
            self.last_caption = record.get("text")
        elif kind == "frame" and self.state == "starting":
            self.state = "running"
        elif kind == "stream_error":
            self.error = record.get("message")
        self.channel.publish(record)

    def close(self) -> None:
        self.state = "failed" if self.error else "ended"
        self.channel.close()

    @property
    def live(self) -> bool:
        return self.state in ("starting", "running")

    def info(self) -> dict:
        counters = self.channel.counters
        return {"id": self.id, "source": self.spec.source, "state": self.state, "frames": counters.frames,
                "captions": counters.captions, "last_caption": self.last_caption, "error": self.error,
                "replica": self.replica}


class StreamHub:
    """Streams' assignments, commands and events (an async Ray actor: one event loop, no locks).
    Plain Python, so its protocol is tested without Ray. Every method answers an outcome tuple
    or plain data."""

    def __init__(self, max_streams: int, keep: int = 1000, lost_s: float = LOST_S):
        self.max_streams, self.keep, self.lost_s = max_streams, keep, lost_s
        self.replicas: dict[str, _Replica] = {}
        self.streams: dict[str, _Stream] = {}
        self._calls: dict[int, tuple[asyncio.Future, str]] = {}
        self._removed: collections.OrderedDict[str, tuple[_Stream, float]] = collections.OrderedDict()
        self._call_ids = itertools.count(1)
        self._order = itertools.count()

    # --- replicas' side ------------------------------------------------------------------
    async def register(self, key: str, rank=None) -> None:
        if key not in self.replicas:
            self.replicas[key] = _Replica(key, rank, next(self._order))

    async def unregister(self, key: str) -> None:
        self._drop(key, "the engine replica running it shut down")

    async def next_commands(self, key: str, report: dict | None = None, wait: float = POLL_S) -> list[tuple]:
        """A replica's long poll: its commands, at once or within ``wait`` s ([] when none)."""
        await self.register(key)
        replica = self.replicas[key]
        replica.seen, replica.report = time.monotonic(), report or {}
        self._check_lost()
        if not replica.inbox:
            replica.wake.clear()
            try:
                await asyncio.wait_for(replica.wake.wait(), wait)
            except asyncio.TimeoutError:
                pass
        commands, replica.inbox = replica.inbox, []
        return commands

    async def push(self, items: list[tuple[str, dict | None]]) -> None:
        """Events from a replica, in the order they happened; ``None``: the stream ended."""
        for stream_id, record in items:
            stream = self.streams.get(stream_id)
            if stream is None:  # deleted: its last events go nowhere
                continue
            if record is None:
                stream.close()
            else:
                stream.observe(record)

    async def reply(self, call_id: int, outcome: tuple) -> None:
        waiting = self._calls.get(call_id)
        if waiting is not None and not waiting[0].done():
            waiting[0].set_result(outcome)

    # --- the driver's side ---------------------------------------------------------------
    async def add_stream(self, spec: StreamSpec, run_spec: StreamSpec | None = None) -> tuple:
        """Assign, start on the replica, wait until it opened: the stream's info, or a problem.
        ``run_spec``: what the replica opens (an absolute path), ``spec`` what the user gave."""
        self._check_lost()
        running = sum(s.live for s in self.streams.values())
        if running >= self.max_streams:
            return problem(503, f"already {running} streams, the most this server runs (--max-streams); "
                                 "DELETE one first", {"Retry-After": "30"})
        loads = [(r.key, sum(s.live for s in self.streams.values() if s.replica == r.key),
                  sum(s.replica == r.key for s in self.streams.values()))
                 for r in sorted(self.replicas.values(), key=lambda r: r.order)]
        key = choose_replica(loads)
        if key is None:
            return problem(503, "no engine replica is up; retry in a moment", {"Retry-After": "5"})
        stream_id = uuid.uuid4().hex[:8]
        stream = self.streams[stream_id] = _Stream(stream_id, spec, key, self.keep)
        outcome = await self._call(key, "start", stream_id, run_spec or spec, OPEN_WAIT_S + 10)
        if outcome[0] != "ok":
            self.streams.pop(stream_id, None)
            return outcome
        if stream.state == "starting":  # open; its first frame may not have arrived yet
            stream.state = "running"
        return ("ok", stream.info())

    async def remove_stream(self, stream_id: str) -> tuple:
        """Stop it on its replica first (its followers get the last events, the summary saying
        "ended_by": "removed"), then forget it."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return not_found(stream_id)
        if stream.replica in self.replicas:
            await self._call(stream.replica, "stop", stream_id, None, STOP_WAIT_S)
        stream.channel.close()  # (already, unless the replica did not answer): its followers end
        if self.streams.pop(stream_id, None) is not None:
            self._removed[stream_id] = (stream, time.monotonic() + REMOVED_KEEP_S)
            while len(self._removed) > REMOVED_KEPT:
                self._removed.popitem(last=False)
        return ("ok", None)

    async def call(self, stream_id: str, op: str, argument, timeout: float) -> tuple:
        """``op`` ("ask", "frame") on the replica that runs the stream."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return not_found(stream_id)
        return await self._call(stream.replica, op, stream_id, argument, timeout)

    async def stream_infos(self) -> list[dict]:
        self._check_lost()
        return [s.info() for s in self.streams.values()]

    async def events_since(self, stream_id: str, after: int) -> tuple:
        stream = self._followed(stream_id, after)
        return not_found(stream_id) if stream is None else ("ok", stream.channel.since(after))

    async def wait_events(self, stream_id: str, after: int, timeout: float) -> tuple:
        stream = self._followed(stream_id, after)
        if stream is None:
            return not_found(stream_id)
        await stream.channel.wait(after, timeout)
        return ("ok", None)

    async def stats(self) -> dict:
        self._check_lost()
        now = time.monotonic()
        return {"streams": {s.id: s.channel.counters.as_dict() | {"state": s.state, "replica": s.replica}
                            for s in self.streams.values()},
                "replicas": {r.key: {"rank": r.rank, "live_streams": sum(s.live and s.replica == r.key
                                                                         for s in self.streams.values()),
                                     "seen_s_ago": round(now - r.seen, 3), **r.report}
                             for r in self.replicas.values()}}

    # --- inside ----------------------------------------------------------------------------
    def _followed(self, stream_id: str, after: int) -> _Stream | None:
        """The stream, or a deleted one for a client already following it (``after`` > 0):
        its followers get its last events (the summary) whenever they come back for them."""
        stream = self.streams.get(stream_id)
        if stream is None and after > 0 and stream_id in self._removed:
            stream, until = self._removed[stream_id]
            if time.monotonic() > until:
                del self._removed[stream_id]
                return None
        return stream

    async def _call(self, key: str, op: str, stream_id: str, argument, timeout: float) -> tuple:
        replica = self.replicas.get(key)
        if replica is None:
            return problem(503, f"the engine replica running stream {stream_id} is gone; DELETE it and add it again")
        call_id = next(self._call_ids)
        future = asyncio.get_running_loop().create_future()
        self._calls[call_id] = (future, key)
        replica.inbox.append((call_id, op, stream_id, argument))
        replica.wake.set()
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return problem(504, "no answer in time: the stream is stalled; try again")
        finally:
            self._calls.pop(call_id, None)

    def _check_lost(self) -> None:
        now = time.monotonic()
        for key in [r.key for r in self.replicas.values() if now - r.seen > self.lost_s]:
            log.warning("engine replica %s lost (silent %.0f s)", key, now - self.replicas[key].seen)
            self._drop(key, "the engine replica running it was lost")

    def _drop(self, key: str, why: str) -> None:
        """The replica is gone: its live streams fail, calls waiting on it are answered 503."""
        if self.replicas.pop(key, None) is None:
            return
        for stream in self.streams.values():
            if stream.replica == key and stream.live:
                stream.observe({"event": "stream_error", "message": why})
                stream.close()
        for future, replica in list(self._calls.values()):
            if replica == key and not future.done():
                future.set_result(problem(503, f"{why}; try again"))
