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
