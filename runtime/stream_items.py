"""What a frame source hands out: frames, and changes of the source itself (a live camera
lost or back, a damaged stretch of a video file skipped, a file that ended early), plus the
counters a run's summary reports about its source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# SourceChange.kind values
LOST = "lost"  # a live source stopped delivering frames; reconnecting
BACK = "back"  # frames again after LOST
SKIPPED = "skipped"  # a video file's damaged stretch was skipped
ENDED_EARLY = "ended_early"  # a video file stopped before its container's frame count


@dataclass
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 BGR
    t: float  # stream time, seconds (video position; for live sources, since opening)
    index: int  # frame number in the stream
    captured_at: float  # time.monotonic() when the frame was read
    label: str  # what to call it in output: the file path, or "SOURCE@t"


@dataclass(frozen=True)
class SourceChange:
    """A change of the source between frames, in stream order with them."""

    kind: str  # LOST | BACK | SKIPPED | ENDED_EARLY
    t: float  # stream time, seconds, when it was noticed
    message: str  # one line for a person: what happened
    details: dict = field(default_factory=dict)  # for the event log (seconds, frame numbers, reason)


@dataclass
class SourceStats:
    """Counters about the source, for the summary. Live: losses, returns, reopen attempts and
    seconds without frames. Files: failed reads inside the video, stream seconds skipped over
    damage, the container's frame count and whether the video stopped short of it."""

    source_lost: int = 0
    source_back: int = 0
    reconnect_attempts: int = 0
    seconds_without_source: float = 0.0
    decode_errors: int = 0
    seconds_skipped: float = 0.0
    frames_expected: int | None = None
    ended_early: bool = False
