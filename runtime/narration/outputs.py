"""Narration outputs: the JSONL event log, WebVTT/SRT subtitles and a captioned video.

The event log is written line by line and flushed, so even a crash leaves whole lines.
Subtitles and video are written to a temp name and renamed when complete. Every output
path is checked for writing before any work starts (``check_outputs``): a folder we cannot
write is one line naming the path and the fix, not a run that ends with nothing written.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Callable

import cv2
import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import probe_writable

EVENTS = ("frame", "frame_issue", "caption", "answer", "spoken", "skip_unchanged", "skip_duplicate",
          "source_lost", "source_back", "source_skipped", "source_ended_early", "summary")


def _prepare(path: str, option: str) -> None:
    """Make the output's folder; a path we cannot write is the user's to fix, said plainly."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as exc:
        raise EdgeVLMError(f"{option} {path}: cannot create its folder ({exc.strerror})") from exc


def _check_folder(folder: str, option: str, path: str) -> None:
    """Make ``folder`` and prove it writable (``fileio.probe_writable``: right for root,
    read-only mounts and ACLs alike, where ``os.access`` is not)."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise EdgeVLMError(f"{option} {path}: cannot create {folder} ({exc.strerror}); "
                           "choose a folder you can write to") from exc
    try:
        probe_writable(folder)
    except OSError as exc:
        raise EdgeVLMError(f"{option} {path}: cannot write in {folder} ({exc.strerror}); "
                           "choose a folder you can write to, or fix its permissions") from exc


def check_outputs(audio_out: str | None = None, events: str | None = None, subtitles: str | None = None,
                  video_out: str | None = None) -> None:
    """Before any work: every output narration will write can be written (folders made)."""
    if audio_out:
        if os.path.exists(audio_out) and not os.path.isdir(audio_out):
            raise EdgeVLMError(f"--audio-out {audio_out}: is a file; give a folder for the WAV files")
        _check_folder(audio_out, "--audio-out", audio_out)
    for option, path in (("--events", events), ("--subtitles", subtitles), ("--video-out", video_out)):
        if not path:
            continue
        if os.path.isdir(path):
            raise EdgeVLMError(f"{option} {path}: is a folder; give a file name")
        _check_folder(os.path.dirname(os.path.abspath(path)), option, path)


class EventLog:
    """Narration events as JSON objects: one line each in ``path`` (if given), and each passed to
    ``sink`` (if given: ``edgevlm serve`` publishes them on a stream's server-sent events)."""

    def __init__(self, path: str | None, sink: Callable[[dict], None] | None = None):
        self.path, self.sink = path, sink
        self._file = None
        if path:
            _prepare(path, "--events")
            try:
                self._file = open(path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 (closed in close())
            except OSError as exc:
                raise EdgeVLMError(f"--events {path}: cannot write it ({exc.strerror})") from exc
        self.counts = {name: 0 for name in EVENTS}
        self._lock = threading.Lock()  # the inference and speech threads both write

    def write(self, event: str, t: float, **fields) -> None:
        assert event in EVENTS, event
        record = {"event": event, "t": round(t, 3), "wall": round(time.time(), 3), **fields}
        line = json.dumps(record) + "\n"
        with self._lock:
            self.counts[event] += 1
            if self._file:
                self._file.write(line)
            if self.sink is not None:  # under the lock: subscribers see events in the order they were logged
                self.sink(record)

    def close(self) -> None:
        with self._lock:
            if self._file:
                self._file.close()
                self._file = None


def _timestamp(seconds: float, srt: bool) -> str:
    ms = int(round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if srt else '.'}{ms:03d}"


def write_subtitles(path: str, cues: list[tuple[float, str]], end_t: float, max_cue: float = 6.0) -> None:
    """cues: (stream time, text) in order; each shows until the next or ``max_cue`` seconds."""
    srt = path.lower().endswith(".srt")
    if not srt and not path.lower().endswith(".vtt"):
        raise EdgeVLMError(f"--subtitles {path}: use a .vtt or .srt file name")
    lines = [] if srt else ["WEBVTT", ""]
    cues = sorted(cues, key=lambda cue: cue[0])  # a held caption may be said after a later answer
    for index, (start, text) in enumerate(cues):
        following = cues[index + 1][0] if index + 1 < len(cues) else end_t
        end = max(start + 0.5, min(following, start + max_cue))
        if srt:
            lines.append(str(index + 1))
        lines += [f"{_timestamp(start, srt)} --> {_timestamp(end, srt)}", text, ""]
    _prepare(path, "--subtitles")
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    os.replace(tmp, path)


class CaptionedVideo:
    """Frames with the current narration drawn on, to an .mp4 (renamed into place on close)."""

    def __init__(self, path: str, fps: float):
        _prepare(path, "--video-out")
        self.path, self.fps = path, fps
        self.tmp = path + ".part.mp4"
        self._writer: cv2.VideoWriter | None = None
        self.frames_written = 0

    def write_at(self, image: np.ndarray, text: str, t: float) -> None:
        """Write ``image`` as the frame for stream time ``t`` (seconds from the first frame),
        repeating it to fill frames a live source skipped, so the video keeps real time."""
        target = int(round(t * self.fps)) + 1
        self.write(image, text)
        while self.frames_written < target:
            self.write(image, text)

    def write(self, image: np.ndarray, text: str) -> None:
        if self._writer is None:
            h, w = image.shape[:2]
            writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not writer.isOpened():
                raise EdgeVLMError(f"--video-out {self.path}: cannot write it (is the folder writable? "
                                   "does this OpenCV have the mp4v encoder?)")
            self._writer = writer
        frame = image.copy()
        if text:
            h, w = frame.shape[:2]
            scale = max(0.4, w / 1200)
            cv2.rectangle(frame, (0, h - int(40 * scale) - 10), (w, h), (0, 0, 0), -1)
            cv2.putText(frame, text, (8, h - 12), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        self._writer.write(frame)
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            if os.path.exists(self.tmp):
                os.replace(self.tmp, self.path)
