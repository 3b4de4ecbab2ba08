"""systemd's service notification protocol (``sd_notify``), by hand, for ``edgevlm narrate``.

Under a ``Type=notify`` unit systemd passes ``NOTIFY_SOCKET`` (an AF_UNIX datagram socket;
a leading ``@`` names one in the abstract namespace) and, with ``WatchdogSec=``,
``WATCHDOG_USEC``. A message is one datagram of ``KEY=value`` lines: ``READY=1``,
``WATCHDOG=1``, ``STATUS=...``, ``STOPPING=1``. Without ``NOTIFY_SOCKET`` (a terminal, Docker,
``edgevlm serve``) every method here does nothing, so narration behaves exactly as before.

Why not a library: the protocol is one ``sendto``. ``systemd-python`` (the official binding)
publishes no wheels and needs libsystemd headers to build; ``cysystemd`` links libsystemd too;
``sdnotify`` has had no release since 2017. None is worth a dependency of the torch-free base
install that a Jetson runs. (``vsock:`` addresses, for VMs, are not handled: a Jetson's
systemd passes a filesystem path.)

The watchdog is fed only by the narration loop calling :meth:`ServiceNotifier.alive` each
time it turns; there is deliberately no timer thread. A loop stuck in inference or a
deadlock stops the pings, and systemd restarts the service (``Restart=on-failure``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable

log = logging.getLogger(__name__)

# Ping this many times per WatchdogSec: systemd advises at least twice; four times leaves room
# for a loop turn that takes a while (one caption, one 0.2 s wait for a frame).
PINGS_PER_INTERVAL = 4


def socket_address(env: dict | None = None) -> str | None:
    """The notify socket's address for ``socket.sendto`` (abstract: NUL first), or None."""
    path = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not path:
        return None
    return "\0" + path[1:] if path.startswith("@") else path


def watchdog_seconds(env: dict | None = None, pid: int | None = None) -> float | None:
    """``WATCHDOG_USEC`` in seconds, or None when there is no watchdog for this process
    (unset, not a positive number, or ``WATCHDOG_PID`` names another process: as
    ``sd_watchdog_enabled``, so a child that inherited the variables does not ping)."""
    env = os.environ if env is None else env
    watchdog_pid = env.get("WATCHDOG_PID")
    if watchdog_pid and watchdog_pid != str(os.getpid() if pid is None else pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


def send(address: str | None, message: str) -> bool:
    """Send one notification; False (never an exception) when there is no socket or it fails:
    a missing or restarted manager must not end narration."""
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode("utf-8"), address)
        return True
    except OSError as exc:
        log.debug("sd_notify %r failed: %s", message, exc)
        return False


class ServiceNotifier:
    """What the narration loop tells systemd. ``running_status``: the STATUS line while
    narrating ("narrating /dev/video0"); ``clock``: for the watchdog's rate limit (tests)."""

    def __init__(self, address: str | None, watchdog_s: float | None, running_status: str = "narrating",
                 clock: Callable[[], float] = time.monotonic):
        self.address, self.running_status, self.clock = address, running_status, clock
        self.ping_every = watchdog_s / PINGS_PER_INTERVAL if (address and watchdog_s) else None
        self._last_ping: float | None = None
        self.is_ready = False

    @classmethod
    def from_env(cls, running_status: str = "narrating") -> "ServiceNotifier":
        """From ``NOTIFY_SOCKET`` / ``WATCHDOG_USEC``; a notifier that does nothing when unset."""
        return cls(socket_address(), watchdog_seconds(), running_status)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self) -> None:
        """READY=1 (once): the engine is open and the first frame has been handled."""
        if self.is_ready or not self.enabled:
            return
        self.is_ready = True
        send(self.address, f"READY=1\nSTATUS={self.running_status}")
        self._last_ping = None  # the watchdog counts from READY: ping on the next turn

    def status(self, text: str) -> None:
        """A STATUS= line (`systemctl status` shows it): "camera lost, reconnecting"."""
        send(self.address, f"STATUS={text}")

    def running(self) -> None:
        """Back to the running status (the camera is back)."""
        self.status(self.running_status)

    def alive(self) -> None:
        """The loop turned: WATCHDOG=1, at most every WatchdogSec/4 (called on every turn).
        Nothing before READY: a ping arms systemd's watchdog, and the first frame may take
        minutes (TensorRT builds its engines); TimeoutStartSec= covers that start instead."""
        if self.ping_every is None or not self.is_ready:
            return
        now = self.clock()
        if self._last_ping is None or now - self._last_ping >= self.ping_every:
            self._last_ping = now
            send(self.address, "WATCHDOG=1")

    def stopping(self) -> None:
        """STOPPING=1: shutting down (SIGTERM, the end of a file, an error)."""
        send(self.address, "STOPPING=1\nSTATUS=stopping")


# Narration without systemd (the default of Narrator): every call does nothing.
NO_SERVICE = ServiceNotifier(None, None)
