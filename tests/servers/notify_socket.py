"""A stand-in for systemd's notify socket (``NOTIFY_SOCKET``): a bound AF_UNIX datagram
socket that records every message with its arrival time, read on its own thread as systemd
would read it (a sender blocks once ~10 datagrams wait unread)."""

from __future__ import annotations

import socket
import threading
import time


class NotifyListener:
    def __init__(self, address: str):
        """``address``: a file path, or "\\0name" for an abstract socket."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []  # (time.monotonic() on arrival, text)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def texts(self) -> list[str]:
        return [text for _, text in self.messages]
