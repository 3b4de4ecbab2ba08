"""The native TensorRT backend's guard and builder with a fake ``tensorrt`` (none can be
installed here): a plan that does not match this device is refused, or rebuilt when
allowed, before a single byte of it reaches ``deserialize_cuda_engine``. The real thing
runs in the gpu/tensorrt-marked test at the end, skipped without them."""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import os
import shutil
import types

import numpy as np
import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.paths import resolve_engine
from edgevlm.runtime import tensorrt_support
from edgevlm.runtime.backends.tensorrt_backend import TensorRTBackend
from edgevlm.runtime.engine_cache import DeviceFacts, StalePlan
from edgevlm.runtime.engine_profiles import input_profiles
from edgevlm.runtime.manifest import PlanEntry, load_manifest, update_manifest
from edgevlm.runtime.tensorrt_build import PREPARING, TIMING_CACHE, build_plans
from edgevlm.runtime.steppers import device_graphs

ORIN_10_3 = DeviceFacts("1.20.0", "10.3.0", "Orin", "8.7")
ORIN_10_7 = DeviceFacts("1.20.0", "10.7.0", "Orin", "8.7")


class Deserialized(Exception):
    """Raised by the fake runtime: reaching it means a plan was handed to TensorRT."""


def fake_tensorrt(calls: dict, version: str = "10.3.0", precision_flags: bool = True):
    """Just the calls tensorrt_build and the backend make, recorded in ``calls``."""
    trt = types.SimpleNamespace(__version__=version)
    trt.BuilderFlag = types.SimpleNamespace(**({"FP16": "FP16", "INT8": "INT8"} if precision_flags else {}))
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=3)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Cache:
        def serialize(self):
            return b"timing-cache"

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls["workspace"] = (pool, size)

        def set_flag(self, flag):
            calls["flags"].add(flag)

        def add_optimization_profile(self, profile):
            pass

        def create_timing_cache(self, data):
            calls["timing_in"].append(data)
            return Cache()

        def set_timing_cache(self, cache, ignore_mismatch):
            assert ignore_mismatch is False

        def get_timing_cache(self):
            return Cache()

    class Profile:
        def set_shape(self, name, low, opt, high):
            calls["shapes"][name] = (low, opt, high)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["network_flags"] = flags
            return object()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls["built"] += 1
            return os.urandom(512)

    class OnnxParser:
        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls["parsed"].append(os.path.basename(path))
            return True

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            calls["deserialized"] += 1
            raise Deserialized()

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    return trt


FAKE_CUDA = types.SimpleNamespace(stream=lambda: 0, destroy_stream=lambda s: None, free=lambda p: None, sync=lambda s: None,
                                  malloc=lambda n: 1)


@pytest.fixture()
def calls():
    return {"flags": set(), "timing_in": [], "shapes": {}, "built": 0, "parsed": [], "deserialized": 0}


@pytest.fixture()
def device(monkeypatch, calls, tmp_path):
    """This 'machine': the fake tensorrt, fake CUDA, and the facts a test sets (ORIN 10.7 by default)."""
    state = {"facts": ORIN_10_7, "trt": fake_tensorrt(calls, "10.7.0")}
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tensorrt_support, "import_tensorrt", lambda: state["trt"])
    monkeypatch.setattr(tensorrt_support, "Cuda", lambda: FAKE_CUDA)
    monkeypatch.setattr(tensorrt_support, "native_facts", lambda trt, cuda: state["facts"])
    return state


@pytest.fixture()
def fp32_engine(tmp_path):
    """The shipped engine's files under an FP32 manifest: what TensorRT may build (the shipped
    one is the CPU INT8 variant). The graphs are never run here, only hashed and 'parsed'."""
    path = str(tmp_path / "engine")
    shutil.copytree(resolve_engine(None), path)
    update_manifest(path, lambda m: m.replace(precision="fp32", quantization=None))
    return path


def _plant_plans(engine_dir: str, facts: DeviceFacts) -> None:
    """Plans and records as `edgevlm build` on ``facts`` would leave them."""
    manifest = load_manifest(engine_dir, verify=False)
    os.makedirs(os.path.join(engine_dir, "plans"), exist_ok=True)
    entries = {}
    for graph in device_graphs(manifest):  # as edgevlm build plans them
        spec = manifest.graphs[graph]
        data = os.urandom(256)
        with open(os.path.join(engine_dir, "plans", f"{graph}.plan"), "wb") as f:
            f.write(data)
        entries[graph] = PlanEntry(f"plans/{graph}.plan", "fp16", manifest.files[spec.file].sha256, facts.trt_version,
                                   facts.gpu_name, facts.compute_capability, hashlib.sha256(data).hexdigest(), 256,
                                   {"batch": (1, 1, 4)})
    update_manifest(engine_dir, lambda m: dataclasses.replace(m, plans=entries))


def _open(engine_dir: str, **settings):
    backend = TensorRTBackend.configure(**settings)(load_manifest(engine_dir))
    return backend.open()


def test_no_plans_is_one_line_naming_build(fp32_engine, device, calls):
    with pytest.raises(EdgeVLMError, match=r"no TensorRT plan for vision, cross_kv, decoder; run `edgevlm build") as refused:
        _open(fp32_engine)
    assert "\n" not in str(refused.value) and "--rebuild" in str(refused.value)
    assert calls["deserialized"] == 0


@pytest.mark.parametrize(("facts", "message"), [
    (ORIN_10_7, "TensorRT changed (10.3.0 when built, 10.7.0 now)"),
    (DeviceFacts("1.20.0", "10.3.0", "NVIDIA H200", "9.0"), "the GPU changed"),
])
def test_a_stale_plan_is_never_deserialized(fp32_engine, device, calls, facts, message):
    _plant_plans(fp32_engine, ORIN_10_3)
    device["facts"] = facts
    with pytest.raises(StalePlan) as refused:
        _open(fp32_engine)
    assert message in str(refused.value) and "edgevlm build" in str(refused.value)
    assert calls["deserialized"] == 0 and calls["built"] == 0


def test_an_altered_plan_is_never_deserialized(fp32_engine, device, calls):
    _plant_plans(fp32_engine, ORIN_10_7)
    with open(os.path.join(fp32_engine, "plans", "decoder.plan"), "r+b") as f:
        f.write(b"\x00" * 16)
    with pytest.raises(StalePlan, match="sha256 is not the one recorded"):
        _open(fp32_engine)
    assert calls["deserialized"] == 0


def test_a_matching_plan_reaches_deserialization(fp32_engine, device, calls):
    _plant_plans(fp32_engine, ORIN_10_7)
    with pytest.raises(Deserialized):
        _open(fp32_engine)
    assert calls["deserialized"] == 1 and calls["built"] == 0


def test_rebuild_allowed_builds_then_loads_the_new_plans(fp32_engine, device, calls):
    _plant_plans(fp32_engine, ORIN_10_3)  # built before a TensorRT upgrade
    heard = []
    with pytest.raises(Deserialized):  # the fake runtime: reached only with plans that pass the guard
        _open(fp32_engine, rebuild=True, on_prepare=heard.append)
    assert heard == [PREPARING] and calls["built"] == 3
    manifest = load_manifest(fp32_engine, verify=False)
    assert {e.trt_version for e in manifest.plans.values()} == {"10.7.0"}
    assert not os.path.exists(os.path.join(fp32_engine, "plans", "vision.plan"))  # replaced plans removed
    assert all(os.path.isfile(manifest.plan_path(g)) for g in device_graphs(manifest))


def test_build_on_tensorrt_10_sets_flags_profile_workspace_and_timing_cache(fp32_engine, device, calls, tmp_path):
    status = build_plans(fp32_engine, "fp16", workspace_mb=256)
    assert status == {"vision": "built", "cross_kv": "built", "decoder": "built"}
    manifest = load_manifest(fp32_engine, verify=False)
    assert calls["flags"] == {"FP16"} and calls["workspace"] == ("WORKSPACE", 256 << 20)
    assert calls["network_flags"] == 0  # TensorRT 10: weakly typed, the flags choose precision
    assert calls["shapes"]["cache_k"] == input_profiles(manifest, "decoder")["cache_k"]
    assert {e.precision for e in manifest.plans.values()} == {"fp16"}
    assert manifest.plans["decoder"].axes["tokens"] == (1, 1, manifest.model.cache_capacity)
    timing = [os.path.join(root, TIMING_CACHE) for root, _, files in os.walk(tmp_path / "cache") if TIMING_CACHE in files]
    assert len(timing) == 3  # one per graph's keyed cache folder
    assert build_plans(fp32_engine) == {"vision": "up to date", "cross_kv": "up to date", "decoder": "up to date"}
    build_plans(fp32_engine, rebuild=True)
    assert calls["built"] == 6 and calls["timing_in"][-1] == b"timing-cache"  # the saved cache is reused


def test_tensorrt_11_takes_precision_from_the_graph(fp32_engine, device, calls):
    device["trt"] = fake_tensorrt(calls, "11.4.1", precision_flags=False)
    device["facts"] = DeviceFacts("1.23.0", "11.4.1", "Thor", "11.0")
    with pytest.raises(EdgeVLMError, match="TensorRT 11 takes precision from the graph, which is fp32") as refused:
        build_plans(fp32_engine, "fp16")
    assert "\n" not in str(refused.value) and calls["built"] == 0
    build_plans(fp32_engine)
    assert calls["flags"] == set() and calls["network_flags"] == 1 << 3  # strongly typed, no precision flags
    assert {e.precision for e in load_manifest(fp32_engine, verify=False).plans.values()} == {"fp32"}


def test_int8_needs_the_symmetric_qdq_variant(fp32_engine, device, calls):
    with pytest.raises(EdgeVLMError, match="--precision int8 needs the symmetric Q/DQ INT8 engine"):
        build_plans(fp32_engine, "int8")
    update_manifest(fp32_engine, lambda m: m.replace(precision="int8", quantization={"variant": "qdq"}))
    build_plans(fp32_engine)
    assert calls["flags"] == {"FP16", "INT8"}  # explicit quantization on TensorRT 10: no calibrator


def test_the_shipped_cpu_int8_engine_is_refused_before_tensorrt(monkeypatch):
    monkeypatch.setattr(tensorrt_support, "import_tensorrt", lambda: pytest.fail("imported tensorrt"))
    with pytest.raises(EdgeVLMError, match="cpu INT8 variant .* which TensorRT cannot build"):
        build_plans(resolve_engine(None))


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_native_plans_caption_like_onnxruntime(shipped_fp32_engine, tmp_path):
    """On a GPU with TensorRT and cuda-python: build, then the native backend's captions match
    onnxruntime's on the FP32 engine (FP32 plans: the same numbers up to kernel order)."""
    import cv2

    from edgevlm.paths import sample_images_dir
    from edgevlm.runtime.engine import CaptionEngine

    engine_dir = str(tmp_path / "engine")
    shutil.copytree(shipped_fp32_engine, engine_dir)
    build_plans(engine_dir, "fp32")
    image = cv2.imread(os.path.join(sample_images_dir(), "chelsea.jpg"))
    with CaptionEngine(engine_dir) as ort_engine, CaptionEngine(engine_dir, backend="tensorrt") as trt_engine:
        assert trt_engine.caption_images([image])[0] == ort_engine.caption_images([image])[0]


# --------------------------------------------------------------------------- a simulated device
# The native backend's run path (buffers bound once, shapes set per run, the device cache's
# cudaMemcpy2DAsync writes and reorder copies, stream order) on a "device" made of host memory:
# pointers are real addresses of numpy arrays filled with 0xFF bytes (a NaN in every float, as
# uncleared cudaMalloc memory may hold), copies are memmoves that must stay inside their
# allocation, and each plan "executes" its ONNX graph with onnxruntime on the CPU. The ids must
# then be onnxruntime's own, greedy, beam and answers.
class SimCuda:
    H2D, D2H, D2D = "H2D", "D2H", "D2D"

    def __init__(self):
        self.live: dict[int, np.ndarray] = {}
        self.memsets = 0

    def _inside(self, ptr: int, nbytes: int) -> None:
        for base, block in self.live.items():
            if base <= ptr < base + block.size:
                assert ptr + nbytes <= base + block.size, "a copy runs past its device buffer"

    def malloc(self, nbytes):
        block = np.full(max(1, nbytes), 0xFF, np.uint8)
        self.live[block.ctypes.data] = block
        return block.ctypes.data

    def free(self, ptr):
        del self.live[ptr]

    def stream(self):
        return 0

    def destroy_stream(self, stream):
        pass

    def sync(self, stream):
        pass

    def memset(self, ptr, nbytes, stream):
        self._inside(ptr, nbytes)
        ctypes.memset(ptr, 0, nbytes)
        self.memsets += 1

    def copy(self, dst, src, nbytes, kind, stream):
        self._inside(dst, nbytes), self._inside(src, nbytes)
        ctypes.memmove(dst, src, nbytes)

    def copy_2d(self, dst, src, plan, stream):
        assert plan.width <= plan.src_pitch and plan.width <= plan.dst_pitch  # cudaMemcpy2D's own rule
        for src_offset, dst_offset, size in plan.copies():
            self.copy(dst + dst_offset, src + src_offset, size, self.D2D, stream)


_ORT_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


class SimContext:
    def __init__(self, session):
        self.session, self.addresses, self.shapes = session, {}, {}

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        """An input's set shape; an output's as TensorRT infers it from the inputs' (here by
        running the graph on what the inputs hold, as they are all set before execute)."""
        if name in self.shapes or name not in self.output_names:
            return self.shapes[name]
        return self._outputs()[name].shape

    @property
    def output_names(self):
        return [spec.name for spec in self.session.get_outputs()]

    def _outputs(self) -> dict:
        feeds = {}
        for spec in self.session.get_inputs():
            shape, dtype = self.shapes[spec.name], np.dtype(_ORT_NUMPY[spec.type])
            count = int(np.prod(shape, dtype=np.int64))
            raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(self.addresses[spec.name])
            feeds[spec.name] = np.frombuffer(raw, dtype, count).reshape(shape).copy()
        return dict(zip(self.output_names, map(np.ascontiguousarray, self.session.run(None, feeds))))

    def execute_async_v3(self, stream):
        for name, value in self._outputs().items():
            ctypes.memmove(self.addresses[name], value.ctypes.data, value.nbytes)
        return True


class SimEngine:
    def __init__(self, onnx_path):
        import onnxruntime as ort

        self.session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])

    def is_shape_inference_io(self, name):
        return False

    def create_execution_context(self):
        return SimContext(self.session)


def test_native_backend_on_a_simulated_device_gives_onnxruntimes_ids(fp32_engine, device, calls, monkeypatch):
    from edgevlm.paths import sample_images_dir
    from edgevlm.runtime.backends import BACKENDS
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.engine_profiles import axis_ranges
    from edgevlm.runtime.preprocess import read_image_bgr

    manifest = load_manifest(fp32_engine, verify=False)
    os.makedirs(os.path.join(fp32_engine, "plans"), exist_ok=True)
    entries = {}
    for graph in device_graphs(manifest):  # a "plan" here is the path of the graph it runs
        spec = manifest.graphs[graph]
        data = manifest.graph_path(graph).encode()
        with open(os.path.join(fp32_engine, "plans", f"{graph}.plan"), "wb") as f:
            f.write(data)
        entries[graph] = PlanEntry(f"plans/{graph}.plan", "fp32", manifest.files[spec.file].sha256, "10.7.0", "Orin",
                                   "8.7", hashlib.sha256(data).hexdigest(), len(data),
                                   {a: (r.min, r.opt, r.max) for a, r in axis_ranges(manifest, graph).items()})
    update_manifest(fp32_engine, lambda m: dataclasses.replace(m, plans=entries))
    device["trt"].Runtime = type("Runtime", (), {"__init__": lambda self, logger: None,
                                                 "deserialize_cuda_engine": lambda self, data: SimEngine(data.decode())})
    cuda = SimCuda()
    monkeypatch.setattr(tensorrt_support, "Cuda", lambda: cuda)
    monkeypatch.setitem(BACKENDS, "tensorrt-sim", TensorRTBackend)

    images = [read_image_bgr(os.path.join(sample_images_dir(), name)) for name in sorted(os.listdir(sample_images_dir()))
              if name.endswith(".jpg")][:2]
    with CaptionEngine(fp32_engine, threads=1, io_binding=False) as ort_engine, \
            CaptionEngine(fp32_engine, threads=1, backend="tensorrt-sim") as trt_engine:
        pixels = np.stack([ort_engine.preprocess(image) for image in images])
        visual = ort_engine.see(pixels).visual
        for beam in (1, 3):  # beam 3: rows = 6, reorders through the spares
            settings = ort_engine.settings(beam)
            expected = ort_engine.generate(visual, settings)
            assert trt_engine.generate(visual, settings) == expected, f"beam {beam}"
            assert any(expected)
        assert cuda.memsets == 4  # cache k/v and their spares cleared once, not per search
        if ort_engine.answers_questions:
            questions = ["what is the man doing?", "where is the dog?"]
            mine, theirs = (e.answer_visual(visual[:1], questions, abstain_below=0.0) for e in (trt_engine, ort_engine))
            assert [a.answer for a in mine] == [a.answer for a in theirs]
        backend = trt_engine.backend
        # Output buffers are as large as the largest run needed (the 6-row beam prefill's logits at
        # most), not the profile's largest shape (64 rows x the whole cache x the vocabulary).
        m = backend.manifest.model
        largest_run = 6 * m.cache_capacity * m.vocab_size * 4
        assert 0 < backend._sizes["decoder"]["logits"] <= largest_run
    assert cuda.live == {}  # every buffer freed at close
    assert backend.contexts == {}
