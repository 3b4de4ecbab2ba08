"""A real uvicorn server on 127.0.0.1 in a thread, for tests that need a socket (OpenAI's
client, a browser)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class ServerThread:
    """An ASGI app served by uvicorn on 127.0.0.1 at a free port, in a daemon thread.

    The socket is bound before the thread starts, so the port is ours (no find-then-bind race)."""

    def __init__(self, app):
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="uvicorn", daemon=True)

    def start(self, timeout: float = 120.0) -> "ServerThread":
        """Start, and wait until the app's startup (its streams opened) is done."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread died during startup (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {timeout:.0f} s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.socket.close()


@contextlib.contextmanager
def live_server(app):
    """Serve ``app`` on 127.0.0.1; yields the base URL; stops the server (and its lifespan) at exit."""
    server = ServerThread(app).start()
    try:
        yield server.url
    finally:
        server.stop()
