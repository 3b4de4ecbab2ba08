"""This machine's optimized copies of an engine's graphs (runtime/optimized_graphs.py): made on
the first start, loaded as they are afterwards, keyed so they cannot go stale, and never in the
way when the cache is broken, switched off or unwritable."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest

from edgevlm.runtime.backends.onnxruntime_backend import session_options
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.manifest import load_manifest
from edgevlm.runtime.optimized_graphs import open_cpu_session, optimized_graph_path
import edgevlm.runtime.optimized_graphs as optimized_graphs
from tests.support import onnx_model


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEVLM_GRAPH_CACHE", raising=False)
    return tmp_path / "cache" / "optimized-graphs"


def _vision(engine_dir):
    manifest = load_manifest(engine_dir)
    return manifest.graph_path("vision"), manifest.files[manifest.graphs["vision"].file].sha256


def _pixels(engine_dir):
    size = load_manifest(engine_dir).preprocess.image_size
    return np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)


def test_the_first_start_keeps_an_optimized_copy_and_the_next_loads_it_with_equal_outputs(tiny_engine_dir, cache_dir):
    path, sha = _vision(tiny_engine_dir)
    first = open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"])
    cached = optimized_graph_path(sha, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    assert os.path.isfile(cached) and os.path.dirname(cached) == str(cache_dir)
    # the copy and its weights file, no staging folder left behind
    assert sorted(os.listdir(cache_dir)) == [os.path.basename(cached), os.path.basename(cached) + ".data"]
    assert os.path.getsize(cached + ".data") > os.path.getsize(cached)  # the weights live outside the graph
    inode = os.stat(cached).st_ino
    second = open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"])
    assert os.stat(cached).st_ino == inode  # loaded, not written again (a new copy is renamed in)
    feeds = {"pixels": _pixels(tiny_engine_dir)}
    for a, b in zip(first.run(None, feeds), second.run(None, feeds)):
        np.testing.assert_array_equal(a, b)


def test_engine_captions_are_identical_with_and_without_the_cache(tiny_engine_dir, cache_dir, monkeypatch):
    image = (np.random.default_rng(1).uniform(0, 255, (40, 50, 3))).astype(np.uint8)
    monkeypatch.setenv("EDGEVLM_GRAPH_CACHE", "0")
    plain = CaptionEngine(tiny_engine_dir, threads=1).caption_images([image], 2)
    assert not cache_dir.exists()  # switched off: nothing written
    monkeypatch.delenv("EDGEVLM_GRAPH_CACHE")
    making = CaptionEngine(tiny_engine_dir, threads=1).caption_images([image], 2)
    # vision, cross_kv, decoder_step ("decoder" is made on first use), each with its weights file
    assert len([n for n in os.listdir(cache_dir) if n.endswith(".onnx")]) == 3
    assert len([n for n in os.listdir(cache_dir) if n.endswith(".onnx.data")]) == 3
    loading = CaptionEngine(tiny_engine_dir, threads=1).caption_images([image], 2)
    assert plain == making == loading


def test_a_damaged_copy_is_replaced_not_used(tiny_engine_dir, cache_dir):
    path, sha = _vision(tiny_engine_dir)
    open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"])
    cached = optimized_graph_path(sha, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    whole = os.path.getsize(cached)
    with open(cached, "r+b") as f:
        f.truncate(whole // 3)
    session = open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"])
    assert session.run(None, {"pixels": _pixels(tiny_engine_dir)})
    assert os.path.getsize(cached) == whole


def test_a_copy_with_a_damaged_weights_file_is_replaced_not_used(tiny_engine_dir, cache_dir):
    path, sha = _vision(tiny_engine_dir)
    feeds = {"pixels": _pixels(tiny_engine_dir)}
    expected = open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"]).run(None, feeds)
    weights = optimized_graph_path(sha, ort.GraphOptimizationLevel.ORT_ENABLE_ALL) + ".data"
    whole = os.path.getsize(weights)
    with open(weights, "r+b") as f:
        f.truncate(whole // 2)
    session = open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"])
    for a, b in zip(session.run(None, feeds), expected):
        np.testing.assert_array_equal(a, b)
    assert os.path.getsize(weights) == whole


def test_copies_are_named_by_graph_onnxruntime_level_and_cpu(monkeypatch, cache_dir):
    level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    name = optimized_graph_path("a" * 64, level)
    assert optimized_graph_path("a" * 64, level) == name
    others = {optimized_graph_path("b" * 64, level), optimized_graph_path("a" * 64, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)}
    monkeypatch.setattr(ort, "__version__", "0.0.1")
    others.add(optimized_graph_path("a" * 64, level))
    monkeypatch.undo()
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(cache_dir.parent))
    monkeypatch.setattr(optimized_graphs, "machine_fingerprint", lambda: "x86_64|another CPU|avx2 fma")
    others.add(optimized_graph_path("a" * 64, level))
    assert name not in others and len(others) == 4


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_cache_still_gives_a_session(tiny_engine_dir, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(locked))
    path, sha = _vision(tiny_engine_dir)
    session = open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"])
    assert session.run(None, {"pixels": _pixels(tiny_engine_dir)})
    assert os.listdir(locked) == []


def test_a_cache_path_that_is_a_file_still_gives_a_session(tiny_engine_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(blocker))
    path, sha = _vision(tiny_engine_dir)
    session = open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"])
    assert session.run(None, {"pixels": _pixels(tiny_engine_dir)})


def test_an_interrupted_first_start_leaves_no_partial_copy(tiny_engine_dir, cache_dir, monkeypatch):
    path, sha = _vision(tiny_engine_dir)
    real = ort.InferenceSession

    def made_then_terminated(*args, **kwargs):
        real(*args, **kwargs)  # the optimized copy is written here ...
        raise SystemExit(143)  # ... and SIGTERM's handler exits before it is renamed into place

    monkeypatch.setattr(optimized_graphs.ort, "InferenceSession", made_then_terminated)
    with pytest.raises(SystemExit):
        open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"])
    assert os.listdir(cache_dir) == []


def test_partial_copies_a_killed_process_left_are_removed_after_an_hour(tiny_engine_dir, cache_dir):
    cache_dir.mkdir(parents=True)
    old, fresh = cache_dir / "abc-def.onnx.999.partial", cache_dir / "abc-def.onnx.998.partial"
    old.write_bytes(b"half a graph")
    fresh.write_bytes(b"being written")
    os.utime(old, (1, 1))
    old_folder = cache_dir / "abc-def.onnx.997-1a2b.partial"  # this version stages a graph and its weights here
    old_folder.mkdir()
    (old_folder / "abc-def.onnx.data").write_bytes(b"half the weights")
    os.utime(old_folder, (1, 1))
    path, sha = _vision(tiny_engine_dir)
    open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"])
    assert not old.exists() and not old_folder.exists()
    assert fresh.exists()  # a live process may still be writing the fresh one


def test_the_least_recently_used_copies_go_when_the_cache_outgrows_its_limit(tmp_path):
    copies = {}
    for name, used_at in (("a-oldest", 100), ("b-older", 200), ("c-recent", 300), ("d-new", 400)):
        copies[name] = tmp_path / f"{name}.onnx"
        copies[name].write_bytes(b"x" * 1000)
        os.utime(copies[name], (used_at, used_at))
    (tmp_path / "e-other.onnx.7.partial").write_bytes(b"x" * 5000)  # not a copy: never counted
    optimized_graphs._prune(str(tmp_path), keep=str(copies["d-new"]), limit=2500)
    assert [n for n in sorted(copies) if copies[n].exists()] == ["c-recent", "d-new"]
    optimized_graphs._prune(str(tmp_path), keep=str(copies["d-new"]), limit=500)
    assert [n for n in sorted(copies) if copies[n].exists()] == ["d-new"]  # the new copy always stays


def test_a_new_copy_prunes_the_cache(tiny_engine_dir, cache_dir, monkeypatch):
    cache_dir.mkdir(parents=True)
    stale = cache_dir / "0000-stale.onnx"
    stale.write_bytes(b"x" * 1000)
    monkeypatch.setattr(optimized_graphs, "CACHE_LIMIT_BYTES", 1)
    path, sha = _vision(tiny_engine_dir)
    open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"])
    kept = os.path.basename(optimized_graph_path(sha, ort.GraphOptimizationLevel.ORT_ENABLE_ALL))
    assert sorted(os.listdir(cache_dir)) == [kept, kept + ".data"]


def test_a_pruned_copy_takes_its_weights_file_and_orphan_weights_go(tmp_path):
    for name, used_at in (("a-old", 100), ("b-new", 200)):
        (tmp_path / f"{name}.onnx").write_bytes(b"g" * 100)
        (tmp_path / f"{name}.onnx.data").write_bytes(b"w" * 1000)
        os.utime(tmp_path / f"{name}.onnx", (used_at, used_at))
    (tmp_path / "c-gone.onnx.data").write_bytes(b"w" * 10)  # its graph was removed an hour ago
    os.utime(tmp_path / "c-gone.onnx.data", (1, 1))
    (tmp_path / "d-coming.onnx.data").write_bytes(b"w" * 10)  # renamed in first: its graph comes next
    optimized_graphs._prune(str(tmp_path), keep=str(tmp_path / "b-new.onnx"), limit=1500)  # the weights count
    assert sorted(os.listdir(tmp_path)) == ["b-new.onnx", "b-new.onnx.data", "d-coming.onnx.data"]


def test_loading_a_copy_marks_it_used(tiny_engine_dir, cache_dir):
    path, sha = _vision(tiny_engine_dir)
    open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"])
    cached = optimized_graph_path(sha, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    os.utime(cached, (100, 100))
    open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"])
    assert os.path.getmtime(cached) > 100


def test_a_graph_with_its_weights_in_a_separate_file_is_copied_whole(tmp_path, cache_dir):
    """The copy's weights go to its own weights file: it never refers to the source's, which
    is not in the cache folder."""
    path, feeds, expected = _external_weights_graph(tmp_path)
    cached = optimized_graph_path("e" * 64, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    for start in range(2):
        session = open_cpu_session(path, "e" * 64, lambda: session_options(1), ["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, feeds)[0], expected, rtol=1e-6)
    assert os.path.isfile(cached) and os.path.isfile(cached + ".data") and not os.path.exists(cached + ".failed")


def test_a_copy_that_never_loads_back_is_given_up_after_its_second_failure(tmp_path, cache_dir, monkeypatch):
    """An onnxruntime that cannot read the copies it writes: rewritten once, then refused."""
    path, feeds, expected = _external_weights_graph(tmp_path)
    cached = optimized_graph_path("e" * 64, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    real = ort.InferenceSession

    def cannot_read_copies(model, *args, **kwargs):
        if model == cached:
            raise RuntimeError("this onnxruntime cannot load it")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(optimized_graphs.ort, "InferenceSession", cannot_read_copies)
    for start in range(4):
        session = open_cpu_session(path, "e" * 64, lambda: session_options(1), ["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, feeds)[0], expected, rtol=1e-6)
    assert os.path.exists(cached + ".refused") and not os.path.exists(cached) and not os.path.exists(cached + ".data")
    assert not [n for n in os.listdir(cache_dir) if n.endswith(".partial")]


def _external_weights_graph(tmp_path):
    """A one-MatMul graph whose weight lives in m.onnx.data: (path, feeds, expected output)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [weight])
    model = onnx_model(graph, 17)
    path = str(tmp_path / "m.onnx")
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.onnx.data", size_threshold=0)
    feeds = {"x": np.ones((1, 64), np.float32)}
    return path, feeds, ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _shares_the_arena(session) -> bool:
    try:
        return session.get_session_options().get_session_config_entry("session.use_env_allocators") == "1"
    except RuntimeError:  # never set
        return False


def test_cpu_sessions_share_one_arena_and_caption_as_with_their_own(tiny_engine_dir, cache_dir, monkeypatch):
    import edgevlm.runtime.backends.onnxruntime_backend as backend

    engine = CaptionEngine(tiny_engine_dir, threads=1)
    assert engine.backend.sessions and all(map(_shares_the_arena, engine.backend.sessions.values()))
    image = (np.random.default_rng(2).uniform(0, 255, (40, 50, 3))).astype(np.uint8)
    shared = engine.caption_images([image], 2)
    monkeypatch.setattr(backend, "shared_cpu_arena", lambda: False)
    own = CaptionEngine(tiny_engine_dir, threads=1)
    assert not any(map(_shares_the_arena, own.backend.sessions.values()))
    assert own.caption_images([image], 2) == shared


def test_two_writes_of_one_copy_are_byte_identical(tiny_engine_dir, cache_dir):
    """Processes making the same copy at once rename their weights files over each other
    before their graphs: safe only because onnxruntime writes the same bytes each time."""
    path, sha = _vision(tiny_engine_dir)
    cached = optimized_graph_path(sha, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    written = []
    for start in range(2):
        open_cpu_session(path, sha, lambda: session_options(1), ["CPUExecutionProvider"])
        written.append([open(name, "rb").read() for name in (cached, cached + ".data")])
        optimized_graphs._remove(cached)
    assert written[0] == written[1]
