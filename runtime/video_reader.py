"""Reading a video file frame by frame, in order, past damaged stretches.

``read()`` returning False means either the end of the file or that FFmpeg could not decode
the next packet; the container's frame count (``CAP_PROP_FRAME_COUNT``) tells them apart.
What OpenCV 5.0's FFmpeg backend does on a 10 s clip with random bytes over its middle third
(measured, tests/runtime/test_corrupt_video.py):

- mp4 (mp4v): 35 frames, then 34 failed reads (each consumes one damaged packet; the
  position stays at frame 35), then frames again from 6.9 s: reading on recovers, seeking
  does not (a seek lands on the keyframe before the damage and fails again);
- avi (MJPG, XVID): ~65 frames, then every read fails (the demuxer lost its place), but a
  seek (``CAP_PROP_POS_MSEC``) to just past the failure reads again at once. Frames 32-64
  of the MJPG clip lie in the garbage yet "decode" (FFmpeg conceals JPEG errors): no error
  reaches us for them, so they are narrated as whatever they look like.

So on a failure short of the frame count, this reader first reads on (up to
``READ_ON_SECONDS`` of frames), then seeks forward 1, 2, 4 ... frames and on in steps of
``SEEK_STEP_S`` (at least 1% of the duration, so a long file needs at most ~100 seeks)
until a frame decodes or the end is reached. Each stretch skipped and an end before the frame count are reported as
``SourceChange``s; a file of which nothing at all can be read is an error.
"""

from __future__ import annotations

import time
from typing import Iterator

import cv2

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.stream_items import ENDED_EARLY, SKIPPED, Frame, SourceChange, SourceStats

READ_ON_SECONDS = 10.0  # failed reads tried in a row before seeking, in seconds of frames
SEEK_STEP_S = 1.0  # smallest forward seek past damage, seconds
SEEK_READS = 3  # reads tried after each seek
END_SLACK = 0.01  # an estimated frame count may be this much (fraction) above the real one


class VideoFileReader:
    """Frames of ``capture`` (an opened video file) in order, damaged stretches skipped."""

    def __init__(self, capture: cv2.VideoCapture, spec: str, fps: float | None):
        self.capture, self.spec, self.fps = capture, spec, fps
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.stats = SourceStats(frames_expected=count if count > 0 else None)

    def items(self) -> Iterator[Frame | SourceChange]:
        """Frames (index = position in the video) and SKIPPED / ENDED_EARLY changes."""
        index, delivered = 0, 0  # index: the next frame's position in the video
        while True:
            ok, image = self.capture.read()
            if not ok:
                if self._at_end(index):
                    break
                found = self._skip_damage(index)
                if found is None:
                    break
                resumed, image = found
                yield SourceChange(SKIPPED, self._t(index), f"video {self.spec}: frames {index}-{resumed - 1} "
                                   f"({self._t(index):.1f}-{self._t(resumed):.1f} s) could not be decoded; skipped",
                                   {"from_t": round(self._t(index), 3), "to_t": round(self._t(resumed), 3),
                                    "frames": resumed - index})
                self.stats.seconds_skipped += self._t(resumed) - self._t(index)
                index = resumed
            t = self._t(index) if self.fps else self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            yield Frame(image, t, index, time.monotonic(), f"{self.spec}@{t:.2f}s")
            index, delivered = index + 1, delivered + 1
        if delivered == 0:
            raise EdgeVLMError(f"cannot read frames from video {self.spec}: empty or undecodable")
        if not self._at_end(index):
            self.stats.ended_early = True
            expected = self.stats.frames_expected
            yield SourceChange(ENDED_EARLY, self._t(index), f"video {self.spec} ended at {self._t(index):.1f} s of "
                               f"{self._t(expected):.1f} s (frame {index} of {expected}): "
                               "the rest could not be decoded",
                               {"frames_expected": expected, "frames_reached": index})
        self.stats.seconds_skipped = round(self.stats.seconds_skipped, 2)

    def _t(self, index: int) -> float:
        return index / self.fps if self.fps else 0.0

    def _at_end(self, index: int) -> bool:
        """True when a failed read at ``index`` is the end of the file, not damage: no frame
        count to compare with (nothing else to go on), or at the count within its slack."""
        expected = self.stats.frames_expected
        return expected is None or not self.fps or index >= expected * (1 - END_SLACK) - 1

    def _skip_damage(self, index: int):
        """(position, image) of the first frame that decodes after a failed read at ``index``,
        or None when nothing more can be read. Counts every failed read in ``decode_errors``."""
        self.stats.decode_errors += 1
        for _ in range(int(READ_ON_SECONDS * self.fps)):  # mp4: each failed read moves past one packet
            ok, image = self.capture.read()
            if ok:
                return self._position(index), image
            self.stats.decode_errors += 1
        for target in self._seek_targets(index):  # avi: a seek past the failure finds the index entry again
            if self.capture.set(cv2.CAP_PROP_POS_MSEC, target / self.fps * 1000.0):
                for _ in range(SEEK_READS):
                    ok, image = self.capture.read()
                    if ok:
                        return self._position(target), image
                    self.stats.decode_errors += 1
        return None

    def _seek_targets(self, index: int) -> Iterator[int]:
        """Frame numbers to seek to after a failure at ``index``: 1, 2, 4 ... frames on (so a
        short gap costs little video), then steps of SEEK_STEP_S (or 1% of the video), and the
        last frame."""
        expected = self.stats.frames_expected
        step = max(1, int(max(SEEK_STEP_S, 0.01 * expected / self.fps) * self.fps))
        target, gap = index + 1, 1
        while target < expected - 1:
            yield target
            target, gap = target + gap, min(gap * 2, step)
        yield expected - 1

    def _position(self, at_least: int) -> int:
        """The frame number of the frame just read, from its timestamp (the frame counter
        stops during failed reads); never before ``at_least``."""
        position = int(round(self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 * self.fps))
        return max(position, at_least)
