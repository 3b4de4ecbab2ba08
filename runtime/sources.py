"""Frame sources through OpenCV: image files and folders, video files, cameras (index or
V4L2 device path), RTSP/HTTP URLs and GStreamer pipelines (Jetson CSI: ``nvarguscamerasrc
... ! appsink``).

Files are read in order, past damaged stretches (video_reader.py). Live sources are read by
a background thread that keeps only the newest frame, so a slow consumer sees what is in
front of the camera now, never a backlog, and that reconnects when the source drops, if
asked to (live_reader.py). Opening and reading are bounded by timeouts: a dead URL or
unplugged camera is an error after a few seconds, never a hang.

``frames()`` gives frames only; ``stream()`` gives them with ``SourceChange``s in order (a
live source lost or back, a damaged stretch skipped, a file that ended early), and
``stats()`` the counters for a summary.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Callable, Iterator

import cv2

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.live_reader import LiveReader, ReconnectSettings
from edgevlm.runtime.preprocess import read_image_bgr
from edgevlm.runtime.stream_items import Frame, SourceChange, SourceStats
from edgevlm.runtime.video_reader import VideoFileReader

__all__ = ["Frame", "FrameSource", "ReconnectSettings", "SourceChange", "SourceStats", "image_files", "images_in",
           "source_kind"]

# Our errors say what went wrong; OpenCV's and FFmpeg's own warnings on stderr only repeat it.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when FFmpeg is first used


def quiet_opencv(cv=cv2) -> None:
    """OpenCV's own log to errors only. Where the call lives moved between the versions we
    accept (pyproject: >=4.8): 4.8's wheels have ``cv2.setLogLevel`` and no
    ``cv2.utils.logging``, 5.x the reverse."""
    logging_api = getattr(getattr(cv, "utils", None), "logging", None)
    if logging_api is not None:
        logging_api.setLogLevel(logging_api.LOG_LEVEL_ERROR)
    elif hasattr(cv, "setLogLevel"):
        cv.setLogLevel(2)  # cv::utils::logging::LOG_LEVEL_ERROR


quiet_opencv()

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


def image_files(folder: str) -> list[str]:
    """The image files directly in ``folder``, as sorted paths (possibly none)."""
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))


def images_in(folder: str) -> list[str]:
    """``image_files``, but a folder without images is an error naming it."""
    found = image_files(folder)
    if not found:
        raise EdgeVLMError(f"folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return found


def source_kind(spec: str) -> str:
    """'images' | 'image' | 'video' | 'camera' | 'url' | 'gstreamer'."""
    if "!" in spec and not os.path.exists(spec):  # "wow!.mp4" is a file, not a pipeline
        return "gstreamer"
    if spec.lower().startswith(URL_SCHEMES):
        return "url"
    if spec.isdigit() or spec.startswith("/dev/video"):
        return "camera"
    if os.path.isdir(spec):
        return "images"
    if not os.path.exists(spec):
        raise EdgeVLMError(f"source not found: {spec}; give an image, a folder, a video, a camera index, a URL or a GStreamer pipeline")
    return "image" if spec.lower().endswith(IMAGE_EXTENSIONS) else "video"


def _with_timeout(func, seconds: float, what: str):
    """Run a possibly-blocking OpenCV call in a daemon thread; raise if it overruns."""
    result: dict = {}

    def target():
        try:
            result["value"] = func()
        except Exception as exc:  # re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise EdgeVLMError(f"{what}: no answer after {seconds:.0f} s; check that it is connected and reachable")
    if "error" in result:
        raise EdgeVLMError(f"{what}: {result['error']}")
    return result["value"]


def _capture_opener(spec: str, kind: str, timeout: float, read_timeout: float | None = None
                    ) -> Callable[[], cv2.VideoCapture]:
    """A function that opens ``spec`` (possibly not successfully: check ``isOpened()``);
    seconds for the timeouts (``read_timeout`` defaults to ``timeout``)."""
    if kind == "gstreamer":
        if not re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()):
            raise EdgeVLMError("this OpenCV was built without GStreamer; use a build with GStreamer (e.g. JetPack's) for pipeline sources")
        opener = lambda: cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)  # noqa: E731
    elif kind == "camera":
        target = int(spec) if spec.isdigit() else spec
        opener = lambda: cv2.VideoCapture(target, cv2.CAP_V4L2 if os.name == "posix" else cv2.CAP_ANY)  # noqa: E731
    else:  # url or video file: FFmpeg honours open/read timeouts natively
        read_ms = int((read_timeout if read_timeout is not None else timeout) * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(timeout * 1000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_ms]
        opener = lambda: cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)  # noqa: E731
    return opener


def _open_capture(spec: str, kind: str, timeout: float, read_timeout: float | None = None) -> cv2.VideoCapture:
    opener = _capture_opener(spec, kind, timeout, read_timeout)
    capture = _with_timeout(opener, timeout + 1.0, f"opening {kind} {spec}")
    if not capture.isOpened():
        hints = {
            "camera": "is the camera plugged in, and is the index/device right (ls /dev/video*)?",
            "url": "is the URL reachable and the stream running?",
            "video": "is it a video file OpenCV's FFmpeg can decode?",
            "gstreamer": "does the pipeline end in appsink and run with gst-launch-1.0?",
        }
        raise EdgeVLMError(f"cannot open {kind} {spec}: {hints[kind]}")
    _check_frame_size(capture, spec, kind)
    return capture


def _check_frame_size(capture: cv2.VideoCapture, spec: str, kind: str) -> None:
    """Refuse frames over the image pixel limit before any is decoded: FFmpeg allocates
    every frame at the container's size (a 20000x20000 stream is a memory bomb as a PNG is)."""
    from edgevlm.runtime.preprocess import MAX_PIXELS_ENV, max_image_pixels

    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    limit = max_image_pixels()
    if width * height > limit:
        capture.release()
        raise EdgeVLMError(f"{kind} {spec} has {width}x{height} frames ({width * height / 1e6:.0f} megapixels), over "
                           f"the {limit / 1e6:.0f}-megapixel limit; shrink it, or raise the limit with "
                           f"{MAX_PIXELS_ENV}={width * height}")


class FrameSource:
    """Iterate frames from a source; use as a context manager so captures are released.

    ``reconnect``: how a live source that drops is reopened (None: a drop is an error);
    ``stuck_after``: seconds a live read or reopen may block before the run is ended
    (default: three times the longer timeout, at least 30 s). Seconds throughout."""

    def __init__(self, spec: str, open_timeout: float = 5.0, read_timeout: float = 5.0,
                 reconnect: ReconnectSettings | None = None, stuck_after: float | None = None):
        self.spec, self.kind = spec, source_kind(spec)
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.reconnect = reconnect
        self.stuck_after = stuck_after if stuck_after is not None else max(30.0, 3 * max(open_timeout, read_timeout))
        self.live = self.kind in ("camera", "url", "gstreamer")
        self.fps: float | None = None
        self._capture = None
        self._reader: LiveReader | None = None
        self._video: VideoFileReader | None = None

    def __enter__(self) -> "FrameSource":
        if self.kind in ("video", "camera", "url", "gstreamer"):
            self._capture = _open_capture(self.spec, self.kind, self.open_timeout, self.read_timeout)
            fps = self._capture.get(cv2.CAP_PROP_FPS)
            self.fps = fps if fps and fps > 0 and fps < 1000 else None
            if self.live:
                # Reopening runs on the reader's own thread, bounded by the watchdog instead of _with_timeout.
                reopen = _capture_opener(self.spec, self.kind, self.open_timeout, self.read_timeout)
                self._reader = LiveReader(self._capture, reopen, self.spec, self.read_timeout, self.reconnect,
                                          self.stuck_after)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._reader:
            self._reader.stop()
            # The reader owns the capture now (it may have reopened it). Still blocked inside
            # read() or open: releasing under it is undefined behaviour in OpenCV; leave it to
            # the daemon thread and process exit.
            self._capture = None if self._reader.alive else self._reader.capture
            self._reader.capture = None
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def frames(self, every: float | None = None) -> Iterator[Frame]:
        """Frames in order (files) or the newest available (live). With ``every``, at most one
        frame per ``every`` seconds of stream time."""
        next_t = 0.0
        for frame in self.stream():
            if not isinstance(frame, Frame):
                continue
            if every is None or frame.t + 1e-6 >= next_t:
                next_t = frame.t + every if every else 0.0
                yield frame

    def stream(self, stop: threading.Event | None = None) -> Iterator[Frame | SourceChange]:
        """Every frame (as ``frames()``) and, in order with them, the source's changes. A live
        source waiting for frames ends when ``stop`` is set."""
        if self.kind == "image":
            yield Frame(read_image_bgr(self.spec), 0.0, 0, time.monotonic(), self.spec)
        elif self.kind == "images":
            for index, path in enumerate(images_in(self.spec)):
                yield Frame(read_image_bgr(path), float(index), index, time.monotonic(), path)
        elif self.live:
            yield from self._reader.items(stop)
        else:
            self._video = VideoFileReader(self._capture, self.spec, self.fps)
            yield from self._video.items()

    def stats(self) -> SourceStats:
        """The source's counters so far (all zero for photos)."""
        if self._reader is not None:
            return self._reader.source_stats()
        if self._video is not None:
            return SourceStats(**vars(self._video.stats))
        return SourceStats()

    def newest_frame(self) -> Frame:
        """The frame to answer a question about: the photo; for a video file its last frame
        (what a viewer saw last); for a live source the newest frame right now."""
        if self.kind == "images":
            raise EdgeVLMError(f"{self.spec} is a folder: ask about one photo, a video or a camera")
        if self.kind == "video":
            count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
            if count > 1 and self._capture.set(cv2.CAP_PROP_POS_FRAMES, count - 1):
                ok, image = self._capture.read()
                if ok:
                    t = (count - 1) / self.fps if self.fps else 0.0
                    return Frame(image, t, count - 1, time.monotonic(), f"{self.spec}@{t:.2f}s")
            # No frame count or seek, or an estimated count past the real end (VFR, mkv):
            # rewind and read to the end.
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            last = None
            for last in self.frames():
                pass
            return last
        return next(iter(self.frames()))
