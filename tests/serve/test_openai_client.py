"""An unchanged OpenAI client (the `openai` package) against /v1/chat/completions on a real
server on 127.0.0.1: what existing integrations send, streaming included."""

from __future__ import annotations

import base64
import os

import cv2
import pytest

openai = pytest.importorskip("openai", reason="the openai package (dev extra) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")

from edgevlm.paths import resolve_engine, sample_images_dir  # noqa: E402
from edgevlm.runtime.engine import CaptionEngine  # noqa: E402
from edgevlm.runtime.serve.app import create_app  # noqa: E402
from edgevlm.runtime.serve.settings import ServeSettings  # noqa: E402
from tests.serve.live_server import live_server  # noqa: E402

PHOTO = os.path.join(sample_images_dir(), "astronaut.jpg")


def _message(text: str) -> list[dict]:
    with open(PHOTO, "rb") as f:
        url = "data:image/jpeg;base64," + base64.b64encode(f.read()).decode()
    return [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}]


def test_openai_client_gets_captions_and_answers_streamed_or_not():
    with CaptionEngine(resolve_engine(None)) as engine:
        image = cv2.imread(PHOTO)
        caption = engine.caption_images([image])[0]
        answer = engine.answer_image(image, ["is there a person?"])[0].text
    with live_server(create_app(ServeSettings())) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused-on-loopback", max_retries=0)
        described = client.chat.completions.create(model="edgevlm", messages=_message("What do you see?"))
        assert described.choices[0].message.content == caption
        asked = client.chat.completions.create(model="edgevlm", messages=_message("is there a person?"))
        assert asked.choices[0].message.content == answer
        streamed = client.chat.completions.create(model="edgevlm", messages=_message("describe"), stream=True)
        assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed) == caption
        assert [m.id for m in client.models.list()] == ["edgevlm"]
        with pytest.raises(openai.BadRequestError, match="no image"):
            client.chat.completions.create(model="edgevlm", messages=[{"role": "user", "content": "hello"}])


def test_openai_client_with_a_token_off_loopback_settings():
    # host 0.0.0.0 in the settings makes the token mandatory; the server itself listens on 127.0.0.1
    app = create_app(ServeSettings(host="0.0.0.0", token="s3cret"))
    with live_server(app) as base:
        denied = openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            denied.chat.completions.create(model="edgevlm", messages=_message("describe"))
        allowed = openai.OpenAI(base_url=f"{base}/v1", api_key="s3cret", max_retries=0)
        assert allowed.chat.completions.create(model="edgevlm", messages=_message("describe")).choices[0].message.content
