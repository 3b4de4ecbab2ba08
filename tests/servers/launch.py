"""Start, kill and restart the camera stand-ins of the fault-injection tests (an HTTP MJPEG
server in the venv's Python, an RTSP server in the system Python), on free local ports, and
bound every test in time. Helpers, not fixtures, so any test file may use them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

from tests.support import REPO_ROOT

RTSP_SCRIPT = os.path.join(REPO_ROOT, "tests", "servers", "rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_PACKAGES = ("python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
                 "gstreamer1.0-plugins-ugly")


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick; free again when we close it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def time_limit(seconds: float):
    """Fail the test (TimeoutError) instead of hanging if the block runs past ``seconds``.
    SIGALRM: the main thread only, which is where pytest runs tests."""

    def overrun(signum, frame):
        raise TimeoutError(f"test ran past its {seconds:.0f} s limit")

    previous = signal.signal(signal.SIGALRM, overrun)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Server:
    """A server subprocess that prints one ``serving ...`` line once it listens."""

    def __init__(self, command: list[str], startup_s: float = 30.0):
        self.command, self.startup_s = command, startup_s
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        self.process = subprocess.Popen(self.command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        deadline = time.monotonic() + self.startup_s
        line = ""
        while time.monotonic() < deadline and self.process.poll() is None:
            line = self.process.stdout.readline()  # the server prints its line at once, or exits
            if line.startswith("serving "):
                return self
        self.kill()
        raise RuntimeError(f"server {self.command} did not start: {line!r} {self.process.stderr.read()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: the camera's server dies mid-stream, no goodbye to the clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=10)
            self.process.stdout.close()
            self.process.stderr.close()

    def pause(self) -> None:
        """SIGSTOP: the connection stays open but no frame comes (a stalled camera)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


def mjpeg_server(port: int, video: str | None = None) -> Server:
    command = [sys.executable, "-m", "edgevlm.scripts.mjpeg_server", "--port", str(port)]
    return Server(command + (["--video", video] if video else []))


def rtsp_missing() -> str | None:
    """Why the RTSP server cannot run here (naming the Debian packages), or None."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"no {SYSTEM_PYTHON} (the RTSP server needs the system Python with {RTSP_PACKAGES})"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
             "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
             "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('videotestsrc'), 'plugins'")
    result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return (f"GStreamer's RTSP server is not usable from {SYSTEM_PYTHON} "
                f"({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no detail'}); "
                f"apt-get install {RTSP_PACKAGES} (make system-deps)")
    return None


def rtsp_server(port: int) -> Server:
    return Server([SYSTEM_PYTHON, RTSP_SCRIPT, "--port", str(port), "--codec", "h264"])


def read_events(path: str) -> list[dict]:
    """The whole lines of a JSONL event log written by a running narrator (a last partial
    line is left for the next read)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [json.loads(line) for line in text.split("\n")[:-1] if line]


def wait_for(path: str, condition, timeout: float, what: str, process: subprocess.Popen | None = None) -> list[dict]:
    """Poll the event log until ``condition(events)`` holds; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = read_events(path)
        if condition(events):
            return events
        if process is not None and process.poll() is not None:
            raise AssertionError(f"narrate exited ({process.returncode}) before {what}: "
                                 f"{process.stderr.read()[-2000:] if process.stderr else ''}")
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout:.0f} s; events: {[e['event'] for e in read_events(path)][-30:]}")
