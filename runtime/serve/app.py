"""The ASGI app of ``edgevlm serve``: routes, errors as one-line JSON, the page.

Routes (contracts that clients rely on; keep them stable):
  POST /v1/caption              multipart field ``image`` or JSON {"image": base64 | data: URL} -> {"caption", ...}
  POST /v1/ask                  the same plus ``question`` -> {"answer", "probability", "abstained", ...}
  POST /v1/chat/completions     OpenAI-compatible (image_url data: URL + text), ``stream: true`` as SSE
  GET  /v1/models               the one model, for OpenAI clients that list models first
  GET/POST /v1/streams, DELETE /v1/streams/{id}, POST /v1/streams/{id}/ask
  GET  /v1/streams/{id}/events  server-sent events: the objects ``narrate --events`` writes
  GET  /v1/streams/{id}/frame.jpg  the newest frame narrated
  GET  /metrics (Prometheus text), GET /healthz, GET / (the page), /static/*
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.serve.chat import MODEL_ID, completion, completion_chunks, parse_chat_request
from edgevlm.runtime.serve.errors import HTTPProblem, error_body
from edgevlm.runtime.serve.guards import BodyLimit, BodyTooLarge, TokenGuard
from edgevlm.runtime.serve.images import image_from_base64, image_from_bytes
from edgevlm.runtime.serve.jobs import clean_request_question
from edgevlm.runtime.serve.metrics import CONTENT_TYPE, ServeMetrics
from edgevlm.runtime.serve.settings import ServeSettings
from edgevlm.runtime.serve.stream_runner import StreamSpec

log = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies and browsers from timing out an idle stream
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_app(settings: ServeSettings, sources: list[str] = (), service=None):
    """The ASGI app (token and body-size guards included). ``service``: the engines behind it
    (default: local worker threads); ``sources``: streams to start with the server."""
    settings.check()
    if service is None:
        from edgevlm.runtime.serve.service import LocalService

        service = LocalService(settings)
    for source in sources:  # before the server listens: a source that cannot open is the user's one-line error
        try:
            info = service.add_stream(StreamSpec(source, settings.realtime_files))
        except HTTPProblem as exc:
            service.close()
            raise EdgeVLMError(f"stream {source}: {exc.message}") from None
        log.info("stream %s: %s", info["id"], source)
    metrics = ServeMetrics(service)
    limits = (settings.max_upload_bytes, settings.max_pixels)

    async def read_image(request: Request) -> tuple:
        """(BGR image, the other fields) from a multipart upload or a JSON body."""
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            form = await request.form(max_part_size=settings.max_upload_bytes)
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise HTTPProblem(400, 'the upload has no file field "image"; send -F image=@photo.jpg')
            data = await upload.read()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            return await run_in_threadpool(image_from_bytes, data, *limits), fields
        if content_type.startswith("application/json"):
            body = await json_body(request)
            if "image" not in body:
                raise HTTPProblem(400, 'the JSON body has no "image": give base64 bytes or a data: URL')
            return await run_in_threadpool(image_from_base64, body["image"], *limits), body
        raise HTTPProblem(415, "send multipart/form-data with a file field \"image\", or JSON {\"image\": base64}")

    async def timed(path: str, work):
        started = time.perf_counter()
        try:
            result = await work()
        except HTTPProblem as exc:
            metrics.observe(path, exc.status, None)
            raise
        except EdgeVLMError:
            metrics.observe(path, 400, None)
            raise
        metrics.observe(path, 200, time.perf_counter() - started)
        return result

    async def caption(request: Request):
        async def work():
            image, _ = await read_image(request)
            return await service.caption(image)
        return JSONResponse(await timed("/v1/caption", work))

    async def ask(request: Request):
        async def work():
            image, fields = await read_image(request)
            question = clean_request_question(fields.get("question"))
            return await service.ask(image, question, _threshold(fields.get("abstain_below")))
        return JSONResponse(await timed("/v1/ask", work))

    async def chat(request: Request):
        chat_request = parse_chat_request(await json_body(request))

        async def work():
            image = await run_in_threadpool(image_from_base64, chat_request.image_url, *limits)
            if chat_request.wants_caption:
                return (await service.caption(image))["caption"]
            return (await service.ask(image, clean_request_question(chat_request.text), None))["answer"]
        text = await timed("/v1/chat/completions", work)
        if chat_request.stream:
            return StreamingResponse(completion_chunks(chat_request, text), media_type="text/event-stream",
                                     headers=SSE_HEADERS)
        return JSONResponse(completion(chat_request, text))

    async def models(_request: Request):
        return JSONResponse({"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "edgevlm"}]})

    # --- streams ---------------------------------------------------------------------------
    async def list_streams(_request: Request):
        return JSONResponse({"streams": await run_in_threadpool(service.streams)})

    async def add_stream(request: Request):
        body = await json_body(request)
        spec = StreamSpec(source=body.get("source"), realtime=bool(body.get("realtime", settings.realtime_files)))
        return JSONResponse(await run_in_threadpool(service.add_stream, spec), status_code=201)

    async def remove_stream(request: Request):
        stream_id = request.path_params["stream_id"]
        await run_in_threadpool(service.remove_stream, stream_id)
        return JSONResponse({"id": stream_id, "deleted": True})

    async def ask_stream(request: Request):
        body = await json_body(request)
        return JSONResponse(await service.ask_stream(request.path_params["stream_id"], body.get("question")))

    async def frame(request: Request):
        data = await run_in_threadpool(service.frame_jpeg, request.path_params["stream_id"])
        if data is None:
            raise HTTPProblem(404, "no frame yet: the stream has not delivered one; try again in a moment")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def events(request: Request):
        stream_id = request.path_params["stream_id"]
        after = _last_event_id(request)
        await service.events_since(stream_id, after)  # 404 now, before the stream starts, for an unknown id
        return StreamingResponse(_sse(service, stream_id, after), media_type="text/event-stream", headers=SSE_HEADERS)

    # --- operations -------------------------------------------------------------------------
    async def metrics_text(_request: Request):
        return Response(await run_in_threadpool(metrics.text), media_type=CONTENT_TYPE)

    async def healthz(_request: Request):
        stats = await run_in_threadpool(service.stats)  # on Ray: an actor round trip, off the event loop
        return JSONResponse({"status": "ok", "version": importlib.metadata.version("edgevlm"), "streams": len(stats["streams"]),
                             "queue_waiting": stats["queue_waiting"], "queue_capacity": stats["queue_capacity"]})

    async def page(_request: Request):
        return FileResponse(os.path.join(STATIC_DIR, "index.html"), headers={"Cache-Control": "no-cache"})

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        try:
            yield
        finally:
            await run_in_threadpool(service.close)

    routes = [
        Route("/", page),
        Route("/v1/caption", caption, methods=["POST"]),
        Route("/v1/ask", ask, methods=["POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models),
        Route("/v1/streams", list_streams, methods=["GET"]),
        Route("/v1/streams", add_stream, methods=["POST"]),
        Route("/v1/streams/{stream_id}", remove_stream, methods=["DELETE"]),
        Route("/v1/streams/{stream_id}/ask", ask_stream, methods=["POST"]),
        Route("/v1/streams/{stream_id}/events", events),
        Route("/v1/streams/{stream_id}/frame.jpg", frame),
        Route("/metrics", metrics_text),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    handlers = {HTTPProblem: _problem_response, EdgeVLMError: _edgevlm_error, HTTPException: _http_exception,
                BodyTooLarge: _too_large, Exception: _unexpected}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.service = service
    return TokenGuard(BodyLimit(app, settings.max_upload_bytes), settings.token)


async def json_body(request: Request) -> dict:
    try:
        body = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPProblem(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HTTPProblem(400, "the body must be a JSON object")
    return body


def _threshold(value) -> float | None:
    if value in (None, ""):
        return None
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = -1.0
    if not 0.0 <= threshold <= 1.0:
        raise HTTPProblem(400, '"abstain_below" must be a number from 0 to 1')
    return threshold


def _last_event_id(request: Request) -> int:
    """Where a reconnecting client left off: the Last-Event-ID header (EventSource sends it) or ?after=."""
    value = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    return int(value) if value.isdigit() else 0


async def _sse(service, stream_id: str, after: int):
    """Server-sent events: ``id:`` and ``data:`` (one JSON object) per event, a keep-alive comment
    when idle; ends after the stream's last event (or when the stream is deleted)."""
    yield "retry: 1000\n\n"  # a dropped page reconnects after 1 s (browsers wait ~3 s by default)
    while True:
        try:
            records, closed = await service.events_since(stream_id, after)
            if not records and not closed:
                await service.wait_events(stream_id, after, KEEPALIVE_S)
                records, closed = await service.events_since(stream_id, after)
        except HTTPProblem:  # deleted while followed
            return
        if not records and not closed:
            yield ": keep-alive\n\n"
            continue
        for event_id, record in records:
            after = event_id
            yield f"id: {event_id}\ndata: {json.dumps(record)}\n\n"
        if closed and not records:
            return


def _error(request: Request, status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, status, message), status_code=status, headers=headers)


async def _problem_response(request, exc: HTTPProblem):
    return _error(request, exc.status, exc.message, exc.headers)


async def _edgevlm_error(request, exc: EdgeVLMError):
    return _error(request, 400, str(exc))


async def _http_exception(request, exc: HTTPException):
    messages = {404: "no such path; see the API in the README (GET /v1/streams, POST /v1/caption, ...)",
                405: "method not allowed on this path"}
    return _error(request, exc.status_code, messages.get(exc.status_code, exc.detail))


async def _too_large(request, _exc):
    return _error(request, 413, "request too large; send a smaller image")


async def _unexpected(request, exc: Exception):
    log.exception("unexpected error")
    return _error(request, 500, f"unexpected {type(exc).__name__}: {exc} (a bug: please report it)")
