"""Tune the scene gate on real videos: how often would each setting run the decoder?

    python -m edgevlm.scripts.tune_gate VIDEO... [--engine DIR]

Runs the vision graph on every frame once, prints the distribution of frame-to-frame
cosine distances of the pooled embeddings, then replays the gate for a grid of settings
and prints captions per minute of video for each (torch-free).
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np

from edgevlm.paths import resolve_engine
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.narration.scene_gate import GateSettings, SceneGate, cosine_distance
from edgevlm.runtime.sources import FrameSource


def pooled_track(engine: CaptionEngine, video: str) -> tuple[np.ndarray, np.ndarray]:
    """-> stream times (N,), pooled embeddings (N, C) of every frame."""
    times, pooled = [], []
    with FrameSource(video) as source:
        for frame in source.frames():
            times.append(frame.t)
            pooled.append(engine.encode(engine.preprocess(frame.image)[None])[1][0])
    return np.array(times), np.stack(pooled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--engine", default=None)
    args = parser.parse_args()
    engine = CaptionEngine(resolve_engine(args.engine), threads=2)
    for video in args.videos:
        times, pooled = pooled_track(engine, video)
        steps = [cosine_distance(a, b) for a, b in zip(pooled, pooled[1:])]
        print(json.dumps({"video": video, "frames": len(times), "seconds": round(float(times[-1]), 2),
                          "step_distance_percentiles": {q: round(float(np.percentile(steps, q)), 4)
                                                        for q in (50, 90, 99)}}))
        minutes = max(times[-1] / 60.0, 1e-9)
        for change, settle, wait in itertools.product((0.05, 0.1, 0.15, 0.2), (0.02, 0.05), (1.5, 3.0)):
            gate = SceneGate(GateSettings(change=change, settle=settle, max_wait=wait))
            captions = sum(gate.update(p, t).caption for p, t in zip(pooled, times))
            print(json.dumps({"video": video, "change": change, "settle": settle, "max_wait": wait,
                              "captions": captions, "captions_per_minute": round(captions / minutes, 1)}))


if __name__ == "__main__":
    main()
