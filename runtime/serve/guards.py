"""ASGI middleware in front of every route: the token check and the request-body limit.

Written as plain ASGI (not Starlette's BaseHTTPMiddleware) because both must see every
request, event streams included, before a byte of the body is read, and the body limit must
count the bytes of a chunked upload that has no Content-Length.
"""

from __future__ import annotations

import hmac
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from edgevlm.runtime.serve.errors import error_body

TOKEN_COOKIE = "edgevlm_token"


def _problem(scope, status: int, message: str, headers: list | None = None):
    body = json.dumps(error_body(scope.get("path", ""), status, message)).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         *(headers or [])]}
    return start, {"type": "http.response.body", "body": body}


def _presented_token(scope) -> str | None:
    """The token from ``Authorization: Bearer``, the ``token`` query parameter (EventSource and
    <img> cannot set headers) or the cookie set when the page was opened with it."""
    headers = dict(scope.get("headers") or [])
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("token"):
        return query["token"][0]
    cookie = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
    return cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else None


class TokenGuard:
    """401 for every HTTP request without the server's token (when it has one)."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.token:
            return await self.app(scope, receive, send)
        presented = _presented_token(scope)
        if presented is None or not hmac.compare_digest(presented.encode(), self.token.encode()):
            start, body = _problem(scope, 401, "missing or wrong token: send 'Authorization: Bearer TOKEN' (or ?token=TOKEN)",
                                   [(b"www-authenticate", b"Bearer")])
            await send(start)
            await send(body)
            return
        if scope["path"] == "/" and scope.get("query_string"):  # the page opened with ?token=: remember it
            async def send_with_cookie(message):
                if message["type"] == "http.response.start":
                    cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                    message = message | {"headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
                await send(message)
            return await self.app(scope, receive, send_with_cookie)
        return await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """413 for a request body over ``max_bytes``: at once from Content-Length, or as soon as a
    chunked body passes the limit (the route never sees the rest)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _message(self) -> str:
        return (f"request too large: over the {self.max_bytes // (1024 * 1024)} MB limit; send a smaller image "
                "(or start the server with a larger --max-upload-mb)")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            start, body = _problem(scope, 413, self._message())
            await send(start)
            await send(body)
            return
        seen = 0
        started = False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                start, body = _problem(scope, 413, self._message())
                await send(start)
                await send(body)
