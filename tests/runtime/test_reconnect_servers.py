"""Fault injection with real servers on 127.0.0.1: a live camera's server is killed
mid-stream (SIGKILL) or stalled (SIGSTOP) and started again on the same port, while
``edgevlm narrate`` runs in a subprocess on the tiny engine. Narration must say the camera is
gone within the read timeout, reconnect, say it is back and caption the frames after it.
Every test is bounded in time (``time_limit``) and kills what it started."""

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.servers.launch import free_port, mjpeg_server, rtsp_missing, rtsp_server, time_limit, wait_for

READ_TIMEOUT_S = 2.0  # narrate --read-timeout: how soon a stall must be noticed
SLACK_S = 3.0  # process scheduling on a loaded 2-core machine, the inference thread's poll


def _narrate(url: str, engine: str, events: str, read_timeout: float = READ_TIMEOUT_S) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edgevlm.cli.main", "narrate", url, "--engine", engine, "--no-speak", "--tts", "none",
         "--no-questions", "--events", events, "--read-timeout", str(read_timeout), "--reconnect-interval", "0.5",
         "--reconnect-max-interval", "1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(process: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM (a clean stop with every output complete), then the process's output."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


def _kinds(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]


def _back_and_captioned_after(wall: float):
    """"camera back" said, and a frame from after ``wall`` captioned."""
    return lambda events: (any(e["event"] == "caption" and e["wall"] > wall for e in events)
                           and any(e["event"] == "spoken" and e.get("notice") == "back" for e in events))


def _lost_back_and_caption(server_factory, engine: str, tmp_path, read_timeout: float, stall: bool = False):
    """Run narrate on a live server, break the server (kill, or stall), bring it back; return
    (events, stdout, stderr, when it broke, when it came back) as wall-clock seconds."""
    port = free_port()
    url_server = server_factory(port)
    server = url_server.start()
    events = str(tmp_path / "events.jsonl")
    narrate = _narrate(server.url, engine, events, read_timeout)
    try:
        wait_for(events, lambda ev: "caption" in _kinds(ev), 60, "first caption", narrate)
        broke = time.time()
        if stall:
            server.pause()
        else:
            server.kill()
        wait_for(events, lambda ev: "source_lost" in _kinds(ev), read_timeout + 2 * SLACK_S, "source_lost", narrate)
        if stall:
            time.sleep(1.0)
            server.resume()
        else:
            time.sleep(1.0)  # a restart is not instant: the reconnect loop sees a refused port first
            server = server_factory(port).start()
        back = time.time()
        wait_for(events, _back_and_captioned_after(back), 60, "camera back and a caption after the restart", narrate)
    finally:
        stdout, stderr = _stop(narrate)
        server.kill()
    with open(events, encoding="utf-8") as f:
        logged = [json.loads(line) for line in f]
    return logged, stdout, stderr, broke, back


def _check_recovery(events, stdout, broke, back, read_timeout, reopened: bool | None = True):
    """The log shows the loss (in time), the return, a caption after it, and the summary counts them;
    ``reopened``: whether the source had to be opened again (None: either)."""
    kinds = _kinds(events)
    lost, returned = kinds.index("source_lost"), kinds.index("source_back")
    assert lost < returned, kinds
    # noticed within the read timeout (+ the time to schedule it), and said once, spoken and printed
    assert events[lost]["wall"] - broke <= read_timeout + SLACK_S, (events[lost], broke)
    assert kinds.count("source_lost") == 1 and kinds.count("source_back") == 1, kinds
    spoken = [e["text"] for e in events if e["event"] == "spoken" and e.get("notice")]
    assert spoken == ["camera disconnected, reconnecting", "camera back"]
    printed = [line for line in stdout.splitlines() if line.startswith("[")]
    assert any(line.endswith("] camera disconnected, reconnecting") for line in printed)
    assert any(line.endswith("] camera back") for line in printed)
    after = [e for e in events[returned:] if e["event"] == "caption"]
    assert after and after[0]["wall"] >= back and after[0]["t"] > events[lost]["t"]
    assert events[-1]["event"] == "summary"
    summary = json.loads(stdout.splitlines()[-1].removeprefix("summary: "))
    assert summary["source_lost"] == 1 and summary["source_back"] == 1
    assert reopened is None or (summary["reconnect_attempts"] >= 1) == reopened
    assert summary["seconds_without_source"] > 0.5
    assert summary["frames_expected"] is None and summary["ended_early"] is False


class _MJPEG:
    def __init__(self, port):
        self.server = mjpeg_server(port)
        self.url = f"http://127.0.0.1:{port}/"

    def start(self):
        self.server.start()
        return self

    def kill(self):
        self.server.kill()

    def pause(self):
        self.server.pause()

    def resume(self):
        self.server.resume()


class _RTSP(_MJPEG):
    def __init__(self, port):
        self.server = rtsp_server(port)
        self.url = f"rtsp://127.0.0.1:{port}/stream"


def test_mjpeg_server_killed_and_restarted_is_reconnected(tiny_engine_master, tmp_path):
    with time_limit(150):
        events, stdout, stderr, broke, back = _lost_back_and_caption(_MJPEG, tiny_engine_master, tmp_path,
                                                                      READ_TIMEOUT_S)
    _check_recovery(events, stdout, broke, back, READ_TIMEOUT_S)
    assert "lost (the stream ended)" in stderr  # a killed server: end of stream, noticed at once


def test_stalled_mjpeg_server_is_noticed_within_the_read_timeout(tiny_engine_master, tmp_path):
    with time_limit(150):
        events, stdout, stderr, broke, back = _lost_back_and_caption(_MJPEG, tiny_engine_master, tmp_path,
                                                                      READ_TIMEOUT_S, stall=True)
    # Either the blocked read resumes with the server (the same connection) or FFmpeg's read
    # timeout ends it first and the source is reopened: both are a recovery.
    _check_recovery(events, stdout, broke, back, READ_TIMEOUT_S, reopened=None)
    lost = next(e for e in events if e["event"] == "source_lost")
    assert lost["reason"] == f"no frame for {READ_TIMEOUT_S:g} s"
    assert lost["wall"] - broke >= READ_TIMEOUT_S - 0.5  # not before the timeout: a stall is only a stall after it


def test_rtsp_server_killed_and_restarted_is_reconnected(tiny_engine_master, tmp_path):
    missing = rtsp_missing()
    if missing:
        pytest.skip(missing)
    read_timeout = 4.0  # RTSP opens take ~3 s here (x264 + FFmpeg's probing); reads keep the same bound
    with time_limit(200):
        events, stdout, stderr, broke, back = _lost_back_and_caption(_RTSP, tiny_engine_master, tmp_path, read_timeout)
    _check_recovery(events, stdout, broke, back, read_timeout)


def test_stopping_while_the_camera_is_gone_is_prompt_and_complete(tiny_engine_master, tmp_path):
    port = free_port()
    server = _MJPEG(port).start()
    events = str(tmp_path / "events.jsonl")
    narrate = _narrate(server.url, tiny_engine_master, events)
    try:
        with time_limit(120):
            wait_for(events, lambda ev: "caption" in _kinds(ev), 60, "first caption", narrate)
            server.kill()  # and never back: narrate keeps reconnecting (attempts 0 = forever)
            wait_for(events, lambda ev: "source_lost" in _kinds(ev), READ_TIMEOUT_S + 2 * SLACK_S, "source_lost",
                     narrate)
            time.sleep(2.0)
            began = time.monotonic()
            stdout, stderr = _stop(narrate)
            assert time.monotonic() - began < 5.0  # the reader's backoff wait and the capture thread both end on stop
    finally:
        _stop(narrate)
        server.kill()
    assert narrate.returncode == 0, stderr
    summary = json.loads(stdout.splitlines()[-1].removeprefix("summary: "))
    assert summary["source_lost"] == 1 and summary["source_back"] == 0
    assert summary["reconnect_attempts"] >= 2 and summary["seconds_without_source"] >= 2.0
