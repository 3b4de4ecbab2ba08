"""The floor arithmetic (bench_floor.py) and the machine micro-benchmark's plumbing (never
its numbers: the machine is shared)."""

from __future__ import annotations

import pytest

from edgevlm.bench_floor import best_gops, caption_floor, graph_floor_ms
from edgevlm.graph_cost import GraphCost
from edgevlm.machine_peak import DECODE_SHAPE, copy_bandwidth_gbs, cpu_isa, matmul_gops, run_overhead_s

PEAK = {"gops": {"int8_decode": 10.0, "fp32_decode": 5.0, "int8_image": 100.0, "fp32_image": 50.0},
        "gops_1_thread": {"int8_decode": 20.0, "fp32_decode": 4.0, "int8_image": 60.0, "fp32_image": 30.0}}


def test_a_graph_floor_is_the_larger_of_compute_and_memory():
    # 2e9 int8 ops at 100 GOP/s = 20 ms, 1e9 float ops at 50 = 20 ms -> 40 ms of compute;
    # 1e8 bytes at 10 GB/s = 10 ms of memory
    cost = GraphCost(float_ops=10**9, int8_ops=2 * 10**9, weight_bytes=9 * 10**7, io_bytes=10**7)
    assert graph_floor_ms(cost, 100.0, 50.0, 10.0) == {"compute_ms": 40.0, "memory_ms": 10.0, "floor_ms": 40.0}
    memory_bound = GraphCost(0, 10**6, 10**9, 0)  # 0.01 ms of compute, 100 ms of memory
    assert graph_floor_ms(memory_bound, 100.0, 50.0, 10.0)["floor_ms"] == 100.0


def test_the_best_throughput_over_thread_counts_is_used_per_regime():
    assert best_gops(PEAK, "int8", "decoder") == 20.0  # 1 thread beats 2 at M=1
    assert best_gops(PEAK, "fp32", "decoder") == 5.0
    assert best_gops(PEAK, "int8", "vision") == 100.0 and best_gops(PEAK, "fp32", "cross_kv") == 50.0


def test_caption_floor_is_vision_plus_cross_kv_plus_steps_decoder_steps():
    costs = {"vision": GraphCost(0, 10**9, 0, 0),  # 10 ms at 100 GOP/s
             "cross_kv": GraphCost(0, 10**8, 0, 0),  # 1 ms
             "decoder": GraphCost(0, 2 * 10**6, 10**6, 0)}  # 0.1 ms compute at 20 GOP/s, 0.1 ms memory at 10 GB/s
    bandwidth = {"vision": 10.0, "cross_kv": 10.0, "decoder": 10.0}
    measured = {"vision_ms": 20.0, "cross_kv_ms": 3.0, "decoder_step_ms": 0.5}
    report = caption_floor(costs, PEAK, bandwidth, measured, caption_ms=44.0, steps=10.0)
    assert report["caption_floor_ms"] == pytest.approx(10 + 1 + 10 * 0.1)
    assert report["caption_ratio"] == pytest.approx(44.0 / 12.0, abs=0.01)
    vision = report["graphs"]["vision"]
    assert vision["floor_ms"] == 10.0 and vision["measured_ms"] == 20.0 and vision["ratio"] == 2.0
    assert vision["bound"] == "compute" and report["graphs"]["decoder"]["ratio"] == 5.0


def test_the_micro_benchmark_gives_positive_numbers_quickly():
    overhead = run_overhead_s(1, budget_s=0.01)
    assert overhead > 0
    for int8 in (True, False):
        assert matmul_gops(DECODE_SHAPE, int8, 1, overhead, budget_s=0.01) > 0
    assert copy_bandwidth_gbs(1 << 20, budget_s=0.01) > 0
    assert isinstance(cpu_isa(), str) and cpu_isa()


def test_peak_graphs_load_on_an_onnxruntime_older_than_onnx():
    """onnx.helper stamps its newest IR version (14 for onnx 1.23), which onnxruntime 1.30 refused
    on a lent Xeon (bench's floor failed there): the peak graphs carry IR 8, as our engines do."""
    import onnx

    from edgevlm.machine_peak import _identity_model, _matmul_model

    for model in (_matmul_model(1, 8, 8, int8=True), _matmul_model(1, 8, 8, int8=False), _identity_model()):
        assert onnx.load_model_from_string(model).ir_version == 8
