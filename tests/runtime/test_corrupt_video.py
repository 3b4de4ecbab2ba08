"""Damaged video files: narration goes on past a corrupt stretch, says when a file ended
before its frame count, and fails (exit 1) only when nothing at all can be read. The files
are made here: a 10 s clip written by cv2.VideoWriter with random bytes over its middle
third (the report of issue 16: narration stopped at 3.4 s of 10 s, exit 0, no warning)."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.sources import FrameSource
from edgevlm.runtime.stream_items import ENDED_EARLY, SKIPPED, Frame, SourceChange


def _clip(path: str, fourcc: str, seconds: int = 10, fps: int = 10, size=(160, 120)) -> str:
    """A moving block on a textured background, numbered frames."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, size)
    background = np.random.default_rng(0).integers(30, 90, size=(size[1], size[0], 3), dtype=np.uint8)
    for i in range(seconds * fps):
        frame = background.copy()
        x = (i * 3) % (size[0] - 16)
        frame[10:30, x : x + 16] = (0, 0, 220)
        cv2.putText(frame, str(i), (40, 90), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()
    return path


def _garbage(path: str, start: float, end: float, seed: int = 1) -> str:
    """Overwrite bytes [start, end) (fractions of the file) with random bytes, in place."""
    data = bytearray(open(path, "rb").read())
    a, b = int(len(data) * start), int(len(data) * end)
    data[a:b] = np.random.default_rng(seed).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    open(path, "wb").write(bytes(data))
    return path


def _read_all(path: str):
    with FrameSource(path) as source:
        items = list(source.stream())
        frames = [i for i in items if isinstance(i, Frame)]
        return frames, [i for i in items if isinstance(i, SourceChange)], source.stats()


@pytest.fixture()
def corrupt_mp4(tmp_path):
    return _garbage(_clip(str(tmp_path / "corrupt.mp4"), "mp4v"), 1 / 3, 2 / 3)


def test_a_corrupt_middle_third_is_skipped_and_narration_reaches_the_end(corrupt_mp4):
    frames, changes, stats = _read_all(corrupt_mp4)
    # OpenCV's FFmpeg fails reads from 3.5 s; reading on past the damaged packets decodes again
    assert frames[-1].t == pytest.approx(9.9) and len(frames) >= 60
    assert [c.kind for c in changes] == [SKIPPED]
    skipped = changes[0]
    assert 3.0 <= skipped.details["from_t"] < skipped.details["to_t"] <= 7.5
    assert frames[-1].index == 99 and all(b.index > a.index for a, b in zip(frames, frames[1:]))
    assert stats.decode_errors > 0 and stats.seconds_skipped > 1.0
    assert stats.frames_expected == 100 and not stats.ended_early


def test_an_avi_damaged_in_the_middle_is_read_past_the_damage(tmp_path):
    # avi: after the damage every read fails, but a seek past it reads again
    path = _garbage(_clip(str(tmp_path / "corrupt.avi"), "MJPG"), 1 / 3, 2 / 3)
    frames, changes, stats = _read_all(path)
    assert frames[-1].t >= 9.0 and SKIPPED in [c.kind for c in changes] and stats.decode_errors > 0


def test_a_truncated_file_says_it_ended_early(tmp_path):
    path = _clip(str(tmp_path / "cut.avi"), "MJPG")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) * 4 // 10])  # a copy that stopped at 40%: the header still says 100
    frames, changes, stats = _read_all(path)
    assert 30 <= len(frames) <= 45
    assert changes[-1].kind == ENDED_EARLY and "ended at" in changes[-1].message
    assert stats.ended_early and stats.frames_expected == 100


def test_a_video_with_no_decodable_frame_is_an_error(tmp_path):
    path = _clip(str(tmp_path / "dead.mp4"), "mp4v")
    data = bytearray(open(path, "rb").read())
    start, end = data.find(b"mdat") + 8, data.find(b"moov") - 4  # every frame's bytes, the index kept
    data[start:end] = np.random.default_rng(2).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    open(path, "wb").write(bytes(data))
    with pytest.raises(EdgeVLMError, match="cannot read frames from video"):
        _read_all(path)


def _narrate(*args):
    return subprocess.run([sys.executable, "-m", "edgevlm.cli.main", "narrate", *args, "--tts", "none",
                           "--no-questions"], capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


def test_narrate_goes_on_past_the_damage_and_warns(corrupt_mp4, tiny_engine_master, tmp_path):
    events = tmp_path / "events.jsonl"
    result = _narrate(corrupt_mp4, "--engine", tiny_engine_master, "--events", str(events))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "could not be decoded; skipped" in warnings[0]
    summary = json.loads(result.stdout.splitlines()[-1].removeprefix("summary: "))
    assert summary["stream_seconds"] == pytest.approx(9.9) and summary["decode_errors"] > 0
    assert summary["ended_early"] is False and summary["frames_expected"] == 100
    logged = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["event"] for e in logged].count("source_skipped") == 1
    assert max(e["t"] for e in logged if e["event"] == "frame") == pytest.approx(9.9)


def test_narrate_says_a_file_ended_early_and_fails_on_an_unreadable_one(tiny_engine_master, tmp_path):
    path = _clip(str(tmp_path / "cut.avi"), "MJPG")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    result = _narrate(path, "--engine", tiny_engine_master)
    assert result.returncode == 0, result.stderr
    assert "warning: video " in result.stderr and "ended at" in result.stderr
    summary = json.loads(result.stdout.splitlines()[-1].removeprefix("summary: "))
    assert summary["ended_early"] is True and summary["frames_expected"] == 100
    empty = tmp_path / "empty.avi"
    _clip(str(empty), "MJPG", seconds=1)
    raw = open(empty, "rb").read()
    open(empty, "wb").write(raw[:4096])  # a header and nothing that decodes
    result = _narrate(str(empty), "--engine", tiny_engine_master)
    assert result.returncode == 1 and result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
