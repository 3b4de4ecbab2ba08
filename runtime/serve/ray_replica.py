"""An engine replica of ``edgevlm serve --ray`` (the Serve deployment ``engine``): one engine
for caption/ask requests, and the streams the hub assigns it, each a ``StreamRunner`` whose
events are forwarded to the hub in order. See ``ray_service.py`` for the design.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.serve.errors import HTTPProblem
from edgevlm.runtime.serve.events import EventChannel
from edgevlm.runtime.serve.jobs import answer_record, caption_record
from edgevlm.runtime.serve.service import engine_opener
from edgevlm.runtime.serve.settings import ServeSettings
from edgevlm.runtime.serve.stream_runner import StreamRunner, StreamSpec, check_source
from edgevlm.runtime.serve.workers import EngineWorkers

from edgevlm.runtime.serve.ray_hub import HUB_NAMESPACE, attempt, problem

log = logging.getLogger(__name__)

FLUSH_WAIT_S = 5.0  # a stopped stream's last events reach the hub before DELETE answers, or this passes


# --------------------------------------------------------------------------- a replica
class _ForwardingChannel(EventChannel):
    """The runner's channel in a replica: counts as locally and forwards each event (in order)
    to the replica's outbox, which goes to the hub. Keeps one event: the hub keeps them."""

    def __init__(self, stream_id: str, outbox: queue.Queue):
        super().__init__(keep=1)
        self.stream_id, self.outbox = stream_id, outbox

    def publish(self, record: dict) -> None:
        super().publish(record)
        self.outbox.put((self.stream_id, record))

    def close(self) -> None:
        super().close()
        self.outbox.put((self.stream_id, None))


_STOP = object()


class EngineReplica:
    """One Serve replica: an engine for requests (one worker thread) and the streams the hub
    assigns it (a StreamRunner each). Threads: the control loop (commands from the hub), the
    pusher (events to the hub), a small pool running the commands (opening a stream blocks)."""

    def __init__(self, settings: ServeSettings, hub_name: str):
        import ray
        from ray import serve

        context = serve.get_replica_context()
        rank = getattr(context, "rank", None)  # a ReplicaRank (Ray >= 2.5x) or an int; only shown in stats
        self.key, rank = context.replica_id.unique_id, getattr(rank, "rank", rank)
        self._open_engine = engine_opener(settings)
        self.workers = EngineWorkers(self._open_engine, 1, settings.queue_size + 1)  # Serve never sends more
        self.requests = 0
        self._runners: dict[str, StreamRunner] = {}
        self._lock = threading.Lock()
        self._outbox: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="replica-command")
        self.hub = ray.get_actor(hub_name, namespace=HUB_NAMESPACE)
        ray.get(self.hub.register.remote(self.key, rank))  # before serve.run returns: streams can be assigned
        self._threads = [threading.Thread(target=target, name=name, daemon=True)
                         for target, name in ((self._control, "replica-control"), (self._push, "replica-push"))]
        for thread in self._threads:
            thread.start()

    # --- requests (through Serve) ------------------------------------------------------------
    async def caption(self, image) -> tuple:
        return await self._request(lambda engine: caption_record(engine, image))

    async def ask(self, image, question: str, abstain_below: float | None) -> tuple:
        return await self._request(lambda engine: answer_record(engine, image, question, abstain_below))

    async def _request(self, job) -> tuple:
        self.requests += 1
        try:
            return ("ok", await asyncio.wrap_future(self.workers.submit(job)))
        except HTTPProblem as exc:
            return problem(exc.status, exc.message, exc.headers)
        except EdgeVLMError as exc:
            return ("edgevlm", str(exc))

    # --- streams (commands from the hub) ---------------------------------------------------
    def _control(self) -> None:
        import ray

        while not self._stopping.is_set():
            report = {"requests": self.requests, "waiting": self.workers.waiting, "streams": len(self._runners)}
            try:
                commands = ray.get(self.hub.next_commands.remote(self.key, report))
            except Exception as exc:  # noqa: BLE001 - the hub is gone (the server is closing) or a blip
                log.warning("replica %s: no commands from the hub (%s)", self.key, exc)
                self._stopping.wait(1.0)
                continue
            for command in commands:
                self._pool.submit(self._execute, *command)

    def _execute(self, call_id: int, op: str, stream_id: str, argument) -> None:
        try:
            if op == "ask":  # answered when the stream's next frame is seen: reply from the future
                outcome = attempt(lambda: self._runner(stream_id).ask(argument))
                if outcome[0] == "ok":
                    outcome[1].add_done_callback(lambda future: self._reply(call_id, attempt(future.result)))
                    return
            else:
                handlers = {"start": self._start, "stop": self._stop,
                            "frame": lambda sid, _: self._runner(sid).frame_jpeg()}
                outcome = attempt(lambda: handlers[op](stream_id, argument))
        except Exception as exc:  # noqa: BLE001 - a bug: answered (500) rather than left to time out
            log.exception("replica %s: %s on stream %s failed", self.key, op, stream_id)
            outcome = problem(500, f"unexpected {type(exc).__name__}: {exc} (a bug: please report it)")
        self._reply(call_id, outcome)

    def _reply(self, call_id: int, outcome: tuple) -> None:
        try:
            self.hub.reply.remote(call_id, outcome)
        except Exception as exc:  # noqa: BLE001 - the hub is gone: nobody waits
            log.warning("replica %s: cannot reply (%s)", self.key, exc)

    def _runner(self, stream_id: str) -> StreamRunner:
        with self._lock:
            runner = self._runners.get(stream_id)
        if runner is None:
            raise HTTPProblem(404, f"no stream {stream_id} on this replica; GET /v1/streams lists them")
        return runner

    def _start(self, stream_id: str, spec: StreamSpec) -> dict:
        check_source(spec.source)
        runner = StreamRunner(spec, self._open_engine, stream_id, channel=_ForwardingChannel(stream_id, self._outbox))
        with self._lock:
            self._runners[stream_id] = runner
        try:
            runner.start()
        except HTTPProblem:  # the source or engine did not open: keep nothing
            with self._lock:
                self._runners.pop(stream_id, None)
            raise
        return runner.info()

    def _stop(self, stream_id: str, _argument=None) -> None:
        """Stop it, and reply only once its last events (the summary) are at the hub, so its
        followers get them before the hub forgets the stream."""
        with self._lock:
            runner = self._runners.pop(stream_id, None)
        if runner is not None:
            runner.stop()
            delivered = threading.Event()
            self._outbox.put(delivered)
            delivered.wait(FLUSH_WAIT_S)

    def _push(self) -> None:
        """Events to the hub in order, one call at a time: those that arrive meanwhile go together.
        A threading.Event in the outbox is set once everything before it is delivered."""
        import ray

        while True:
            batch = [self._outbox.get()]
            while not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            items = [item for item in batch if isinstance(item, tuple)]
            if items:
                try:
                    ray.get(self.hub.push.remote(items))
                except Exception as exc:  # noqa: BLE001 - the hub is gone: the events have nobody to reach
                    log.warning("replica %s: events not delivered (%s)", self.key, exc)
            for marker in batch:
                if isinstance(marker, threading.Event):
                    marker.set()
            if _STOP in batch:
                return

    def __del__(self):
        """Serve calls this when the replica shuts down: stop the streams (their last events
        reach the hub), the engine, the threads."""
        if not hasattr(self, "_threads") or self._stopping.is_set():
            return
        self._stopping.set()
        with self._lock:
            runners = list(self._runners.values())
            self._runners.clear()
        stoppers = [threading.Thread(target=r.stop, kwargs={"reason": "server stopping"}, daemon=True)
                    for r in runners]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(12)
        self._outbox.put(_STOP)
        self._threads[1].join(5)
        try:
            self.hub.unregister.remote(self.key)
        except Exception:  # noqa: BLE001 - the hub went first
            pass
        self.workers.close()
        self._pool.shutdown(wait=False)
