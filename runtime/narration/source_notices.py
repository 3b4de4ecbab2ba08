"""What narration says when the camera itself changes: it is gone, it is back.

A blind user cannot see a frozen picture or a dark preview; silence would read as "nothing
has changed". So a lost live source is said once ("camera disconnected, reconnecting") and
its return once ("camera back"), ahead of any caption, never dropped for a newer one.
Damage in a video file is a warning for the console, not speech.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevlm.runtime.narration.policy import Utterance
from edgevlm.runtime.stream_items import BACK, ENDED_EARLY, LOST, SKIPPED, SourceChange

LOST_TEXT = "camera disconnected, reconnecting"
BACK_TEXT = "camera back"
ANSWER_WHILE_LOST = "The camera is disconnected; I cannot see anything right now."

# SourceChange.kind -> the event name in the JSONL log
EVENT_NAMES = {LOST: "source_lost", BACK: "source_back", SKIPPED: "source_skipped", ENDED_EARLY: "source_ended_early"}


@dataclass
class SourceNotice(Utterance):
    """A spoken notice about the source; said before captions, never replaced by one."""

    kind: str = LOST  # LOST | BACK


def notice_for(change: SourceChange, captured_at: float) -> SourceNotice | None:
    """The notice to say for ``change``, or None when it is not for speech (file damage)."""
    text = {LOST: LOST_TEXT, BACK: BACK_TEXT}.get(change.kind)
    return SourceNotice(text, change.t, captured_at, kind=change.kind) if text else None
