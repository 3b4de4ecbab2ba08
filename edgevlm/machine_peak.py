"""What this machine can do at best, measured in about two seconds: int8 and fp32 matrix
throughput through onnxruntime (what runs our graphs) at our layers' shapes, and memory
bandwidth at a given working-set size (numpy copy).

Throughput is measured on one-node graphs built with ``onnx.helper``, in sessions made
exactly as the engine's (``session_options``: spinning off), so it is the best the same
kernels (MLAS) reach on this CPU, not a datasheet number. Each run's fixed cost (Python ->
onnxruntime -> back, measured on an Identity graph) is subtracted and reported apart: the
floor is the hardware's, the per-run cost is ours to count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgevlm.runtime.backends.onnxruntime_backend import session_options

# (M, K, N) of the two regimes our graphs live in: a decoder step is M=1 (one row per
# token: a matrix-vector product, memory bound), the vision and cross-K/V graphs multiply
# 49..196 spatial positions by a weight (1x1 convs, projections: compute bound).
DECODE_SHAPE = (1, 256, 1024)
IMAGE_SHAPE = (196, 256, 1024)
_OPSET = [helper.make_opsetid("", 17)]
# IR version 8, as our exported engines: onnx.helper stamps its own newest IR (14 for onnx
# 1.23), which an onnxruntime older than the onnx package refuses to load (1.30 reads up to 13).
_IR_VERSION = 8


def cpu_isa() -> str:
    """The best int8 matrix instruction set this CPU has, named for the printout ("AVX2",
    "AVX-512 VNNI", "AMX", ...; "unknown" off Linux): what int8 throughput depends on."""
    from edgevlm.runtime.cpu_isa import cpu_features, read_cpuinfo

    _model, labels = cpu_features(read_cpuinfo())
    return labels[-1] if labels else "unknown"  # cpu_features lists them weakest first


def _matmul_model(m: int, k: int, n: int, int8: bool) -> bytes:
    """One MatMul (fp32: A (M,K) float x B (K,N) float) or MatMulInteger (A (M,K) uint8 x B
    (K,N) int8 -> int32, the u8 x s8 pair our `cpu` variant runs) with B a weight."""
    rng = np.random.default_rng(0)
    if int8:
        weight = numpy_helper.from_array(rng.integers(-63, 64, (k, n), dtype=np.int8), "B")  # 7-bit, as ours
        zero = numpy_helper.from_array(np.array(128, np.uint8), "a_zero")
        node = helper.make_node("MatMulInteger", ["A", "B", "a_zero"], ["Y"])
        a_type, y_type, inits = TensorProto.UINT8, TensorProto.INT32, [weight, zero]
    else:
        weight = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        a_type, y_type, inits = TensorProto.FLOAT, TensorProto.FLOAT, [weight]
    graph = helper.make_graph([node], "peak", [helper.make_tensor_value_info("A", a_type, [m, k])],
                              [helper.make_tensor_value_info("Y", y_type, [m, n])], inits)
    return helper.make_model(graph, opset_imports=_OPSET, ir_version=_IR_VERSION).SerializeToString()


def _identity_model() -> bytes:
    graph = helper.make_graph([helper.make_node("Identity", ["A"], ["Y"])], "noop",
                              [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])])
    return helper.make_model(graph, opset_imports=_OPSET, ir_version=_IR_VERSION).SerializeToString()


def _seconds_per_run(session: ort.InferenceSession, feeds: dict, budget_s: float) -> float:
    """Median seconds of one ``session.run`` over ~``budget_s`` (after 3 warm-up runs)."""
    for _ in range(3):
        session.run(None, feeds)
    times, end = [], time.perf_counter() + budget_s
    while time.perf_counter() < end or len(times) < 5:
        t = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def run_overhead_s(threads: int, budget_s: float = 0.1) -> float:
    """Seconds of one onnxruntime run that does nothing (an Identity of one float)."""
    session = ort.InferenceSession(_identity_model(), session_options(threads), providers=["CPUExecutionProvider"])
    return _seconds_per_run(session, {"A": np.zeros(1, np.float32)}, budget_s)


def matmul_gops(shape: tuple[int, int, int], int8: bool, threads: int, overhead_s: float,
                budget_s: float = 0.12) -> float:
    """Giga-ops/s (2*M*K*N per run, the per-run overhead taken off) of one MatMul
    (``int8``: MatMulInteger u8 x s8) of ``shape`` (M, K, N) on ``threads`` threads."""
    m, k, n = shape
    session = ort.InferenceSession(_matmul_model(m, k, n, int8), session_options(threads),
                                   providers=["CPUExecutionProvider"])
    a = np.random.default_rng(1).integers(0, 256, (m, k)).astype(np.uint8 if int8 else np.float32)
    seconds = max(_seconds_per_run(session, {"A": a}, budget_s) - overhead_s, 1e-9)
    return 2 * m * k * n / seconds / 1e9


def copy_bandwidth_gbs(nbytes: int, budget_s: float = 0.1) -> float:
    """GB/s of a numpy copy of an ``nbytes`` array (read + write counted: 2 x nbytes per
    copy), best of as many copies as fit ``budget_s``. At a graph's own byte count this is
    how fast that working set streams here (L2/L3 when it fits, DRAM when it does not)."""
    src = np.ones(max(nbytes, 4096), np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # fault the pages in
    best, end = float("inf"), time.perf_counter() + budget_s
    while time.perf_counter() < end:
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best / 1e9


@dataclass(frozen=True)
class MachinePeak:
    """Measured best throughput (giga-ops/s, 2 x MACs) per dtype and shape regime, at 1
    thread and at the engine's thread count, plus DRAM copy bandwidth (GB/s)."""

    isa: str
    threads: int
    gops: dict  # {"int8_decode": .., "fp32_decode": .., "int8_image": .., "fp32_image": ..} at ``threads``
    gops_1_thread: dict
    dram_gbs: float
    run_overhead_us: float

    def to_json(self) -> dict:
        return {"isa": self.isa, "threads": self.threads, "gops": self.gops, "gops_1_thread": self.gops_1_thread,
                "dram_gbs": self.dram_gbs, "run_overhead_us": self.run_overhead_us}


def measure_machine(threads: int, budget_s: float = 0.12) -> MachinePeak:
    """The whole micro-benchmark (~2 s at the default budget)."""
    per_thread = {}
    overhead = {}
    for t in sorted({1, threads}):
        overhead[t] = run_overhead_s(t)
        per_thread[t] = {f"{'int8' if int8 else 'fp32'}_{regime}": round(matmul_gops(shape, int8, t, overhead[t], budget_s), 2)
                         for regime, shape in (("decode", DECODE_SHAPE), ("image", IMAGE_SHAPE))
                         for int8 in (True, False)}
    dram = copy_bandwidth_gbs(256 * 1024 * 1024 // 4, budget_s=0.3)  # 64 MB: past any L3 a small box has
    return MachinePeak(cpu_isa(), threads, per_thread[threads], per_thread[1], round(dram, 2),
                       round(overhead[threads] * 1e6, 1))
