"""TensorRT profiles, provider options, plan records in the manifest and the device-cache copy
plans: the pure logic of the TensorRT paths, checked on a CPU."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.paths import resolve_engine
from edgevlm.runtime.cache_copies import reorder_plan, write_plan
from edgevlm.runtime.engine_cache import DeviceFacts, tensorrt_provider_options
from edgevlm.runtime.engine_profiles import (MAX_BEAM, MAX_IMAGES, AxisRange, axis_ranges, check_within,
                                             input_profiles, ort_profile_options)
from edgevlm.runtime.manifest import GraphSpec, Manifest, PlanEntry, TensorSpec, load_manifest

ORIN = DeviceFacts("1.20.0", "10.3.0", "Orin", "8.7")


@pytest.fixture(scope="module")
def shipped():
    return load_manifest(resolve_engine(None), verify=False)


def test_profiles_of_the_shipped_engine(shipped):
    m, beams = shipped.model, shipped.generation.beam_size
    assert axis_ranges(shipped, "vision") == {"batch": AxisRange(1, 1, MAX_IMAGES)}
    decoder = axis_ranges(shipped, "decoder")
    assert decoder["batch"] == AxisRange(1, beams, MAX_IMAGES * max(beams, MAX_BEAM))  # rows = images x beams
    assert decoder["tokens"] == AxisRange(1, 1, m.cache_capacity)  # a step .. a prompt filling the cache
    shapes = input_profiles(shipped, "decoder")
    assert set(shapes) == {"input_ids", "cache_k", "cache_v", "cross_k", "cross_v"}  # 0-d position/prefix_len: static
    rows = MAX_IMAGES * max(beams, MAX_BEAM)
    assert shapes["cache_k"] == ((m.n_layers, 1, m.n_heads, m.cache_capacity, m.head_dim),
                                 (m.n_layers, beams, m.n_heads, m.cache_capacity, m.head_dim),
                                 (m.n_layers, rows, m.n_heads, m.cache_capacity, m.head_dim))
    assert shapes["input_ids"] == ((1, 1), (beams, 1), (rows, m.cache_capacity))


def test_ort_profile_strings(shipped):
    options = ort_profile_options(shipped, "vision")
    assert options == {"trt_profile_min_shapes": "pixels:1x3x224x224", "trt_profile_opt_shapes": "pixels:1x3x224x224",
                       "trt_profile_max_shapes": f"pixels:{MAX_IMAGES}x3x224x224"}
    decoder = ort_profile_options(shipped, "decoder")["trt_profile_max_shapes"].split(",")
    assert [entry.split(":")[0] for entry in decoder] == ["input_ids", "cache_k", "cache_v", "cross_k", "cross_v"]
    for graph in shipped.graphs:  # the provider options carry them, beside the keyed caches
        assert tensorrt_provider_options(shipped, graph, ORIN).items() >= ort_profile_options(shipped, graph).items()


def test_hf_axes_and_static_graphs(shipped):
    question = GraphSpec("vision", (TensorSpec("question_ids", "int64", ("batch", "question")),
                                    TensorSpec("visual_tokens", "float32", ("batch", 49, 256))), ())
    static = GraphSpec("vision", (TensorSpec("pixels", "float32", (1, 3, 224, 224)),), ())
    odd = GraphSpec("vision", (TensorSpec("pixels", "float32", ("frames", 3, 224, 224)),), ())
    m = shipped.replace(graphs={**shipped.graphs, "question": question, "static": static, "odd": odd})
    assert axis_ranges(m, "question") == {"batch": AxisRange(1, 1, MAX_IMAGES),
                                          "question": AxisRange(1, min(16, m.model.max_len), m.model.max_len)}
    assert ort_profile_options(m, "static") == {}  # nothing dynamic: TensorRT's default profile
    with pytest.raises(EdgeVLMError, match="dynamic axis 'frames'"):
        axis_ranges(m, "odd")


def test_a_run_outside_the_profile_is_one_line(shipped):
    ranges = axis_ranges(shipped, "decoder")
    check_within("decoder", ranges, {"batch": 3, "tokens": 1})
    with pytest.raises(EdgeVLMError, match="axis 'tokens' is 33, outside the 1..32") as refused:
        check_within("decoder", ranges, {"batch": 3, "tokens": shipped.model.cache_capacity + 1})
    assert "\n" not in str(refused.value)


# --------------------------------------------------------------------------- manifest plans
def _entry(**changes) -> PlanEntry:
    entry = PlanEntry("plans/vision-0123456789ab.plan", "fp16", "a" * 64, "10.3.0", "Orin", "8.7", "b" * 64, 4096,
                      {"batch": (1, 1, 4)})
    return dataclasses.replace(entry, **changes)


def test_plan_records_round_trip_in_the_manifest(shipped):
    with_plans = shipped.replace(plans={"vision": _entry()})
    data = with_plans.to_json()
    assert data["plans"]["vision"]["axes"] == {"batch": [1, 1, 4]}
    assert Manifest.from_json(data, shipped.root) == with_plans
    assert "plans" not in shipped.to_json()  # optional: engines without plans are written as before


@pytest.mark.parametrize(("plans", "message"), [
    ({"vision": _entry(path="../vision.plan")}, "plans.vision.path"),
    ({"vision": _entry(path="/tmp/vision.plan")}, "plans.vision.path"),
    ({"nothing": _entry()}, "plans.nothing"),
    ({"vision": _entry(precision="int4")}, "plans.vision.precision"),
])
def test_bad_plan_records_are_refused(shipped, plans, message):
    data = shipped.replace(plans=plans).to_json()
    with pytest.raises(EdgeVLMError, match=message):
        Manifest.from_json(data)


# --------------------------------------------------------------------------- device cache copies
def _apply(plan, src: bytearray, dst: bytearray) -> None:
    for src_offset, dst_offset, size in plan.copies():
        dst[dst_offset:dst_offset + size] = src[src_offset:src_offset + size]


@pytest.mark.parametrize(("position", "tokens"), [(0, 1), (5, 1), (0, 7), (20, 12)])
def test_write_plan_matches_the_numpy_slice_write(position, tokens):
    layers, rows, heads, capacity, head_dim = 2, 3, 4, 32, 8
    rng = np.random.default_rng(position + tokens)
    cache = rng.standard_normal((layers, rows, heads, capacity, head_dim)).astype(np.float32)
    new = rng.standard_normal((layers, rows, heads, tokens, head_dim)).astype(np.float32)
    plan = write_plan(layers, rows, heads, capacity, head_dim, position, tokens, cache.itemsize)
    assert plan.height == layers * rows * heads  # one cudaMemcpy2DAsync, not a copy per block
    device = bytearray(cache.tobytes())
    _apply(plan, bytearray(new.tobytes()), device)
    expected = cache.copy()
    expected[:, :, :, position:position + tokens] = new
    np.testing.assert_array_equal(np.frombuffer(bytes(device), np.float32).reshape(cache.shape), expected)


def test_write_plan_refuses_a_full_cache():
    with pytest.raises(ValueError, match="cache full"):
        write_plan(1, 1, 1, 8, 4, 6, 3, 4)


def test_reorder_plan_matches_take():
    layers, rows, heads, capacity, head_dim = 3, 5, 2, 6, 4
    cache = np.random.default_rng(0).standard_normal((layers, rows, heads, capacity, head_dim)).astype(np.float32)
    order = np.array([2, 2, 0, 4, 1])
    spare = bytearray(cache.nbytes)
    for plan in reorder_plan(order, layers, rows, heads * capacity * head_dim * cache.itemsize):
        _apply(plan, bytearray(cache.tobytes()), spare)
    np.testing.assert_array_equal(np.frombuffer(bytes(spare), np.float32).reshape(cache.shape),
                                  np.take(cache, order, axis=1))
