"""``edgevlm serve --ray``: the engines as a Ray Serve deployment, the same HTTP app in front.

Design. The HTTP app (uvicorn) stays in the driver; this ``Service`` talks to two Ray things:

- the deployment ``engine`` (``EngineReplica``, ``--replicas N``): each replica owns one engine
  for requests. ``caption``/``ask`` go through its Serve handle, so Serve balances them; the
  waiting room is Serve's router queue (``max_queued_requests`` = replicas x ``--queue-size``,
  like the local workers' queues) and a full one (``BackPressureError``) is answered 503 Busy.
  Each replica takes ``REPLICA_ONGOING`` requests at a time: one on its engine and one next, so
  the engine never idles while the next request is in transit.
- the hub (``StreamHub``, one small async actor, no CPU reserved): streams need a *particular*
  replica (the one whose thread narrates it) and a Serve handle routes each call to *any*
  replica, so streams do not go through Serve's routing. The hub holds every stream's spec,
  its replica and its events; it assigns a new stream to the replica with the fewest live
  streams (then fewest kept, then the earliest registered: deterministic, so 4 streams on 2
  replicas are 2 each). Each replica long-polls the hub for its commands (start, stop, ask,
  frame) and answers them; the poll is also its heartbeat. Each stream runs in its replica
  exactly as locally (``StreamRunner``: own engine and thread); its events go, in order, to
  the hub, whose ``EventChannel`` numbers them. So event ids increase with no duplicates or
  gaps (the newest 1000 are kept per stream), ``Last-Event-ID`` resumes, and the SSE
  followers wait on the hub, not on the replica.

The frame for ``frame.jpg`` is fetched from the replica when asked (a command), not pushed at
the camera's rate: JPEG-encoding every frame would cost the cores the engines need.

A replica not heard from for ``LOST_S`` s is lost: its streams end with a ``stream_error``
event. ``close()`` deletes the deployment (``serve.shutdown()`` for a Ray started here, only
this app on a cluster joined with ``--address``) and stops a local Ray it started.

Ray is imported only inside the functions here: the base install has no ray.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import logging
import os
import queue
import threading
import time
import uuid

from edgevlm.errors import EdgeVLMError
from edgevlm.paths import resolve_engine
from edgevlm.runtime.serve.errors import Busy, HTTPProblem
from edgevlm.runtime.serve.events import EventChannel
from edgevlm.runtime.serve.jobs import answer_record, caption_record
from edgevlm.runtime.serve.service import ANSWER_WAIT_S, Service, engine_opener
from edgevlm.runtime.serve.settings import ServeSettings
from edgevlm.runtime.serve.stream_runner import OPEN_WAIT_S, StreamRunner, StreamSpec, check_source
from edgevlm.runtime.serve.workers import EngineWorkers

log = logging.getLogger(__name__)

APP_NAME = "edgevlm"  # the Serve application; one edgevlm server per Ray cluster unless app_name differs
HUB_NAMESPACE = "edgevlm"
REPLICA_ONGOING = 2  # requests a replica holds at once: one on its engine, one next
POLL_S = 1.0  # a replica's idle long poll returns after this many seconds (its heartbeat)
LOST_S = 30.0  # a replica silent this many seconds is lost; its streams end
STOP_WAIT_S = 15.0  # DELETE waits this long for the replica to stop the stream
FRAME_WAIT_S = 10.0  # frame.jpg waits this long for the replica's frame
READY_WAIT_S = 60.0  # the service waits this long for every replica to register with the hub
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024  # a local Ray's shared memory for images in flight


# --------------------------------------------------------------------------- outcomes
# Results cross process boundaries as plain tuples: an HTTPProblem raised in a replica would
# arrive wrapped in Ray's RayTaskError, without its status and headers.
def _attempt(work) -> tuple:
    try:
        return ("ok", work())
    except HTTPProblem as exc:
        return _problem(exc.status, exc.message, exc.headers)
    except EdgeVLMError as exc:  # the app answers it 400, as locally
        return ("edgevlm", str(exc))


def _problem(status: int, message: str, headers: dict | None = None) -> tuple:
    return ("problem", status, message, dict(headers or {}))


def _unwrap(outcome: tuple):
    if outcome[0] == "ok":
        return outcome[1]
    if outcome[0] == "problem":
        raise HTTPProblem(outcome[1], outcome[2], outcome[3])
    raise EdgeVLMError(outcome[1])


def _not_found(stream_id: str) -> tuple:
    return _problem(404, f"no stream {stream_id}; GET /v1/streams lists them")


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
            return _problem(503, f"already {running} streams, the most this server runs (--max-streams); "
                                 "DELETE one first", {"Retry-After": "30"})
        loads = [(r.key, sum(s.live for s in self.streams.values() if s.replica == r.key),
                  sum(s.replica == r.key for s in self.streams.values()))
                 for r in sorted(self.replicas.values(), key=lambda r: r.order)]
        key = choose_replica(loads)
        if key is None:
            return _problem(503, "no engine replica is up; retry in a moment", {"Retry-After": "5"})
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
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return _not_found(stream_id)
        stream.channel.close()  # its followers end now
        if stream.replica in self.replicas:
            await self._call(stream.replica, "stop", stream_id, None, STOP_WAIT_S)
        return ("ok", None)

    async def call(self, stream_id: str, op: str, argument, timeout: float) -> tuple:
        """``op`` ("ask", "frame") on the replica that runs the stream."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return _not_found(stream_id)
        return await self._call(stream.replica, op, stream_id, argument, timeout)

    async def stream_infos(self) -> list[dict]:
        return [s.info() for s in self.streams.values()]

    async def events_since(self, stream_id: str, after: int) -> tuple:
        stream = self.streams.get(stream_id)
        return _not_found(stream_id) if stream is None else ("ok", stream.channel.since(after))

    async def wait_events(self, stream_id: str, after: int, timeout: float) -> tuple:
        stream = self.streams.get(stream_id)
        if stream is None:
            return _not_found(stream_id)
        await stream.channel.wait(after, timeout)
        return ("ok", None)

    async def stats(self) -> dict:
        now = time.monotonic()
        return {"streams": {s.id: s.channel.counters.as_dict() | {"state": s.state, "replica": s.replica}
                            for s in self.streams.values()},
                "replicas": {r.key: {"rank": r.rank, "live_streams": sum(s.live and s.replica == r.key
                                                                         for s in self.streams.values()),
                                     "seen_s_ago": round(now - r.seen, 3), **r.report}
                             for r in self.replicas.values()}}

    # --- inside ----------------------------------------------------------------------------
    async def _call(self, key: str, op: str, stream_id: str, argument, timeout: float) -> tuple:
        replica = self.replicas.get(key)
        if replica is None:
            return _problem(503, f"the engine replica running stream {stream_id} is gone; DELETE it and add it again")
        call_id = next(self._call_ids)
        future = asyncio.get_running_loop().create_future()
        self._calls[call_id] = (future, key)
        replica.inbox.append((call_id, op, stream_id, argument))
        replica.wake.set()
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return _problem(504, "no answer in time: the stream is stalled; try again")
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
                future.set_result(_problem(503, f"{why}; try again"))


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
        self.key, rank = context.replica_id.unique_id, getattr(context.rank, "rank", context.rank)
        self._open_engine = engine_opener(settings)
        self.workers = EngineWorkers(self._open_engine, 1, REPLICA_ONGOING + 1)  # Serve never sends more
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
            return _problem(exc.status, exc.message, exc.headers)
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
        if op == "ask":  # answered when the stream's next frame is seen: reply from the future
            try:
                future = self._runner(stream_id).ask(argument)
            except HTTPProblem as exc:
                self._reply(call_id, _problem(exc.status, exc.message, exc.headers))
                return
            future.add_done_callback(lambda f: self._reply(call_id, _attempt(f.result)))
            return
        handlers = {"start": self._start, "stop": self._stop, "frame": lambda sid, _: self._runner(sid).frame_jpeg()}
        self._reply(call_id, _attempt(lambda: handlers[op](stream_id, argument)))

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
        runner = StreamRunner(spec, self._open_engine, stream_id)
        runner.channel = _ForwardingChannel(stream_id, self._outbox)  # before start: its first event goes to the hub
        with self._lock:
            self._runners[stream_id] = runner
        runner.start()
        if runner.state == "failed":  # the source or engine did not open: say why, keep nothing
            with self._lock:
                self._runners.pop(stream_id, None)
            raise HTTPProblem(400, f"cannot open stream {spec.source}: {runner.error}")
        return runner.info()

    def _stop(self, stream_id: str, _argument=None) -> None:
        with self._lock:
            runner = self._runners.pop(stream_id, None)
        if runner is not None:
            runner.stop()

    def _push(self) -> None:
        """Events to the hub in order, one call at a time: those that arrive meanwhile go together."""
        import ray

        while True:
            items = [self._outbox.get()]
            while not self._outbox.empty():
                items.append(self._outbox.get_nowait())
            stop = any(item is _STOP for item in items)
            items = [item for item in items if item is not _STOP]
            if items:
                try:
                    ray.get(self.hub.push.remote(items))
                except Exception as exc:  # noqa: BLE001 - the hub is gone: the events have nobody to reach
                    log.warning("replica %s: events not delivered (%s)", self.key, exc)
            if stop:
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
        stoppers = [threading.Thread(target=r.stop, daemon=True) for r in runners]
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


# --------------------------------------------------------------------------- the driver
class RayService(Service):
    """The ``Service`` of ``edgevlm serve --ray``. ``address``: a Ray cluster to join ("auto"
    after ``ray start --head``); None starts a local Ray (unless ``RAY_ADDRESS`` names one, or
    this process is already connected to one)."""

    def __init__(self, settings: ServeSettings, replicas: int = 2, address: str | None = None,
                 app_name: str = APP_NAME):
        try:
            import ray
            from ray import serve
            from ray.serve.exceptions import BackPressureError
        except ModuleNotFoundError as exc:
            raise EdgeVLMError(f"--ray needs the ray extra (missing {exc.name}): pip install 'edgevlm[ray]'") from None
        if replicas < 1:
            raise EdgeVLMError("--replicas must be at least 1")
        # Replicas run in other processes (other machines, on a cluster): paths must not depend on their cwd.
        engine_dir = resolve_engine(settings.engine_dir)
        self.settings = settings = dataclasses.replace(
            settings, engine_dir=os.path.abspath(engine_dir) if os.path.exists(engine_dir) else engine_dir)
        self.replicas, self.app_name = replicas, app_name
        self._ray, self._serve, self._backpressure = ray, serve, BackPressureError
        self._in_flight = self.busy_rejections = 0
        self._closed = False
        self._joined = bool(address or os.environ.get("RAY_ADDRESS"))
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            if self._joined:
                ray.init(address=address, log_to_driver=False)
            else:  # a small local Ray on loopback: the engines' threads need the cores, not Ray
                ray.init(num_cpus=max(2, replicas), include_dashboard=False, log_to_driver=False,
                         _node_ip_address="127.0.0.1", object_store_memory=LOCAL_OBJECT_STORE_BYTES)
        self._local_serve = self._started_ray and not self._joined
        try:
            self._start(settings)
        except BaseException:
            self.close()
            raise

    def _start(self, settings: ServeSettings) -> None:
        ray, serve = self._ray, self._serve
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        hub_name = f"edgevlm-hub-{uuid.uuid4().hex[:8]}"  # a new name: new replicas, never an old server's
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        self._hub = ray.remote(StreamHub).options(
            name=hub_name, namespace=HUB_NAMESPACE, num_cpus=0, max_concurrency=1000,
            scheduling_strategy=here).remote(settings.max_streams)
        serve.start(proxy_location="Disabled")  # the app in this process is the HTTP front
        deployment = serve.deployment(
            EngineReplica, name="engine", num_replicas=self.replicas, max_ongoing_requests=REPLICA_ONGOING,
            max_queued_requests=self.replicas * settings.queue_size, ray_actor_options={"num_cpus": 1},
            graceful_shutdown_timeout_s=20, graceful_shutdown_wait_loop_s=0.5)
        self._handle = serve.run(deployment.bind(settings, hub_name), name=self.app_name, route_prefix=None)
        deadline = time.monotonic() + READY_WAIT_S
        while len(self._call(self._hub.stats.remote(), 10)["replicas"]) < self.replicas:
            if time.monotonic() > deadline:
                raise EdgeVLMError(f"the {self.replicas} engine replicas did not all start in {READY_WAIT_S:.0f} s")
            time.sleep(0.1)

    def _call(self, ref, timeout: float):
        return self._ray.get(ref, timeout=timeout)

    # --- requests: Serve balances them ---------------------------------------------------------
    async def caption(self, image):
        return await self._request("caption", image)

    async def ask(self, image, question, abstain_below):
        return await self._request("ask", image, question, abstain_below)

    async def _request(self, method: str, *args):
        self._in_flight += 1
        try:
            outcome = await getattr(self._handle, method).remote(*args)
        except self._backpressure:
            self.busy_rejections += 1
            raise Busy() from None
        finally:
            self._in_flight -= 1
        return _unwrap(outcome)

    # --- streams: through the hub --------------------------------------------------------------
    def add_stream(self, spec: StreamSpec) -> dict:
        source = spec.source
        if isinstance(source, str) and "://" not in source and os.path.exists(source):
            run_spec = dataclasses.replace(spec, source=os.path.abspath(source))
        else:  # a camera index, URL, or a missing file (the replica says 400)
            run_spec = spec
        return _unwrap(self._call(self._hub.add_stream.remote(spec, run_spec), OPEN_WAIT_S + 20))

    def streams(self) -> list[dict]:
        return self._call(self._hub.stream_infos.remote(), 10)

    def remove_stream(self, stream_id: str) -> None:
        _unwrap(self._call(self._hub.remove_stream.remote(stream_id), STOP_WAIT_S + 10))

    def frame_jpeg(self, stream_id: str) -> bytes | None:
        return _unwrap(self._call(self._hub.call.remote(stream_id, "frame", None, FRAME_WAIT_S), FRAME_WAIT_S + 10))

    async def ask_stream(self, stream_id: str, question: str) -> dict:
        return _unwrap(await self._hub.call.remote(stream_id, "ask", question, ANSWER_WAIT_S))

    async def events_since(self, stream_id, after):
        return tuple(_unwrap(await self._hub.events_since.remote(stream_id, after)))

    async def wait_events(self, stream_id, after, timeout):
        _unwrap(await self._hub.wait_events.remote(stream_id, after, timeout))

    def stats(self) -> dict:
        """As LocalService's, plus ``replicas`` (each one's live streams, requests answered).
        ``queue_waiting``: requests sent and not answered, less one on each replica's engine."""
        hub = self._call(self._hub.stats.remote(), 10)
        return {"queue_waiting": max(0, self._in_flight - len(hub["replicas"])),
                "queue_capacity": self.replicas * self.settings.queue_size,
                "busy_rejections": self.busy_rejections, "streams": hub["streams"], "replicas": hub["replicas"]}

    def close(self) -> None:
        """Delete the deployment (its replicas stop their streams), the hub, and a local Ray."""
        if self._closed:
            return
        self._closed = True
        ray, serve = self._ray, self._serve
        try:
            if self._local_serve:
                serve.shutdown()
            elif ray.is_initialized():
                serve.delete(self.app_name)
        except Exception as exc:  # noqa: BLE001 - closing: say it, go on
            log.warning("closing Ray Serve: %s", exc)
        hub = getattr(self, "_hub", None)
        if hub is not None:
            try:
                ray.kill(hub)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self._started_ray:
            ray.shutdown()
