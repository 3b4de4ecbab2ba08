"""What ``edgevlm serve`` is told: where to listen, which engine, and its limits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from edgevlm.errors import EdgeVLMError

TOKEN_ENV = "EDGEVLM_TOKEN"  # the token, when not given with --token (keeps it out of `ps`)


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    engine_dir: str | None = None  # None: the shipped engine
    provider: str = "cpu"
    backend: str = "onnxruntime"  # or "tensorrt": native plans from `edgevlm build`
    rebuild: bool = False  # with backend "tensorrt": build missing or stale plans when an engine opens
    threads: int | None = None  # onnxruntime intra-op threads per engine
    token: str | None = None  # required on every request when host is not loopback
    workers: int = 1  # engines answering /v1/caption, /v1/ask and chat (one thread each)
    queue_size: int = 8  # requests waiting per worker before 503
    max_upload_bytes: int = 10 * 1024 * 1024  # a request body larger than this: 413
    max_pixels: int = 40_000_000  # an image with more pixels than this (e.g. a PNG bomb): 413
    max_streams: int = 8  # each stream owns an engine and a thread
    realtime_files: bool = True  # a video file stream is paced like a camera

    def check(self) -> None:
        """Refuse an off-loopback server without a token, in one line."""
        if not is_loopback(self.host) and not self.token:
            raise EdgeVLMError(f"--host {self.host} is reachable from other machines: give --token TOKEN (or set "
                               f"{TOKEN_ENV}) so every request must carry it, or serve on 127.0.0.1")
        if self.workers < 1 or self.queue_size < 1:
            raise EdgeVLMError("--workers and --queue-size must be at least 1")


def is_loopback(host: str) -> bool:
    """Only this machine can connect (127.0.0.0/8, ::1, "localhost")."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False
