"""Errors the HTTP API answers with: a status code and one line saying what is wrong and the fix."""

from __future__ import annotations


class HTTPProblem(Exception):
    """Answered as ``{"error": message}`` with ``status`` (and ``headers``, e.g. Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class Busy(HTTPProblem):
    """Every worker's queue is full: 503, try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int = 1):
        super().__init__(503, f"busy: every engine's queue is full; retry after {retry_after} s",
                         {"Retry-After": str(retry_after)})


OPENAI_PATHS = ("/v1/chat/", "/v1/models")
_OPENAI_TYPES = {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error",
                 429: "rate_limit_error", 503: "server_error"}


def error_body(path: str, status: int, message: str) -> dict:
    """``{"error": message}``; on the OpenAI-compatible routes OpenAI's own shape,
    ``{"error": {"message", "type", "code"}}``, which its clients read into their exceptions."""
    if path.startswith(OPENAI_PATHS):
        kind = _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return {"error": message}
