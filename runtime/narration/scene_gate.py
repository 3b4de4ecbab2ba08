"""Scene-change gating on pooled visual embeddings, with hysteresis: the decoder runs only
when what the camera sees has changed, so a still scene costs one caption, not thirty a
second.

States: STABLE (the last caption still describes the scene) and CHANGING (the scene moved
away from the captioned one). STABLE -> CHANGING when the cosine distance to the embedding
that was last captioned exceeds ``change``. From CHANGING a caption is requested once the
view settles (distance between consecutive frames below ``settle``) or ``max_wait``
seconds have passed (a continuously moving view still gets narrated). The two thresholds
are the hysteresis: small jitter around one threshold never toggles captions on and off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 - float(np.dot(a, b)) / denom if denom > 0 else 1.0


@dataclass(frozen=True)
class GateSettings:
    # Tuned on the sample videos (python -m edgevlm.scripts.tune_gate; DESIGN.md): on the
    # fixed street camera of vtest.avi, frame-to-frame distance is 0.014 at p50, 0.056 at p99.
    change: float = 0.15  # distance from the captioned scene that counts as a new scene
    settle: float = 0.02  # frame-to-frame distance under which the view has settled
    max_wait: float = 1.5  # stream seconds to wait for settling before captioning anyway


@dataclass
class GateDecision:
    caption: bool
    reason: str  # "first", "settled", "timeout", "unchanged", "changing"
    distance: float  # to the last captioned embedding


class SceneGate:
    def __init__(self, settings: GateSettings = GateSettings()):
        self.settings = settings
        self._captioned: np.ndarray | None = None  # embedding of the last captioned frame
        self._previous: np.ndarray | None = None
        self._changing_since: float | None = None

    def reset(self) -> None:
        self._captioned = self._previous = None
        self._changing_since = None

    def update(self, embedding: np.ndarray, t: float) -> GateDecision:
        """embedding: (C,) pooled features of the frame at stream time ``t`` (seconds)."""
        s = self.settings
        previous, self._previous = self._previous, embedding
        if self._captioned is None:
            self._captioned = embedding
            return GateDecision(True, "first", 1.0)
        distance = cosine_distance(embedding, self._captioned)
        if self._changing_since is None:
            if distance <= s.change:
                return GateDecision(False, "unchanged", distance)
            self._changing_since = t
        elif distance <= s.settle:  # it came back to the captioned scene: nothing new to say
            self._changing_since = None
            return GateDecision(False, "unchanged", distance)
        step = cosine_distance(embedding, previous) if previous is not None else 1.0
        if step <= s.settle or t - self._changing_since >= s.max_wait:
            reason = "settled" if step <= s.settle else "timeout"
            self._captioned, self._changing_since = embedding, None
            return GateDecision(True, reason, distance)
        return GateDecision(False, "changing", distance)
