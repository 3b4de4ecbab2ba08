"""``POST /v1/chat/completions``: the subset of OpenAI's chat API that a captioner and VQA model
can honour, so existing OpenAI clients work unchanged.

A request's last user message carries the image (an ``image_url`` content part with a
``data:`` URL; remote URLs are refused: the server never fetches from the network) and text:
the question, or a request to describe ("describe", "what do you see", or no text) -> the
caption. ``stream: true`` answers with ``chat.completion.chunk`` server-sent events and
``data: [DONE]``; the text is complete before the first chunk (the engine does not stream
tokens), so chunks are its words.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass

from edgevlm.runtime.serve.errors import HTTPProblem

MODEL_ID = "edgevlm"
_DESCRIBE = re.compile(r"^\s*(describe|caption|what do you see|what can you see|what('s| is) (in )?(this|the) "
                       r"(image|picture|photo|scene)|what('s| is) (here|there|in front of me))\b", re.IGNORECASE)


@dataclass(frozen=True)
class ChatRequest:
    image_url: str  # a data: URL
    text: str  # "" when there was none
    stream: bool
    model: str

    @property
    def wants_caption(self) -> bool:
        return not self.text.strip() or bool(_DESCRIBE.match(self.text))


def parse_chat_request(body) -> ChatRequest:
    """The JSON body -> ChatRequest; 400 naming what is missing or unsupported."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise HTTPProblem(400, '"messages" must be a non-empty list of chat messages')
    users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise HTTPProblem(400, 'no "user" message: send one with an image_url part and your question')
    content = users[-1].get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise HTTPProblem(400, "the user message's content must be a string or a list of content parts")
    texts, images = [], []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str):
                images.append(url)
    if not images:
        raise HTTPProblem(400, 'the user message has no image: add {"type": "image_url", "image_url": '
                               '{"url": "data:image/jpeg;base64,..."}}')
    if len(images) > 1:
        raise HTTPProblem(400, "one image per message: this model looks at a single image")
    if not images[0].startswith("data:"):
        raise HTTPProblem(400, "image_url must be a data: URL (data:image/jpeg;base64,...); this server does not "
                               "fetch images from the network")
    return ChatRequest(images[0], " ".join(texts).strip(), bool(body.get("stream", False)),
                       str(body.get("model") or MODEL_ID))


def completion(request: ChatRequest, text: str) -> dict:
    """The whole answer as one ``chat.completion``."""
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": request.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": len(text.split()), "total_tokens": len(text.split())}}


def completion_chunks(request: ChatRequest, text: str):
    """The answer as server-sent ``chat.completion.chunk`` events: the role, then one chunk per
    word, then ``finish_reason: "stop"``, then ``[DONE]`` (as OpenAI streams)."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": request.model}

    def chunk(delta: dict, finish: str | None = None) -> str:
        return "data: " + json.dumps(base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

    yield chunk({"role": "assistant", "content": ""})
    words = text.split(" ")
    for i, word in enumerate(words):
        yield chunk({"content": word if i == 0 else " " + word})
    yield chunk({}, "stop")
    yield "data: [DONE]\n\n"
