"""``edgevlm serve`` as a user runs it: a real process on 127.0.0.1, stopped by SIGTERM."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")

from edgevlm.paths import sample_images_dir  # noqa: E402

EDGEVLM = [sys.executable, "-m", "edgevlm.cli.main"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("edgevlm serve did not come up")


def test_serve_answers_then_stops_cleanly_on_sigterm():
    port = _free_port()
    process = subprocess.Popen([*EDGEVLM, "serve", os.path.join(sample_images_dir(), "street.mp4"), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        with open(os.path.join(sample_images_dir(), "astronaut.jpg"), "rb") as f:
            caption = httpx.post(f"http://127.0.0.1:{port}/v1/caption", files={"image": f}, timeout=30).json()
        assert caption["caption"]
        assert len(httpx.get(f"http://127.0.0.1:{port}/v1/streams").json()["streams"]) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "stopped: SIGTERM; streams and engines closed" in stderr and "Traceback" not in stderr


def test_port_in_use_and_missing_source_are_one_line_errors():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run([*EDGEVLM, "serve", "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert busy.returncode == 1 and busy.stderr.strip().startswith("error: cannot listen on 127.0.0.1:")
    assert len(busy.stderr.strip().splitlines()) == 1
    missing = subprocess.run([*EDGEVLM, "serve", "nowhere.mp4", "--port", str(_free_port())], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and "error: stream nowhere.mp4: source not found" in missing.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_backend_tensorrt_without_tensorrt_is_one_line_before_serving():
    done = subprocess.run([*EDGEVLM, "serve", "--backend", "tensorrt", "--port", str(_free_port())], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs the tensorrt Python module" in lines[0], done.stderr
