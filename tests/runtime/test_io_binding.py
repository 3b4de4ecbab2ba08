"""The IO-binding decode path (issue 14): the cache as device-resident OrtValues, written by
tiny graphs into ping-pong buffers, cross K/V on the device, only logits back. It is the same
code on every device, so on the CPU device it must give the numpy path's ids exactly: the
shipped engine (ours: prefix_len, VQA), a tiny GIT engine (no prefix_len), and under ``gpu``
the same comparison on CUDA."""

from __future__ import annotations

import glob

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.paths import default_engine_dir, sample_images_dir
from edgevlm.runtime.backends import BackendOptions
from edgevlm.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, session_options
from edgevlm.runtime.backends.ort_cache_graphs import cache_gather_model, cache_write_model
from edgevlm.runtime.backends.ort_device_cache import CacheGraphs, Device, DeviceKVCache
from edgevlm.runtime.backends.ort_device_stepper import DeviceCacheStepper
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.kv_cache import KVCache
from edgevlm.runtime.manifest import load_manifest
from edgevlm.runtime.preprocess import read_image_bgr
from edgevlm.runtime.steppers import CacheStepper

QUESTIONS = ["what is the man doing?", "what color is the dog?", "where is the cat?"]


@pytest.fixture(scope="module")
def photos():
    return [read_image_bgr(path) for path in sorted(glob.glob(f"{sample_images_dir()}/*.jpg"))[:3]]


@pytest.fixture(scope="module")
def git_engine(tmp_path_factory):
    """A tiny random GIT engine: a Hugging Face family whose decoder takes no prefix_len."""
    from edgevlm.export.families import EXPORT_FAMILIES
    from edgevlm.export.onnx_export import export_engine

    root = tmp_path_factory.mktemp("git")
    engine_dir = str(root / "engine")
    export_engine(EXPORT_FAMILIES["git"].write_tiny(str(root / "model")), engine_dir)
    return engine_dir


def _engines(engine_dir: str, provider: str = "cpu"):
    """(numpy-cache engine, IO-binding engine) on one provider."""
    return (CaptionEngine(engine_dir, provider, threads=1, io_binding=False),
            CaptionEngine(engine_dir, provider, threads=1, io_binding=True))


def _compare_captions_and_answers(engine_dir: str, images, provider: str = "cpu") -> None:
    numpy_engine, bound_engine = _engines(engine_dir, provider)
    with numpy_engine, bound_engine:
        pixels = np.stack([numpy_engine.preprocess(image) for image in images])
        visual = numpy_engine.see(pixels).visual
        for beam in (1, 3):
            settings = numpy_engine.settings(beam)
            assert isinstance(bound_engine.backend.decoder_stepper(*numpy_engine.cross_kv(visual)), DeviceCacheStepper)
            expected = numpy_engine.generate(visual, settings)
            assert bound_engine.generate(visual, settings) == expected, f"beam {beam}"
            assert any(expected), "a search that says nothing compares nothing"
        if numpy_engine.answers_questions:
            mine, theirs = (e.answer_visual(visual[:1], QUESTIONS, abstain_below=0.0) for e in (bound_engine, numpy_engine))
            assert [a.answer for a in mine] == [a.answer for a in theirs]
            assert [a.probability for a in mine] == pytest.approx([a.probability for a in theirs], rel=1e-6, abs=1e-9)


# --------------------------------------------------------------------------- the same ids
def test_io_binding_gives_the_numpy_paths_ids_captions_and_answers(photos):
    """Shipped engine (ours: prefix_len, VQA), three images: greedy, beam 3 and answers."""
    _compare_captions_and_answers(default_engine_dir(), photos)


def test_io_binding_gives_the_numpy_paths_ids_for_a_hugging_face_family(git_engine, photos):
    """GIT: generate()'s greedy and beam rules (search_hf), a decoder without prefix_len,
    and its question prompt prefilled causally."""
    _compare_captions_and_answers(git_engine, photos[:2])


@pytest.mark.gpu
def test_io_binding_on_cuda_gives_the_numpy_paths_ids(photos):
    """On CUDA: the cache and cross K/V on the GPU, only logits back, same ids as the same
    provider's numpy-cache path (same kernels, so the logits agree)."""
    _compare_captions_and_answers(default_engine_dir(), photos, provider="cuda")
    manifest = load_manifest(default_engine_dir())
    m = manifest.model
    cross = np.zeros((m.n_layers, 1, m.n_heads, m.num_visual_tokens, m.head_dim), np.float32)
    with OnnxRuntimeBackend(manifest, BackendOptions("cuda")) as backend:
        stepper = backend.decoder_stepper(cross, cross)
        on_device = (stepper.cache.k, stepper.cache.v, stepper.cross_k, stepper.cross_v, stepper.state.new_k)
        assert {value.device_name() for value in on_device} == {"cuda"}
        assert stepper.step(np.array([1], np.int64), 0).shape == (1, m.vocab_size)


# --------------------------------------------------------------------------- the cache graphs
def test_the_cache_graphs_are_valid_onnx():
    for model in (cache_write_model("float32"), cache_write_model("float16"), cache_gather_model("float32")):
        onnx.checker.check_model(onnx.load_from_string(model), full_check=True)


@pytest.fixture()
def caches():
    """(DeviceKVCache on the CPU device, numpy KVCache), same random contents."""
    shape = (2, 3, 2, 8, 4)
    graphs = CacheGraphs("float32", ["CPUExecutionProvider"], session_options(1))
    device, host = DeviceKVCache(graphs, Device("cpu"), shape, "float32"), KVCache(*shape)
    rng = np.random.default_rng(0)
    host.write(0, rng.standard_normal((2, 3, 2, 8, 4), np.float32), rng.standard_normal((2, 3, 2, 8, 4), np.float32))
    device.write(0, Device().upload(host.k), Device().upload(host.v))
    return device, host


def _same(device: DeviceKVCache, host: KVCache) -> bool:
    return np.array_equal(device.k.numpy(), host.k) and np.array_equal(device.v.numpy(), host.v)


@pytest.mark.parametrize("position, tokens", [(0, 1), (3, 1), (7, 1), (0, 5), (2, 4), (5, 3)])
def test_cache_write_matches_numpy(caches, position, tokens):
    device, host = caches
    rng = np.random.default_rng(position * 10 + tokens)
    new_k, new_v = (rng.standard_normal((2, 3, 2, tokens, 4), np.float32) for _ in range(2))
    device.write(position, Device().upload(new_k), Device().upload(new_v))
    host.write(position, new_k, new_v)
    assert _same(device, host)


def test_cache_gather_matches_numpy_and_a_full_cache_is_refused(caches):
    device, host = caches
    for rows in (np.array([2, 0, 0]), np.array([1, 1, 2]), np.array([0, 1, 2])):
        device.reorder(rows)
        host.reorder(rows)
        assert _same(device, host)
    new = Device().upload(np.zeros((2, 3, 2, 2, 4), np.float32))
    with pytest.raises(ValueError, match="cache full: position 7 \\+ 2 tokens > capacity 8"):
        device.write(7, new, new)


# --------------------------------------------------------------------------- buffers reused
def test_steps_allocate_nothing_and_the_cache_stays_in_its_two_buffers(monkeypatch):
    manifest = load_manifest(default_engine_dir())
    m = manifest.model
    cross = np.random.default_rng(0).standard_normal((m.n_layers, 2, m.n_heads, m.num_visual_tokens, m.head_dim),
                                                     np.float32)
    with OnnxRuntimeBackend(manifest, BackendOptions(threads=1, io_binding=True)) as backend:
        stepper = backend.decoder_stepper(cross, cross)
        state = stepper.state
        pointers = state.cache.buffer_pointers()
        assert len(pointers) == 4
        fixed = (state.new_k.data_ptr(), state.new_v.data_ptr(), state.logits.ctypes.data)
        made = []
        for factory in ("ortvalue_from_numpy", "ortvalue_from_shape_and_type"):
            original = getattr(ort.OrtValue, factory)
            monkeypatch.setattr(ort.OrtValue, factory, lambda *a, _o=original, **k: made.append(a) or _o(*a, **k))
        tokens = np.array([1, 2], np.int64)
        for position in range(5):
            stepper.step(tokens, position)
            stepper.reorder(np.array([1, 1]))
            assert state.cache.k.data_ptr() in pointers and state.cache.v.data_ptr() in pointers
        assert made == [], "a step or reorder allocated an OrtValue"
        assert (state.new_k.data_ptr(), state.new_v.data_ptr(), state.logits.ctypes.data) == fixed
        monkeypatch.undo()
        again = backend.decoder_stepper(cross, cross)  # the next search of two rows: same buffers
        assert again.state is state and state.cache.buffer_pointers() == pointers


# --------------------------------------------------------------------------- the option
def test_io_binding_is_on_for_gpu_providers_and_off_for_cpu_unless_asked():
    manifest = load_manifest(default_engine_dir())
    assert OnnxRuntimeBackend(manifest, BackendOptions("cuda")).io_binding
    assert OnnxRuntimeBackend(manifest, BackendOptions("tensorrt")).io_binding
    assert not OnnxRuntimeBackend(manifest, BackendOptions("cuda", io_binding=False)).io_binding
    m = manifest.model
    cross = np.zeros((m.n_layers, 1, m.n_heads, m.num_visual_tokens, m.head_dim), np.float32)
    with OnnxRuntimeBackend(manifest, BackendOptions(threads=1)) as backend:
        assert isinstance(backend.decoder_stepper(cross, cross), CacheStepper)
    with OnnxRuntimeBackend(manifest, BackendOptions(threads=1, io_binding=True)) as backend:
        assert isinstance(backend.decoder_stepper(cross, cross), DeviceCacheStepper)
        with pytest.raises(EdgeVLMError, match=r"decoder.cross_k: expected shape"):  # checked once per stepper
            backend.decoder_stepper(cross[:, :, :, :5], cross)
        with pytest.raises(EdgeVLMError, match=r"decoder.cross_v: expected float32"):
            backend.decoder_stepper(cross, cross.astype(np.float16))
