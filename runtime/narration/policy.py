"""What to say and when, on the stream clock (seconds of video or camera time).

- never say a caption that means the same as the last one said (content-word similarity,
  threshold measured on real caption pairs: DESIGN.md);
- at least ``min_gap`` seconds between utterances; a caption that arrives sooner waits,
  and a newer caption replaces it (newest wins: a stale caption is never said late);
- optionally say the last caption again after ``reannounce_after`` seconds of silence.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevlm.runtime.narration.similarity import caption_similarity


@dataclass(frozen=True)
class PolicySettings:
    same_meaning: float = 0.3  # similarity at or above which two captions say the same thing
    min_gap: float = 2.0  # seconds between the starts of two utterances
    reannounce_after: float | None = None  # off by default


@dataclass
class Utterance:
    text: str
    t: float  # stream time of the frame it describes
    captured_at: float  # monotonic time that frame was captured
    reannounce: bool = False


class NarrationPolicy:
    def __init__(self, settings: PolicySettings = PolicySettings()):
        self.settings = settings
        self.last_said: Utterance | None = None
        self.last_said_t: float | None = None  # stream time it was released for speech
        self.pending: Utterance | None = None
        self.replaced = 0  # captions dropped because a newer one arrived during the gap

    def offer(self, utterance: Utterance) -> str:
        """A new caption -> "duplicate" (dropped), "queued" (waits for the gap) or "ready"."""
        # Judged against what the listener heard last; a caption waiting for the gap is
        # simply replaced by the newer one (newest wins).
        if self.last_said is not None and caption_similarity(utterance.text, self.last_said.text) >= self.settings.same_meaning:
            if self.pending is not None:  # the scene went back to what was said: drop the stale one too
                self.pending = None
                self.replaced += 1
            return "duplicate"
        if self.pending is not None:
            self.replaced += 1
        self.pending = utterance
        return "queued"

    def release(self, now_t: float) -> Utterance | None:
        """The utterance to speak at stream time ``now_t``, if the gap allows one."""
        gap_ok = self.last_said_t is None or now_t - self.last_said_t >= self.settings.min_gap
        if self.pending is not None and gap_ok:
            utterance, self.pending = self.pending, None
            self.last_said, self.last_said_t = utterance, now_t
            return utterance
        after = self.settings.reannounce_after
        if self.pending is None and after is not None and self.last_said is not None and now_t - self.last_said_t >= after:
            self.last_said_t = now_t
            return Utterance(self.last_said.text, now_t, self.last_said.captured_at, reannounce=True)
        return None
