"""``edgevlm bench``: the runtime against PyTorch eager (or another engine), side by side.

Runs are interleaved image by image, so machine noise hits both peers alike. Cold start and
peak RSS come from a fresh runtime-only subprocess (it never imports torch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np

from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.preprocess import read_image_bgr

# A fresh interpreter: prints the wall-clock time of its first caption, then peak RSS after
# captioning every image once.
_CHILD = r"""
import json, sys, time
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.preprocess import read_image_bgr
engine = CaptionEngine(sys.argv[1], threads=int(sys.argv[2]))
images = [read_image_bgr(p) for p in sys.argv[4:]]
engine.caption_images(images[:1], int(sys.argv[3]))
first = time.time()
for image in images:
    engine.caption_images([image], int(sys.argv[3]))
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the forking parent.
# RssAnon / RssFile: of the resident memory now, the process's own (anonymous) and the mapped
# files' (mostly shared libraries: how many of their pages are resident varies with the kernel
# and its page cache, 36-71 MB for the same imports on one machine).
status = {line.split(":")[0]: int(line.split()[1]) for line in open("/proc/self/status")
          if line.startswith(("VmHWM", "RssAnon", "RssFile"))}
print(json.dumps({"first_caption_at": first, "peak_rss_mb": status["VmHWM"] / 1024,
                  "anon_rss_mb": status["RssAnon"] / 1024, "file_rss_mb": status["RssFile"] / 1024,
                  "torch_loaded": "torch" in sys.modules}))
"""


# Times captions in a fresh process with spinning on or off: two sessions in one process
# would interfere (one's spinning threads steal the cores from the other).
_SPIN_CHILD = r"""
import json, sys, time
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.preprocess import read_image_bgr
engine = CaptionEngine(sys.argv[1], threads=int(sys.argv[2]), spinning=sys.argv[3] == "1")
images = [read_image_bgr(p) for p in sys.argv[5:]]
for image in images:
    engine.caption_images([image], int(sys.argv[4]))
times = []
for _ in range(5):
    for image in images:
        t = time.perf_counter()
        engine.caption_images([image], int(sys.argv[4]))
        times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def spinning_comparison(engine_dir: str, image_paths: list[str], threads: int, beam: int, rounds: int = 3) -> dict:
    """Per-caption p50 with onnxruntime's intra-op spinning off (our default) and on, each in
    its own process, alternating ``rounds`` times."""
    times = {"0": [], "1": []}
    for _ in range(rounds):
        for spin in ("0", "1"):
            out = subprocess.run([sys.executable, "-c", _SPIN_CHILD, engine_dir, str(threads), spin, str(beam),
                                  *image_paths], capture_output=True, text=True, check=True)
            times[spin] += json.loads(out.stdout.strip().splitlines()[-1])
    off, on = percentiles_ms(times["0"])[0], percentiles_ms(times["1"])[0]
    return {"spinning_off_ms_p50": off, "spinning_on_ms_p50": on, "spinning_cost": round(on / off, 2)}


def runtime_process_stats(engine_dir: str, image_paths: list[str], threads: int, beam: int) -> dict:
    """cold_start_s (spawn -> first caption), peak_rss_mb and, at the end, the resident memory
    split into the process's own (anon) and mapped files' of a runtime-only process, started
    as an installed edgevlm starts: its bytecode compiled (pip compiles it at install; an
    editable checkout under PYTHONDONTWRITEBYTECODE, as here, would recompile every module at
    each start, ~80 ms) and this machine's optimized graphs kept (optimized_graphs.py).
    Bytecode and graphs go to a scratch folder, so every run starts from the same state: an
    untimed start compiles the bytecode, the next makes the graphs (its time: first_start_s,
    what a machine's very first start costs), the third is the cold start."""
    with tempfile.TemporaryDirectory(prefix="edgevlm-bench-") as scratch:
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPYCACHEPREFIX=os.path.join(scratch, "bytecode"), EDGEVLM_CACHE_DIR=os.path.join(scratch, "cache"))
        _runtime_child(engine_dir, image_paths, threads, beam, dict(env, EDGEVLM_GRAPH_CACHE="0"))
        first, first_stats = _runtime_child(engine_dir, image_paths, threads, beam, env)
        spawned, stats = _runtime_child(engine_dir, image_paths, threads, beam, env)
    return {"cold_start_s": round(stats["first_caption_at"] - spawned, 3),
            "first_start_s": round(first_stats["first_caption_at"] - first, 3),
            "runtime_peak_rss_mb": round(stats["peak_rss_mb"], 1), "runtime_anon_rss_mb": round(stats["anon_rss_mb"], 1),
            "runtime_file_rss_mb": round(stats["file_rss_mb"], 1), "runtime_imported_torch": stats["torch_loaded"]}


def _runtime_child(engine_dir: str, image_paths: list[str], threads: int, beam: int, env: dict) -> tuple[float, dict]:
    """(spawn time, the child's stats) of one runtime-only process."""
    spawned = time.time()
    out = subprocess.run([sys.executable, "-c", _CHILD, engine_dir, str(threads), str(beam), *image_paths],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"runtime subprocess failed: {out.stderr.strip().splitlines()[-1:]}")
    return spawned, json.loads(out.stdout.strip().splitlines()[-1])


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1000
    return round(float(np.percentile(ms, 50)), 2), round(float(np.percentile(ms, 90)), 2)


def graph_timings(engine: CaptionEngine, pixels: np.ndarray, repeats: int = 20, steps: int = 10) -> dict:
    """Median ms of each graph for one image: vision, cross K/V, one decoder step, in a
    caption's order (so the vision graph runs after the previous repeat's steps, as a caption
    after the last: ~0.2 ms slower than back to back on a 2-core EPYC). 20 repeats: with 5
    the vision median moved 2.76-3.15 ms between runs of the same engine there, with 20
    2.72-2.75."""
    samples = {"vision_ms": [], "cross_kv_ms": [], "decoder_step_ms": []}
    token = np.array([engine.manifest.special_tokens.bos], np.int64)
    for _ in range(repeats):
        t = time.perf_counter()
        visual, _ = engine.encode(pixels[:1])
        samples["vision_ms"].append(time.perf_counter() - t)
        t = time.perf_counter()
        cross_k, cross_v = engine.cross_kv(visual)
        samples["cross_kv_ms"].append(time.perf_counter() - t)
        stepper = engine.backend.decoder_stepper(cross_k, cross_v)
        t = time.perf_counter()
        for position in range(steps):
            stepper.step(token, position)
        samples["decoder_step_ms"].append((time.perf_counter() - t) / steps)
    return {k: round(float(np.median(v)) * 1000, 3) for k, v in samples.items()}


def interleaved(peers: dict[str, Callable[[np.ndarray], list[int]]], images: list[np.ndarray], rounds: int) -> dict:
    """Time each peer on each image in turn, ``rounds`` times -> {peer: (seconds list, ids list)}."""
    results = {name: ([], []) for name in peers}
    for name, fn in peers.items():  # warm-up: first runs pay for lazy initialisation
        fn(images[0])
    for round_index in range(rounds):
        for image in images:
            order = list(peers.items())
            if round_index % 2:
                order.reverse()  # alternate who goes first
            for name, fn in order:
                t = time.perf_counter()
                ids = fn(image)
                results[name][0].append(time.perf_counter() - t)
                if round_index == 0:
                    results[name][1].append(ids)
    return results


def runtime_peer(engine: CaptionEngine, beam: int | None) -> Callable[[np.ndarray], list[int]]:
    """The engine's caption as the PyTorch peer makes it: grounded (the concept head's word
    bans), one view, never re-ranked (the peer has no caption memory)."""
    settings = engine.settings(beam)

    def run(image_bgr: np.ndarray) -> list[int]:
        sight = engine.see(engine.preprocess(image_bgr)[None])
        return engine.generate(sight.visual, settings, sight.concepts)[0]

    return run


def torch_peer(model_dir: str, beam: int | None, threads: int) -> Callable[[np.ndarray], list[int]]:
    """PyTorch eager generation with its KV cache, through the same search code."""
    import torch

    from edgevlm.generate import concept_word_ids, generate_from_pixels, search_settings
    from edgevlm.model_io import load_model
    from edgevlm.runtime.preprocess import preprocess_with

    torch.set_num_threads(threads)
    model, tokenizer = load_model(model_dir)
    settings = search_settings(model.cfg, beam)
    concept_ids = concept_word_ids(model, tokenizer)  # grounded as the engine's captions: the same work

    def run(image_bgr: np.ndarray) -> list[int]:
        pixels = preprocess_with(image_bgr, model.cfg.preprocess)
        return generate_from_pixels(model, torch.from_numpy(pixels)[None], settings, concept_ids)[0]

    return run


# The transformers reference of each Hugging Face family that captions (blip-vqa answers only).
_HF_REFERENCES = {
    "vision-encoder-decoder": ("edgevlm.export.families.ved_reference", "VED_REFERENCE"),
    "git": ("edgevlm.export.families.git_reference", "GIT_REFERENCE"),
    "blip": ("edgevlm.export.families.blip_reference", "BLIP_CAPTION_REFERENCE"),
}


def hf_torch_peer(engine: CaptionEngine, model_dir: str, beam: int | None,
                  threads: int) -> Callable[[np.ndarray], list[int]]:
    """transformers' generate() on the Hugging Face folder an engine came from, with the
    engine's generate() settings, on the engine's own pixels (their parity is validate's job)."""
    import importlib

    import torch

    from edgevlm.errors import EdgeVLMError

    family = engine.manifest.model.family
    if family not in _HF_REFERENCES:
        raise EdgeVLMError(f"bench: a {family} engine does not caption, so it has no PyTorch caption peer")
    module, name = _HF_REFERENCES[family]
    reference = getattr(importlib.import_module(module), name)
    torch.set_num_threads(threads)
    model, _ = reference.load(model_dir)
    settings = engine.settings(beam)

    @torch.no_grad()
    def run(image_bgr: np.ndarray) -> list[int]:
        pixels = torch.from_numpy(engine.preprocess(image_bgr)[None])
        return reference.generate(model, pixels, settings, settings.num_beams)[0]

    return run


def default_peer_dir(engine: CaptionEngine) -> str:
    """The PyTorch peer when --model is not given: a Hugging Face engine's own source folder
    (the shipped captioner is another model), else the shipped model."""
    from edgevlm.paths import default_model_dir

    source = engine.manifest.source.get("model_dir")
    if engine.manifest.hf_generation is not None:
        if source and os.path.isdir(source):
            return source
        from edgevlm.errors import EdgeVLMError

        raise EdgeVLMError(f"the engine's source folder {source} is gone; pass --model HF_FOLDER")
    return default_model_dir()


def engine_size_mb(engine: CaptionEngine) -> float:
    return round(engine.manifest.total_bytes / 1e6, 2)


def bench(engine_dir: str, paths: list[str], rounds: int, beam: int, threads: int, vs_engine_dir: str | None = None,
          model_dir: str | None = None, compare_spinning: bool = False, floor: bool = True,
          modes: bool = True) -> dict:
    """The whole ``edgevlm bench`` report: the engine against ``vs_engine_dir``, else against
    PyTorch eager on ``model_dir``, on the images at ``paths``. ``floor``: also the floor
    under a caption (ops and bytes counted from the graphs, this machine's measured peaks,
    our ratio to it: bench_floor.py); ``modes``: also beam-3 captions and ``ask`` timings."""
    frames = [read_image_bgr(p) for p in paths]
    engine = CaptionEngine(engine_dir, threads=threads)
    peers = {"runtime": runtime_peer(engine, beam)}
    if vs_engine_dir:
        other = CaptionEngine(vs_engine_dir, threads=threads)
        peers["vs_engine"] = runtime_peer(other, beam)
    else:
        model_dir = model_dir or default_peer_dir(engine)
        if engine.manifest.hf_generation is not None:
            peers["torch"] = hf_torch_peer(engine, model_dir, beam, threads)
        else:
            peers["torch"] = torch_peer(model_dir, beam, threads)
    timed = interleaved(peers, frames, rounds)
    pixels = engine.preprocess(frames[0])[None]
    result = {"engine": engine_dir, "engine_precision": engine.manifest.precision, "images": len(frames),
              "rounds": rounds, "beam": beam, "threads": threads}
    p50, p90 = percentiles_ms(timed["runtime"][0])
    result.update(runtime_ms_p50=p50, runtime_ms_p90=p90, runtime_graphs=graph_timings(engine, pixels))
    result["mean_tokens"] = round(sum(len(i) + 1 for i in timed["runtime"][1]) / len(frames), 2)
    peer = "vs_engine" if vs_engine_dir else "torch"
    peer_p50, peer_p90 = percentiles_ms(timed[peer][0])
    result["tokens_identical"] = timed["runtime"][1] == timed[peer][1]
    result["token_agreement"] = round(sum(a == b for a, b in zip(timed["runtime"][1], timed[peer][1])) / len(frames), 4)
    if vs_engine_dir:
        result.update(vs_engine=vs_engine_dir, vs_engine_ms_p50=peer_p50, vs_engine_ms_p90=peer_p90,
                      # each engine's own pixels: a uint8-s2d2 variant's are not the FP32 export's
                      vs_engine_graphs=graph_timings(other, other.preprocess(frames[0])[None]),
                      engine_mb=engine_size_mb(engine), vs_engine_mb=engine_size_mb(other),
                      size_ratio=round(engine_size_mb(engine) / engine_size_mb(other), 3))
    else:
        result.update(torch_ms_p50=peer_p50, torch_ms_p90=peer_p90)
    result["speedup"] = round(peer_p50 / p50, 2)
    absolute = [os.path.abspath(p) for p in paths]
    result.update(runtime_process_stats(engine_dir, absolute, threads, beam))
    if compare_spinning:
        result.update(spinning_comparison(engine_dir, absolute, threads, beam))
    if modes:
        result.update(mode_timings(engine, frames, rounds))
    if floor:
        result["floor"] = floor_or_reason(engine, result, threads)
    return result


def mode_timings(engine: CaptionEngine, frames: list[np.ndarray], rounds: int) -> dict:
    """{"beam3": plain beam-3 caption timing, "ask": per-question timing (None: no VQA)}, and
    "default_caption" where the engine's default caption is another (a caption memory's beam
    16, re-ranked: what `edgevlm caption` does)."""
    from edgevlm.bench_modes import ask_timing, beam_timing

    captions = "caption" in engine.manifest.tasks
    out = {"beam3": beam_timing(engine, frames, rounds, 3) if captions else None}
    default = engine.settings().beam_size if captions and engine.manifest.hf_generation is None else None
    if default is not None and (default not in (1, 3) or engine.reranks):
        out["default_caption"] = {**beam_timing(engine, frames, rounds, default, rerank=True), "reranked": engine.reranks}
    out["ask"] = ask_timing(engine, frames, rounds)
    return out


def floor_or_reason(engine: CaptionEngine, result: dict, threads: int) -> dict:
    """bench_floor's report at this run's measured timings (greedy steps = mean tokens), or
    {"skipped": why} where onnx/sympy are not installed (the base install lacks them) or the
    run was not greedy (the floor is counted at one row per step)."""
    if result["beam"] != 1:
        return {"skipped": "the floor is counted for greedy captions (--beam 1)"}
    try:
        from edgevlm.bench_floor import floor_report

        return floor_report(engine, result["runtime_graphs"], result["runtime_ms_p50"], result["mean_tokens"], threads)
    except ImportError as exc:
        return {"skipped": f"counting the graphs needs {exc.name}: pip install 'edgevlm[calibrate]'"}
