"""How many threads each graph's CPU session gets, and whether its threads spin.

onnxruntime hands each parallel op to its pool's worker threads. Without spinning a worker
sleeps between ops and must be woken for the next (a futex round trip, tens of
microseconds), so a graph of many small ops gains little or loses from a second thread.
With spinning a worker busy-waits a short while for the next op: the wake-up is gone, at
the price of a core burnt while it waits. Per graph, as measured (2-core AVX-512 VNNI EPYC,
INT8 shipped engine, median of 40-60 runs 5-10 ms apart as in captioning, separate
processes; /work/runs/s25/graph_spin.py and vis_spin.py):

| graph | 2 threads | 2 threads, spinning | 1 thread |
|---|---|---|---|
| vision (49 QLinearConv) | 6.7-7.4 ms | 4.4-5.4 ms | 7.0-7.3 ms |
| cross_kv (~26M MACs) | 0.84 ms | 0.75-0.77 ms | 0.78-0.81 ms |
| decoder_step (~4.5M MACs) | 0.69 ms | | 0.42 ms (decoder_step_bench) |

So: the image graph spins (its ops run back to back, once per frame) and its workers stop
spinning when the run ends (without that stop they spun on between frames: CPU time per
greedy caption 54 ms against 22 ms); small per-image and per-token graphs run on the calling
thread alone, where no worker waits and none needs waking. Per greedy caption, this against
the former choice (decoder_step alone on one thread), 6-10 alternating processes: 1.02x,
1.095x, 1.095x faster, at 3-5% more CPU time. Larger models (a ViT-base/GPT-2 cross K/V: ~2.8G MACs)
keep every thread: a GPT-2-small step (~138M multiply-adds, 140 MB of int8 weights read per
token) took 16.2 ms on one thread against 13.1 ms on two (race engine, `edgevlm bench`), and
their threads spin within each run as the image graph's do: race captions (ViT-GPT-2 INT8,
20 tokens) 385 against 318 ms, 1.21x, at equal CPU time (616 against 601 ms), 6 alternating
process pairs (/work/runs/s27/ab_spin_all.py, AVX-512 VNNI EPYC). Without spinning each of
the step's ~150 ops woke a sleeping worker.
``spinning`` (the backend option, for benchmarks) turns it on everywhere.

A beam multiplies the step's work by its rows: 16 beams of the shipped model are ~72M
multiply-adds a token, past the single-thread line below, so such a step runs on a second
session of the same graph with every thread, spinning within its runs (``wide_step_threading``;
a session's threads are fixed when it is made). Shipped INT8 engine, one process, engines
interleaved, 4 sample photos x 12 (2-core AVX2 EPYC; /work/runs/s30/ab_thr.py): all steps on
two spinning threads against one thread, wall / CPU ms per caption: greedy 18.4 / 29.9 against
17.0 / 22.9, beam 4 44.1 / 68.0 against 42.8 / 49.9, beam 8 75.1 / 113 against 79.7 / 87.2,
beam 16 (the caption memory's) 94.0 / 144 against 110.9 / 117 (1.18x); same captions. So
only the 16-row steps go wide.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevlm.runtime.steppers import STEP_GRAPH

VISION_GRAPH, CROSS_KV_GRAPH, DECODER_GRAPH = "vision", "cross_kv", "decoder"
# Under this many multiply-adds per run a second (non-spinning) thread costs more than it
# brings: the shipped cross_kv has ~26M, its step ~4.5M (above); 64M leaves room for a model
# twice its width, and a GPT-2-small step (~138M) is far above it.
SINGLE_THREAD_MACS = 64_000_000


def cross_kv_macs(manifest) -> int:
    """Multiply-adds of one image's cross K/V: K and V of every layer over the visual tokens."""
    model = manifest.model
    return 2 * model.n_layers * model.num_visual_tokens * model.d_model * model.n_heads * model.head_dim


@dataclass(frozen=True)
class SessionThreading:
    threads: int | None  # intra-op threads; None: onnxruntime's choice
    spinning: bool
    spin_only_in_runs: bool = False  # workers stop spinning when a run ends (session.force_spinning_stop)


def step_macs(manifest) -> int:
    """Multiply-adds of one token's step, estimated from the model section: per layer
    self-attention q/k/v/out 4d^2, cross-attention q/out 2d^2, a 4d-wide MLP 8d^2; then the
    LM head d x vocab (the MLP width is not in the manifest: 4d is GPT-2's and ours)."""
    model = manifest.model
    return model.n_layers * 14 * model.d_model ** 2 + model.d_model * model.vocab_size


def wide_step_threading(manifest, rows: int, threads: int | None, spinning: bool) -> SessionThreading | None:
    """The threading of a step of ``rows`` rows where it differs from the step session's (then
    it runs on a session of its own), else None: a small decoder steps on one thread, but
    rows x its multiply-adds past SINGLE_THREAD_MACS keep every thread busy (above)."""
    if threads == 1 or rows * step_macs(manifest) < SINGLE_THREAD_MACS:
        return None
    if graph_threading(manifest, STEP_GRAPH, threads, spinning).threads != 1:
        return None  # a large decoder's step session has every thread already
    return SessionThreading(threads, True, spin_only_in_runs=not spinning)


def graph_threading(manifest, graph: str, threads: int | None, spinning: bool) -> SessionThreading:
    """Threads and spinning for ``graph``'s CPU session, given the backend's options."""
    small_decoder = step_macs(manifest) < SINGLE_THREAD_MACS
    if graph == STEP_GRAPH and small_decoder:
        return SessionThreading(1, spinning)
    if graph == CROSS_KV_GRAPH and cross_kv_macs(manifest) < SINGLE_THREAD_MACS:
        return SessionThreading(1, spinning)
    large_decoder = graph in (DECODER_GRAPH, STEP_GRAPH) and not small_decoder
    if threads != 1 and not spinning and (graph in (VISION_GRAPH, CROSS_KV_GRAPH) or large_decoder):
        # the image graph, and a large model's cross K/V and decoder: enough work per op to keep
        # every thread busy, so the workers spin through the run's ops and stop when it ends
        # (a small cross K/V or step runs on one thread, above; other graphs, BLIP VQA's question
        # encoder, keep the backend's setting)
        return SessionThreading(threads, True, spin_only_in_runs=True)
    return SessionThreading(threads, spinning)
