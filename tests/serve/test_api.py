"""The HTTP API of ``edgevlm serve`` on the shipped engine, through Starlette's test client
(the real app, routes, guards, workers and stream threads; only the socket is in-process)."""

from __future__ import annotations

import base64
import json
import os
import threading

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
from starlette.testclient import TestClient  # noqa: E402

from edgevlm.errors import EdgeVLMError  # noqa: E402
from edgevlm.paths import sample_images_dir  # noqa: E402
from edgevlm.runtime.engine import CaptionEngine  # noqa: E402
from edgevlm.runtime.serve.app import create_app  # noqa: E402
from edgevlm.runtime.serve.settings import ServeSettings  # noqa: E402
from tests.serve.sse_client import read_events  # noqa: E402
from tests.support import make_video, write_png_bomb  # noqa: E402

PHOTO = os.path.join(sample_images_dir(), "astronaut.jpg")
STREET = os.path.join(sample_images_dir(), "street.mp4")


def _photo_bytes() -> bytes:
    with open(PHOTO, "rb") as f:
        return f.read()


def _data_url() -> str:
    return "data:image/jpeg;base64," + base64.b64encode(_photo_bytes()).decode()


@pytest.fixture(scope="module")
def engine():
    from edgevlm.paths import resolve_engine

    with CaptionEngine(resolve_engine(None)) as opened:
        yield opened


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServeSettings(workers=2))) as test_client:
        yield test_client


# --- one photo --------------------------------------------------------------------------------
def test_caption_upload_and_json_give_the_cli_engines_caption(client, engine):
    expected = engine.caption_images([cv2.imread(PHOTO)])[0]
    uploaded = client.post("/v1/caption", files={"image": ("a.jpg", _photo_bytes(), "image/jpeg")})
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json() == {"caption": expected, "issue": None, "hedged": False}
    as_json = client.post("/v1/caption", json={"image": base64.b64encode(_photo_bytes()).decode()})
    assert as_json.json()["caption"] == expected
    assert client.post("/v1/caption", json={"image": _data_url()}).json()["caption"] == expected


def test_dark_frame_is_reported_never_captioned(client):
    ok, dark = cv2.imencode(".png", np.zeros((120, 160, 3), np.uint8))
    body = client.post("/v1/caption", files={"image": ("d.png", dark.tobytes(), "image/png")}).json()
    assert body["issue"] == "dark" and "dark" in body["caption"]


def test_ask_answers_as_the_engine_does(client, engine):
    expected = engine.answer_image(cv2.imread(PHOTO), ["is there a person?"])[0]
    response = client.post("/v1/ask", files={"image": ("a.jpg", _photo_bytes(), "image/jpeg")},
                           data={"question": "is there a person?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == expected.text and body["abstained"] == expected.abstained
    assert body["probability"] == pytest.approx(expected.probability, abs=1e-4)
    strict = client.post("/v1/ask", json={"image": _data_url(), "question": "is there a person?", "abstain_below": 1.0})
    assert strict.json()["abstained"] is True and strict.json()["answer"] == "I'm not sure"


@pytest.mark.parametrize(("request_kwargs", "status", "message"), [
    ({"files": {"image": ("a.txt", b"not an image", "text/plain")}}, 400, "cannot decode the image"),
    ({"files": {"photo": ("a.jpg", b"x", "image/jpeg")}}, 400, 'no file field "image"'),
    ({"json": {"picture": "x"}}, 400, 'no "image"'),
    ({"json": {"image": "data:image/jpeg,rawbytes"}}, 400, "base64"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"content": b"raw", "headers": {"content-type": "image/jpeg"}}, 415, "multipart/form-data"),
])
def test_bad_uploads_are_one_line_errors(client, request_kwargs, status, message):
    response = client.post("/v1/caption", **request_kwargs)
    assert response.status_code == status
    assert message in response.json()["error"] and "\n" not in response.json()["error"]


def test_ask_without_a_question_is_400(client):
    response = client.post("/v1/ask", json={"image": _data_url(), "question": "  \x1b[31m "})
    assert response.status_code == 400 and '"question"' in response.json()["error"]


def test_unknown_paths_and_streams_are_404_json(client):
    assert client.get("/v1/nothing").status_code == 404
    response = client.get("/v1/streams/nope/events")
    assert response.status_code == 404 and "GET /v1/streams" in response.json()["error"]
    assert client.delete("/v1/streams/nope").status_code == 404


# --- OpenAI chat completions ------------------------------------------------------------------
def _chat(text: str, **extra) -> dict:
    return {"model": "edgevlm", "messages": [
        {"role": "system", "content": "You describe images."},
        {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": _data_url()}}]},
    ]} | extra


def test_chat_completions_caption_and_question(client, engine):
    image = cv2.imread(PHOTO)
    described = client.post("/v1/chat/completions", json=_chat("Describe this image.")).json()
    assert described["object"] == "chat.completion"
    assert described["choices"][0]["message"] == {"role": "assistant", "content": engine.caption_images([image])[0]}
    assert described["choices"][0]["finish_reason"] == "stop"
    answered = client.post("/v1/chat/completions", json=_chat("is there a person?")).json()
    assert answered["choices"][0]["message"]["content"] == engine.answer_image(image, ["is there a person?"])[0].text


def test_chat_completions_stream_as_openai_chunks(client, engine):
    with client.stream("POST", "/v1/chat/completions", json=_chat("describe", stream=True)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == engine.caption_images([cv2.imread(PHOTO)])[0]


@pytest.mark.parametrize(("body", "message"), [
    ({"messages": []}, '"messages"'),
    ({"messages": [{"role": "user", "content": "what is this?"}]}, "no image"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://example.com/a.jpg"}}]}]},
     "does not fetch"),
])
def test_chat_completions_bad_requests(client, body, message):
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400 and message in response.json()["error"]["message"]  # OpenAI's error shape
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_models_lists_the_model(client):
    assert client.get("/v1/models").json()["data"][0]["id"] == "edgevlm"


# --- streams ----------------------------------------------------------------------------------
def test_stream_lifecycle_and_event_order(client, tmp_path):
    video = make_video(str(tmp_path / "clip.avi"), seconds=2.0, fps=10)
    added = client.post("/v1/streams", json={"source": video, "realtime": False})
    assert added.status_code == 201, added.text
    stream = added.json()
    assert stream["source"] == video and stream["state"] in ("starting", "running", "ended")
    events = read_events(client, stream["id"])
    ids = [event_id for event_id, _ in events]
    assert ids == sorted(set(ids)) and ids[0] == 1  # increasing, no duplicates, none missing at the start
    assert ids == list(range(1, len(ids) + 1))
    names = [event["event"] for _, event in events]
    assert names[0] == "frame" and names[-1] == "summary" and events[-1][1]["ended_by"] == "end of source"
    assert names.count("frame") == 20 == events[-1][1]["frames"]
    assert names.count("caption") == events[-1][1]["captions"] >= 1
    assert names.index("caption") < names.index("spoken")  # said after it was captioned
    resumed = read_events(client, stream["id"], last_event_id=ids[-3])
    assert [event_id for event_id, _ in resumed] == ids[-2:]  # a reconnecting page misses nothing, repeats nothing
    listed = {s["id"]: s for s in client.get("/v1/streams").json()["streams"]}
    assert listed[stream["id"]]["state"] == "ended" and listed[stream["id"]]["frames"] == 20
    frame = client.get(f"/v1/streams/{stream['id']}/frame.jpg")
    assert frame.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(frame.content, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    metrics = client.get("/metrics").text
    assert f'edgevlm_stream_frames_total{{stream="{stream["id"]}"}} 20.0' in metrics
    assert client.delete(f"/v1/streams/{stream['id']}").json() == {"id": stream["id"], "deleted": True}
    assert stream["id"] not in {s["id"] for s in client.get("/v1/streams").json()["streams"]}


def test_stream_question_answered_on_its_newest_frame(client):
    stream = client.post("/v1/streams", json={"source": STREET}).json()  # paced like a camera: 10 s
    try:
        answer = client.post(f"/v1/streams/{stream['id']}/ask", json={"question": "is there a person?"})
        assert answer.status_code == 200, answer.text
        assert set(answer.json()) == {"answer", "probability", "abstained", "model_answer"} and answer.json()["answer"]
    finally:
        client.delete(f"/v1/streams/{stream['id']}")


def test_bad_stream_sources(client, tmp_path):
    missing = client.post("/v1/streams", json={"source": str(tmp_path / "none.mp4")})
    assert missing.status_code == 400 and "not found" in missing.json()["error"]
    photo = client.post("/v1/streams", json={"source": PHOTO})
    assert photo.status_code == 400 and "POST /v1/caption" in photo.json()["error"]
    assert client.post("/v1/streams", json={}).status_code == 400


def test_a_source_that_cannot_open_is_a_one_line_startup_error(tmp_path):
    with pytest.raises(EdgeVLMError, match="stream .*none.mp4: source not found"):
        create_app(ServeSettings(), sources=[str(tmp_path / "none.mp4")])


# --- operations and limits --------------------------------------------------------------------
def test_metrics_and_health(client):
    client.post("/v1/caption", json={"image": _data_url()})
    text = client.get("/metrics").text
    assert 'edgevlm_requests_total{path="/v1/caption",status="200"}' in text
    assert "edgevlm_request_seconds_bucket" in text and "edgevlm_queue_capacity 16.0" in text
    assert client.get("/healthz").json()["status"] == "ok"


def test_oversize_upload_is_413(tmp_path):
    with TestClient(create_app(ServeSettings(max_upload_bytes=50_000, max_pixels=1_000_000))) as small:
        too_big = small.post("/v1/caption", files={"image": ("a.jpg", _photo_bytes(), "image/jpeg")})
        assert len(_photo_bytes()) > 50_000 and too_big.status_code == 413
        assert "too large" in too_big.json()["error"]

        def chunked():  # no Content-Length: counted as it arrives
            for _ in range(10):
                yield b"x" * 10_000

        streamed = small.post("/v1/caption", content=chunked(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        bomb = write_png_bomb(str(tmp_path / "bomb.png"), 2000, 2000)  # 4 MP in a tiny file
        with open(bomb, "rb") as f:
            pixels = small.post("/v1/caption", files={"image": ("b.png", f.read(), "image/png")})
        assert pixels.status_code == 413 and "megapixel" in pixels.json()["error"]


def test_full_queue_is_503_with_retry_after():
    app = create_app(ServeSettings(workers=1, queue_size=1))
    service = app.app.app.state.service  # under the token and body-size guards
    release, taken = threading.Event(), threading.Event()
    with TestClient(app) as test_client:
        try:
            busy = service.workers.submit(lambda engine: taken.set() or release.wait(30))  # the only engine is busy ...
            assert taken.wait(10)
            waiting = service.workers.submit(lambda engine: None)  # ... and the only queue place is taken
            response = test_client.post("/v1/caption", json={"image": _data_url()})
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            assert "busy" in response.json()["error"]
            assert "edgevlm_busy_rejections_total 1.0" in test_client.get("/metrics").text
        finally:
            release.set()
        busy.result(10), waiting.result(10)
        assert test_client.post("/v1/caption", json={"image": _data_url()}).status_code == 200


def test_each_worker_owns_its_engine():
    app = create_app(ServeSettings(workers=2, queue_size=32))
    service = app.app.app.state.service
    with TestClient(app):
        barrier = threading.Barrier(2, timeout=10)

        def where(engine):
            barrier.wait()  # both workers hold a job at once: each answers from its own thread
            return threading.get_ident(), id(engine)

        seen = set()
        for _ in range(3):
            seen |= {f.result(20) for f in [service.workers.submit(where) for _ in range(2)]}
    threads = {t for t, _ in seen}
    engines = {e for _, e in seen}
    assert len(threads) == len(engines) == 2 and len(seen) == 2  # one engine per thread, never shared


# --- the token ----------------------------------------------------------------------------------
def test_off_loopback_needs_a_token():
    with pytest.raises(EdgeVLMError, match="--token"):
        create_app(ServeSettings(host="0.0.0.0"))


def test_token_checked_on_every_request_and_event_stream():
    with TestClient(create_app(ServeSettings(host="0.0.0.0", token="s3cret"))) as guarded:
        for path in ("/", "/healthz", "/metrics", "/v1/streams", "/v1/streams/x/events", "/static/app.js"):
            response = guarded.get(path)
            assert response.status_code == 401, path
            assert "token" in response.json()["error"]
        assert guarded.get("/healthz", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert guarded.get("/healthz", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert guarded.get("/v1/streams?token=s3cret").status_code == 200
        page = guarded.get("/?token=s3cret")  # the page opened with its token: later requests carry the cookie
        assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"]
        assert guarded.get("/v1/streams").status_code == 200


def test_a_question_to_a_captions_only_stream_is_refused_at_once(tmp_path):
    import shutil

    from edgevlm.paths import resolve_engine
    from tests.support import edit_manifest

    engine_dir = str(tmp_path / "engine")
    shutil.copytree(resolve_engine(None), engine_dir)

    def captions_only(manifest: dict) -> None:
        manifest["tasks"] = ["caption"]
        manifest.pop("vqa", None)
        manifest["quantization"].pop("variants", None)  # this copy alone, on every CPU

    edit_manifest(engine_dir, captions_only)
    video = make_video(str(tmp_path / "clip.avi"), seconds=30.0, fps=10)
    with TestClient(create_app(ServeSettings(engine_dir=engine_dir))) as captions_client:
        stream = captions_client.post("/v1/streams", json={"source": video}).json()
        response = captions_client.post(f"/v1/streams/{stream['id']}/ask", json={"question": "what is he doing?"})
        assert response.status_code == 400 and "answers no questions" in response.json()["error"]
        photo = captions_client.post("/v1/ask", json={"image": _data_url(), "question": "what is he doing?"})
        assert photo.status_code == 400 and "answers no questions" in photo.json()["error"]
