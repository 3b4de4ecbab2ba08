"""Frame sources: files in order, every-N-seconds sampling, clear errors instead of hangs."""

import os
import subprocess
import sys

import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.sources import FrameSource, source_kind
from tests.support import SAMPLES, make_video


def test_source_kinds(tmp_path):
    video = make_video(str(tmp_path / "clip.avi"))
    assert source_kind(video) == "video"
    assert source_kind(SAMPLES) == "images"
    assert source_kind(os.path.join(SAMPLES, "coffee.jpg")) == "image"
    assert source_kind("0") == "camera" and source_kind("/dev/video3") == "camera"
    assert source_kind("rtsp://10.0.0.2/stream") == "url"
    assert source_kind("nvarguscamerasrc ! nvvidconv ! appsink") == "gstreamer"
    with pytest.raises(EdgeVLMError, match="source not found"):
        source_kind(str(tmp_path / "nothing.mp4"))


def test_video_frames_in_order_with_stream_times(tmp_path):
    video = make_video(str(tmp_path / "clip.avi"), seconds=2.0, fps=10)
    with FrameSource(video) as source:
        frames = list(source.frames())
        assert source.fps == 10
    assert [f.index for f in frames] == list(range(20))
    assert frames[5].t == pytest.approx(0.5)
    with FrameSource(video) as source:
        sampled = [f.t for f in source.frames(every=0.5)]
    assert sampled == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_folder_frames_are_sorted_images():
    with FrameSource(SAMPLES) as source:
        labels = [f.label for f in source.frames()]
    assert labels == sorted(labels) and len(labels) == 4


def test_not_a_video_is_a_clear_error(tmp_path):
    path = tmp_path / "fake.mp4"
    path.write_bytes(b"this is not a video")
    with pytest.raises(EdgeVLMError, match="cannot (open|read frames from) video"):
        with FrameSource(str(path)) as source:
            list(source.frames())


def _caption(*args, timeout=60):
    # The timeout only guards against a hang; the assertions are about the error itself.
    return subprocess.run([sys.executable, "-m", "edgevlm.cli.main", "caption", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_absent_camera_is_an_error_not_a_hang(tiny_engine_master):
    result = _caption("/dev/video57", "--engine", tiny_engine_master)
    assert result.returncode == 1
    assert "cannot open camera /dev/video57" in result.stderr or "no answer after" in result.stderr


def test_unreachable_url_is_an_error_not_a_hang(tiny_engine_master):
    result = _caption("rtsp://127.0.0.1:9/stream", "--engine", tiny_engine_master)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "rtsp://127.0.0.1:9/stream" in result.stderr


def test_quiet_opencv_on_both_logging_apis():
    """OpenCV 4.8 (pyproject's floor) has cv2.setLogLevel and no cv2.utils.logging; 5.x the
    reverse: importing the runtime failed on 4.8 (found by edgevlm.scripts.oldest_deps_check)."""
    from types import SimpleNamespace

    from edgevlm.runtime.sources import quiet_opencv

    levels = []
    opencv_48 = SimpleNamespace(utils=SimpleNamespace(), setLogLevel=levels.append)
    quiet_opencv(opencv_48)
    logging_5x = SimpleNamespace(LOG_LEVEL_ERROR=2, setLogLevel=levels.append)
    quiet_opencv(SimpleNamespace(utils=SimpleNamespace(logging=logging_5x)))
    quiet_opencv(SimpleNamespace())  # neither: left as it is, no AttributeError
    assert levels == [2, 2]
