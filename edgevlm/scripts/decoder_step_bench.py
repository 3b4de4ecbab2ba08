"""Time one decoder step of an engine's graphs side by side: the general ``decoder`` graph
(T new tokens, the contract TensorRT and prefill use) against the single-token
``decoder_step`` graph (export/step_graph.py), interleaved in one process so that load
drifts on a shared machine hit both alike; prints medians and p10, and the node count each
graph has after onnxruntime's ORT_ENABLE_ALL (the shape plumbing the step graph drops).

    python -m edgevlm.scripts.decoder_step_bench ENGINE_DIR [ENGINE_DIR ...] [--threads 1 2] [--rows 1 3]

Several engines (an FP32 export, the INT8 engine quantized from it) are timed in the same
rounds. The sessions are the runtime's own (``session_options``: sequential, no spinning).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

from edgevlm.runtime.backends.onnxruntime_backend import session_options
from edgevlm.runtime.manifest import load_manifest
from edgevlm.runtime.steppers import LAYERED_STEP_INPUTS, STEP_GRAPH, per_layer
from edgevlm.runtime.token_embeddings import STEP_EMBEDS_INPUT


def _feeds(manifest, graph: str, rows: int, position: int, rng) -> dict[str, np.ndarray]:
    """Random feeds for one single-token step of ``graph`` over ``rows`` rows."""
    m = manifest.model
    cache = (m.n_layers, rows, m.n_heads, m.cache_capacity, m.head_dim)
    cross = (m.n_layers, rows, m.n_heads, m.num_visual_tokens, m.head_dim)
    feeds = {"input_ids": np.full((rows, 1), 5, np.int64), "position": np.array(position, np.int64),
             STEP_EMBEDS_INPUT: rng.standard_normal((rows, 1, m.d_model), np.float32),  # VED steps take rows
             "prefix_len": np.array(0, np.int64),
             "cache_k": rng.standard_normal(cache, np.float32), "cache_v": rng.standard_normal(cache, np.float32),
             "cross_k": rng.standard_normal(cross, np.float32), "cross_v": rng.standard_normal(cross, np.float32)}
    for name in LAYERED_STEP_INPUTS:  # the step graph's per-layer inputs, where it has them
        feeds |= per_layer(name, feeds[name])
    return {k: v for k, v in feeds.items() if manifest.graph(graph).takes(k)}


def _optimised_nodes(path: str) -> int:
    """Nodes left after ORT_ENABLE_ALL (the session's own optimiser, one thread)."""
    with tempfile.TemporaryDirectory() as tmp:
        options = session_options(1)
        options.optimized_model_filepath = os.path.join(tmp, "optimised.onnx")
        ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return len(onnx.load(options.optimized_model_filepath, load_external_data=False).graph.node)


def bench(engines: list[str], threads: int, rows: int, rounds: int, steps: int, position: int = 7) -> None:
    rng = np.random.default_rng(0)
    runs = {}
    for folder in engines:
        manifest = load_manifest(folder)
        for graph in ("decoder", STEP_GRAPH):
            if graph in manifest.graphs:
                session = ort.InferenceSession(manifest.graph_path(graph), session_options(threads),
                                               providers=["CPUExecutionProvider"])
                runs[f"{os.path.basename(os.path.normpath(folder))}/{graph}"] = (
                    session, _feeds(manifest, graph, rows, position, rng), manifest.graph_path(graph))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for session, feeds, _ in runs.values():  # warm-up: first runs allocate
        for _ in range(20):
            session.run(None, feeds)
    for _ in range(rounds):
        for name, (session, feeds, _) in runs.items():
            for _ in range(steps):
                start = time.perf_counter()
                session.run(None, feeds)
                times[name].append(time.perf_counter() - start)
    print(f"threads={threads} rows={rows} ({rounds} rounds x {steps} steps, interleaved)")
    for name, (_, _, path) in runs.items():
        t = np.array(times[name]) * 1e3
        print(f"  {name:40s} median {np.median(t):6.3f} ms  p10 {np.percentile(t, 10):6.3f} ms  "
              f"nodes after ORT {_optimised_nodes(path)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines", nargs="+")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}; cpu: {_cpu_name()}")
    for rows in args.rows:
        for threads in args.threads:
            bench(args.engines, threads, rows, args.rounds, args.steps)


def _cpu_name() -> str:
    from edgevlm.runtime.cpu_isa import cpu_features, read_cpuinfo

    return cpu_features(read_cpuinfo())[0] or "unknown"


if __name__ == "__main__":
    main()
