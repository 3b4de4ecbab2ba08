"""Where a caption's time goes outside the graphs: ``python -m edgevlm.scripts.caption_path_profile``.

Prints one table, ms per caption (median over ``--rounds`` x the images), for greedy, beam 3,
and narration's own path (its beam, 4 where the engine has a caption memory, the candidates
re-ranked by it, one view: runtime/narration/pipeline.py): file decode, frame check, resize,
normalise, the vision and cross-K/V graphs, then
the search split into onnxruntime's own run (``session.run``), the backend's feed checks,
the stepper's work (feeds, cache write), the caption memory's re-ranking (nearest photos and
consensus) and the search's Python (masks, argmax, beams; the concept bias, the beams'
cross-K/V copy and the candidates' decoding for the memory included); each row is a median on
its own, so
the parts need not add up to the total;
tokenizer decode last. Then bytes allocated per decoder step (tracemalloc: the transient
high-water mark of one search iteration, step included) and cProfile's top items of whole
captions (``caption_images``: at beam 3 with a caption memory that is both views and the
re-ranking), by own time.

The split comes from timing wrappers put on one engine's backend and stepper instances
(nothing is patched globally): each wrapper adds ~1 us per call, small next to a step.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
import tracemalloc
from collections import defaultdict

import numpy as np

from edgevlm.paths import resolve_engine, sample_images_dir
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.frame_quality import assess_frame
from edgevlm.runtime.narration.pipeline import narration_beam
from edgevlm.runtime.preprocess import area_resize, read_image_bgr

ROWS = ("read", "frame_check", "resize", "normalise", "vision", "cross_kv", "search_ort_run", "search_feed_checks",
        "search_stepper", "memory_rerank", "search_python", "search_total", "tokenizer_decode", "caption_total")


def columns(engine: CaptionEngine) -> list[tuple[str, int, bool]]:
    """(title, beam, re-ranked by the caption memory) of each column: greedy, beam 3, and what
    narration runs on ``engine`` (pipeline.narration_beam: beam 4 re-ranked where it has a
    caption memory, else greedy)."""
    return [("greedy", 1, False), ("beam 3", 3, False), ("narration", narration_beam(engine, None), engine.reranks)]


class Timers:
    """Seconds accumulated per name; ``wrap`` times a bound method of one object."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, obj, method: str, name: str) -> None:
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t
                self.calls[name] += 1

        setattr(obj, method, timed)


def instrument(engine: CaptionEngine) -> Timers:
    """Timing wrappers on ``engine``'s backend (run and run_prechecked: checks + ORT; _run:
    ORT alone, per graph), on every stepper it hands out (step, prefill, reorder) and on its
    caption memory's re-ranking, where it has one."""
    timers = Timers()
    backend = engine.backend
    inner_run = backend._run

    def ort_run(graph, feeds):
        t = time.perf_counter()
        try:
            return inner_run(graph, feeds)
        finally:
            timers.seconds[f"ort:{graph}"] += time.perf_counter() - t
            timers.calls[f"ort:{graph}"] += 1

    backend._run = ort_run
    timers.wrap(backend, "run", "backend_run")
    timers.wrap(backend, "run_prechecked", "backend_run")  # later steps: their feeds were checked once
    inner_stepper = backend.decoder_stepper

    def stepper(cross_k, cross_v):
        s = inner_stepper(cross_k, cross_v)
        for method in ("step", "prefill", "reorder"):
            timers.wrap(s, method, "stepper")
        return s

    backend.decoder_stepper = stepper
    if engine.caption_memory is not None:  # loaded here, not inside a timed search
        timers.wrap(engine.caption_memory, "choose", "memory_rerank")
    return timers


def profile_caption(engine: CaptionEngine, timers: Timers, path: str, beam: int, rerank: bool = False) -> dict[str, float]:
    """One caption of the file at ``path``, stage by stage, on one view -> ms per row; with
    ``rerank`` the candidates are re-ranked by the engine's caption memory (where it has one)
    as narration does, else not."""
    timers.seconds.clear()
    timers.calls.clear()
    out = {}
    t0 = t = time.perf_counter()
    image = read_image_bgr(path)
    out["read"], t = time.perf_counter() - t, time.perf_counter()
    assess_frame(image)
    out["frame_check"], t = time.perf_counter() - t, time.perf_counter()
    size = engine.manifest.preprocess.image_size
    area_resize(image, size, size)  # what preprocess does first
    out["resize"], t = time.perf_counter() - t, time.perf_counter()
    pixels = engine.preprocess(image)[None]
    out["normalise"] = max(time.perf_counter() - t - out["resize"], 0.0)  # preprocess = resize + this
    t = time.perf_counter()
    sight = engine.see(pixels)
    out["vision"], t = time.perf_counter() - t, time.perf_counter()
    cross_k, cross_v = engine.cross_kv(sight.visual)
    out["cross_kv"] = time.perf_counter() - t
    timers.seconds.clear()
    t = time.perf_counter()
    ids = engine.generate(sight.visual, engine.settings(beam), sight.concepts,  # runs cross_kv again, inside
                          sight.pooled if rerank and engine.reranks else None)  # pooled: the memory re-ranks
    total = time.perf_counter() - t
    ort_all = sum(v for k, v in timers.seconds.items() if k.startswith("ort:"))
    ort_decoder = ort_all - timers.seconds["ort:cross_kv"]  # "decoder" and, where exported, "decoder_step"
    out["search_ort_run"] = ort_decoder
    out["search_feed_checks"] = timers.seconds["backend_run"] - ort_all
    out["search_stepper"] = timers.seconds["stepper"] - (timers.seconds["backend_run"] - timers.seconds["ort:cross_kv"])
    out["memory_rerank"] = timers.seconds["memory_rerank"]
    out["search_python"] = total - timers.seconds["stepper"] - timers.seconds["ort:cross_kv"] - out["memory_rerank"]
    out["search_total"] = total - timers.seconds["ort:cross_kv"]
    t = time.perf_counter()
    engine.tokenizer.decode(ids[0])
    out["tokenizer_decode"] = time.perf_counter() - t
    out["caption_total"] = time.perf_counter() - t0 - out["cross_kv"]  # the cross_kv above is counted once
    out["steps"] = timers.calls.get("stepper", 0)
    out["non_ort_per_step"] = (out["search_total"] - out["search_ort_run"]) / max(out["steps"], 1)
    return {k: v * 1000 if k != "steps" else v for k, v in out.items()}


def bytes_per_step(engine: CaptionEngine, path: str, beam: int) -> tuple[float, float]:
    """(mean KB, max KB) transient allocation high-water per search iteration (tracemalloc,
    numpy's buffers included), measured between consecutive decoder steps."""
    sight = engine.see(engine.preprocess(read_image_bgr(path))[None])
    inner_stepper = engine.backend.decoder_stepper
    peaks: list[int] = []

    def stepper(cross_k, cross_v):
        s = inner_stepper(cross_k, cross_v)
        inner_step = s.step

        def step(tokens, position):
            current, peak = tracemalloc.get_traced_memory()
            if position > 0:
                peaks.append(peak - step.base)
            step.base = current
            tracemalloc.reset_peak()
            return inner_step(tokens, position)

        step.base = 0
        s.step = step
        return s

    engine.backend.decoder_stepper = stepper
    tracemalloc.start()
    try:
        engine.generate(sight.visual, engine.settings(beam), sight.concepts)
    finally:
        tracemalloc.stop()
        engine.backend.decoder_stepper = inner_stepper
    return float(np.mean(peaks)) / 1024, float(np.max(peaks)) / 1024


def top_items(engine: CaptionEngine, paths: list[str], beam: int, rounds: int, limit: int) -> str:
    """cProfile of ``rounds`` x captions of the images (decoded beforehand), top ``limit`` by own time."""
    images = [read_image_bgr(p) for p in paths]
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(rounds):
        for image in images:
            engine.caption_images([image], beam)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(limit)
    lines = text.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    return "\n".join(lines[start - 2: start + limit + 1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default=None)
    parser.add_argument("--images", default=None, help="image folder (default: the shipped samples)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15, help="cProfile items to print (0: none)")
    args = parser.parse_args(argv)
    folder = args.images or sample_images_dir()
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                   if name.lower().endswith((".jpg", ".jpeg", ".png")))
    engine = CaptionEngine(resolve_engine(args.engine), threads=args.threads)
    timers = instrument(engine)
    table, titled = [], columns(engine)
    for _, beam, rerank in titled:
        for path in paths:  # warm-up: caches allocated, sessions hot, each image's memory neighbours read
            profile_caption(engine, timers, path, beam, rerank)
        rows = [profile_caption(engine, timers, p, beam, rerank) for _ in range(args.rounds) for p in paths]
        table.append({k: float(np.median([r[k] for r in rows])) for k in (*ROWS, "steps", "non_ort_per_step")})
    _, narration, reranked = titled[-1]
    print(f"caption path, ms per caption (median of {args.rounds} rounds x {len(paths)} images, "
          f"{args.threads} threads; narration: beam {narration}"
          f"{', re-ranked by the caption memory' if reranked else ' (the engine has no caption memory)'})")
    print(f"{'stage':<20}" + "".join(f" {title:>9}" for title, _, _ in titled))
    for row in ROWS:
        print(f"{row:<20}" + "".join(f" {column[row]:9.3f}" for column in table))
    print(f"{'decoder steps':<20}" + "".join(f" {column['steps']:9.0f}" for column in table))
    print(f"{'non-ORT ms / step':<20}" + "".join(f" {column['non_ort_per_step']:9.3f}" for column in table))
    plain = CaptionEngine(resolve_engine(args.engine), threads=args.threads)  # uninstrumented
    for beam in (1, 3):
        mean_kb, max_kb = bytes_per_step(plain, paths[0], beam)
        print(f"allocated per step, beam {beam}: {mean_kb:.1f} KB mean, {max_kb:.1f} KB max (tracemalloc high-water)")
    if args.top:
        for beam in (1, 3):
            print(f"\ncProfile, {args.rounds} x {len(paths)} captions at beam {beam}, top {args.top} by own time:")
            print(top_items(plain, paths, beam, args.rounds, args.top))


if __name__ == "__main__":
    main()
