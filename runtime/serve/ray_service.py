"""``edgevlm serve --ray``: the engines as a Ray Serve deployment, the same HTTP app in front.

Design. The HTTP app (uvicorn) stays in the driver; this ``Service`` talks to two Ray things:

- the deployment ``engine`` (``EngineReplica``, ``--replicas N``): each replica owns one engine
  for requests. ``caption``/``ask`` go through its Serve handle, so Serve balances them (by
  queue length). Each replica takes ``--queue-size`` + 1 requests (``max_ongoing_requests``:
  one on its engine, the rest waiting for it, as a local worker's queue); beyond that they
  wait in Serve's router, at most replicas x ``--queue-size`` (``max_queued_requests``), and
  then ``BackPressureError`` is answered 503 Busy. The router's queue is needed because Serve
  counts every request as queued until a replica takes it: a burst of simultaneous requests
  larger than ``max_queued_requests`` is refused even while replicas have room. A smaller
  ``max_ongoing_requests`` (requests waiting in the router rather than in the replica) was
  measured slower: 5.6-6.2 against 7.7-9.1 captions/s for 1 replica, 4 clients, 2 cores,
  since the router then probes the full replica and backs off before it sends the next.
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

DELETE stops the stream on its replica first; the replica answers once the stream's last
events (the summary, "ended_by": "removed") are at the hub. A deleted stream is 404 to new
clients at once, but a client already following it (``Last-Event-ID`` > 0) still gets its last
events for ``REMOVED_KEEP_S`` s: a follower's next request is a network round trip away, so
"pop it when stopped" would race it.

The frame for ``frame.jpg`` is fetched from the replica when asked (a command), not pushed at
the camera's rate: JPEG-encoding every frame would cost the cores the engines need.

A replica not heard from for ``LOST_S`` s is lost: its streams end with a ``stream_error``
event. ``close()`` deletes the deployment (``serve.shutdown()`` for a Ray started here, only
this app on a cluster joined with ``--address``) and stops a local Ray it started.

Ray is imported only inside the functions here: the base install has no ray.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid

from edgevlm.errors import EdgeVLMError
from edgevlm.paths import resolve_engine
from edgevlm.runtime.serve.errors import Busy, HTTPProblem
from edgevlm.runtime.serve.service import ANSWER_WAIT_S, Service
from edgevlm.runtime.serve.settings import ServeSettings
from edgevlm.runtime.serve.stream_runner import OPEN_WAIT_S, StreamSpec

from edgevlm.runtime.serve.ray_hub import FRAME_WAIT_S, HUB_NAMESPACE, STOP_WAIT_S, StreamHub, unwrap
from edgevlm.runtime.serve.ray_replica import EngineReplica

log = logging.getLogger(__name__)

APP_NAME = "edgevlm"  # the Serve application; one edgevlm server per Ray cluster unless app_name differs
READY_WAIT_S = 60.0  # the service waits this long for every replica to register with the hub
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024  # a local Ray's shared memory for images in flight


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
            from ray.exceptions import RayActorError
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
        self._ray, self._serve, self._backpressure, self._actor_error = ray, serve, BackPressureError, RayActorError
        self._in_flight = self.busy_rejections = 0
        self._closed = False
        self._joined = bool(address or os.environ.get("RAY_ADDRESS"))
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            if self._joined:
                try:
                    ray.init(address=address, log_to_driver=False)
                except (ConnectionError, RuntimeError) as exc:  # no cluster there, or its token missing
                    raise EdgeVLMError(
                        f"cannot join the Ray cluster at {address or os.environ['RAY_ADDRESS']} ({exc}); start one with "
                        "`ray start --head`, and on a cluster with token authentication give this machine its "
                        "token (~/.ray/auth_token or RAY_AUTH_TOKEN, with RAY_AUTH_MODE=token)") from None
            else:  # a small local Ray on loopback: the engines' threads need the cores, not Ray.
                # Ray runs its workers at nice 15; the replicas are the engines, so they run at the
                # priority the plain server's engines have (else anything else on the box starves them).
                ray.init(num_cpus=max(2, replicas), include_dashboard=False, log_to_driver=False,
                         _node_ip_address="127.0.0.1", object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                         _system_config={"worker_niceness": 0})
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
            EngineReplica, name="engine", num_replicas=self.replicas, max_ongoing_requests=settings.queue_size + 1,
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
        except self._actor_error:  # the replica stopped while it held the request (Serve starts another)
            raise HTTPProblem(503, "the engine replica answering this request stopped; retry in a moment",
                              {"Retry-After": "5"}) from None
        finally:
            self._in_flight -= 1
        return unwrap(outcome)

    # --- streams: through the hub --------------------------------------------------------------
    def add_stream(self, spec: StreamSpec) -> dict:
        source = spec.source
        if isinstance(source, str) and "://" not in source and os.path.exists(source):
            run_spec = dataclasses.replace(spec, source=os.path.abspath(source))
        else:  # a camera index, URL, or a missing file (the replica says 400)
            run_spec = spec
        return unwrap(self._call(self._hub.add_stream.remote(spec, run_spec), OPEN_WAIT_S + 20))

    def streams(self) -> list[dict]:
        return self._call(self._hub.stream_infos.remote(), 10)

    def remove_stream(self, stream_id: str) -> None:
        unwrap(self._call(self._hub.remove_stream.remote(stream_id), STOP_WAIT_S + 10))

    def frame_jpeg(self, stream_id: str) -> bytes | None:
        return unwrap(self._call(self._hub.call.remote(stream_id, "frame", None, FRAME_WAIT_S), FRAME_WAIT_S + 10))

    async def ask_stream(self, stream_id: str, question: str) -> dict:
        return unwrap(await self._hub.call.remote(stream_id, "ask", question, ANSWER_WAIT_S))

    async def events_since(self, stream_id, after):
        return tuple(unwrap(await self._hub.events_since.remote(stream_id, after)))

    async def wait_events(self, stream_id, after, timeout):
        unwrap(await self._hub.wait_events.remote(stream_id, after, timeout))

    def stats(self) -> dict:
        """As LocalService's, plus ``replicas`` (each one's live streams, requests taken).
        ``queue_waiting``: requests sent and not answered, less one on each replica's engine;
        ``queue_capacity``: --queue-size per replica in the replicas, as many in Serve's router."""
        hub = self._call(self._hub.stats.remote(), 10)
        return {"queue_waiting": max(0, self._in_flight - len(hub["replicas"])),
                "queue_capacity": 2 * self.replicas * self.settings.queue_size,
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
