"""The optional single-token ``decoder_step`` graph (export/step_graph.py): the same logits,
cache rows and token ids as the general decoder graph and PyTorch; engines without it, or
with its older stacked-input form, run with the same ids."""

import os
import shutil

import numpy as np
import onnx
import pytest
import torch

from edgevlm.errors import EdgeVLMError
from edgevlm.export.step_graph import DecoderStepGraph
from edgevlm.generate import generate_from_pixels, search_settings
from edgevlm.model_io import load_model
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.kv_cache import KVCache
from edgevlm.runtime.manifest import load_manifest
from edgevlm.runtime.preprocess import read_image_bgr
from edgevlm.runtime.steppers import STEP_GRAPH, CacheStepper, step_graph
from tests.support import SAMPLES

PHOTOS = [os.path.join(SAMPLES, n) for n in ("coffee.jpg", "chelsea.jpg", "astronaut.jpg")]


def _without_step_graph(engine_dir: str) -> None:
    """Make ENGINE_DIR an engine from before decoder_step: no file, no manifest entry."""
    manifest = load_manifest(engine_dir)
    os.remove(manifest.graph_path(STEP_GRAPH))
    graphs = {k: v for k, v in manifest.graphs.items() if k != STEP_GRAPH}
    files = {k: v for k, v in manifest.files.items() if k != STEP_GRAPH}
    manifest.replace(graphs=graphs, files=files).save(engine_dir)


def test_step_graph_is_static_but_the_batch_and_has_no_shape_plumbing(tiny_engine_master):
    manifest = load_manifest(tiny_engine_master)
    spec = manifest.graph(STEP_GRAPH)
    assert not spec.takes("prefix_len")
    assert spec.inputs[0].shape == ("batch", 1)
    assert all(dim == "batch" or isinstance(dim, int) for s in spec.inputs + spec.outputs for dim in s.shape)
    ops = [n.op_type for n in onnx.load(manifest.graph_path(STEP_GRAPH)).graph.node]
    general = [n.op_type for n in onnx.load(manifest.graph_path("decoder")).graph.node]
    assert "Shape" not in ops and ops.count("Transpose") <= general.count("Transpose")
    assert len(ops) < len(general) / 2


def test_manifest_round_trip_keeps_the_step_graph(tiny_engine_dir):
    manifest = load_manifest(tiny_engine_dir)
    manifest.save(tiny_engine_dir)
    again = load_manifest(tiny_engine_dir)
    assert again.graphs[STEP_GRAPH] == manifest.graphs[STEP_GRAPH]
    assert again.files[STEP_GRAPH] == manifest.files[STEP_GRAPH]


def test_step_graph_matches_the_decoder_graph_step_by_step(tiny_engine_master):
    """Teacher-forced over every position, two rows, a reorder midway: logits and the cache
    the two graphs leave behind agree to float rounding."""
    with CaptionEngine(tiny_engine_master) as engine:
        m = engine.manifest.model
        rng = np.random.default_rng(0)
        cross = rng.standard_normal((m.n_layers, 2, m.n_heads, m.num_visual_tokens, m.head_dim)).astype(np.float32)
        steppers = {graph: CacheStepper(engine.backend, KVCache(m.n_layers, 2, m.n_heads, m.cache_capacity, m.head_dim),
                                        cross, cross * 0.5, True, graph) for graph in ("decoder", STEP_GRAPH)}
        for position in range(m.cache_capacity):
            tokens = rng.integers(0, m.vocab_size, 2)
            logits = {g: s.step(tokens, position) for g, s in steppers.items()}
            np.testing.assert_allclose(logits[STEP_GRAPH], logits["decoder"], atol=1e-5, rtol=1e-5)
            if position == 3:
                for s in steppers.values():
                    s.reorder(np.array([1, 1]))
        np.testing.assert_allclose(steppers[STEP_GRAPH].cache.k, steppers["decoder"].cache.k, atol=1e-5)
        np.testing.assert_allclose(steppers[STEP_GRAPH].cache.v, steppers["decoder"].cache.v, atol=1e-5)


def test_step_module_matches_the_model_in_torch(tiny_model_master):
    model, _ = load_model(tiny_model_master)
    cfg = model.cfg.decoder
    step = DecoderStepGraph(model).eval()
    torch.manual_seed(0)
    cache = torch.randn(cfg.n_layers, 3, cfg.n_heads, cfg.max_len, cfg.head_dim)
    cross = torch.randn(cfg.n_layers, 3, cfg.n_heads, model.cfg.num_visual_tokens, cfg.head_dim)
    ids = torch.tensor([[4], [5], [6]])
    with torch.no_grad():
        for position in (0, 5, cfg.max_len - 1):
            want = model.decoder(ids, cross, cross, cache, cache * 2, position=torch.tensor(position),
                                 prefix_len=torch.tensor(0))
            got = step(ids, torch.tensor(position), *cache, *(cache * 2), *cross, *cross)  # one input per layer
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("beam", [1, 3])
def test_ids_identical_with_and_without_the_step_graph(tiny_engine_dir, tiny_model_master, tmp_path, beam):
    """The step graph is what the search steps on (numpy-cache stepper), and an engine from
    before it (no decoder_step) still loads and gives the same ids, both equal to PyTorch's."""
    old = str(tmp_path / "old")
    shutil.copytree(tiny_engine_dir, old)
    _without_step_graph(old)
    model, _ = load_model(tiny_model_master)
    pixels = None
    ids = {}
    for name, folder in (("new", tiny_engine_dir), ("old", old)):
        with CaptionEngine(folder) as engine:
            assert step_graph(engine.manifest) == (STEP_GRAPH if name == "new" else "decoder")
            if pixels is None:
                pixels = np.stack([engine.preprocess(read_image_bgr(p)) for p in PHOTOS])
            ids[name] = engine.generate(engine.encode(pixels)[0], engine.settings(beam))
    theirs = generate_from_pixels(model, torch.from_numpy(pixels), search_settings(model.cfg, beam))
    assert ids["new"] == ids["old"] == theirs
    assert any(len(i) > 1 for i in theirs)


class _StackedStep(torch.nn.Module):
    """The step graph as engines exported before per-layer inputs have it: stacked (L,...) cache
    and cross K/V, indexed inside the graph."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def forward(self, input_ids, position, cache_k, cache_v, cross_k, cross_v):
        return self.step(input_ids, position, *cache_k.unbind(0), *cache_v.unbind(0), *cross_k.unbind(0),
                         *cross_v.unbind(0))


def _with_stacked_step_graph(engine_dir: str, model) -> None:
    """Replace ENGINE_DIR's step graph by the stacked one, as an older export wrote it."""
    from edgevlm.export.onnx_export import _export_graph, _file_entry
    from edgevlm.runtime.manifest import GraphSpec

    manifest = load_manifest(engine_dir)
    decoder = manifest.graph("decoder")
    fixed = lambda s: type(s)(s.name, s.dtype, tuple(1 if d == "tokens" else d for d in s.shape))  # noqa: E731
    specs = {"inputs": [fixed(s) for s in decoder.inputs if s.name != "prefix_len"],
             "outputs": [fixed(s) for s in decoder.outputs]}
    _export_graph(_StackedStep(DecoderStepGraph(model)).eval(), specs, manifest.graph_path(STEP_GRAPH), 17)
    graphs = dict(manifest.graphs, **{STEP_GRAPH: GraphSpec(STEP_GRAPH, tuple(specs["inputs"]),
                                                              tuple(specs["outputs"]))})
    files = dict(manifest.files, **{STEP_GRAPH: _file_entry(engine_dir, manifest.files[STEP_GRAPH].path)})
    manifest.replace(graphs=graphs, files=files).save(engine_dir)


@pytest.mark.parametrize("beam", [1, 3])
def test_an_engine_with_the_stacked_step_graph_still_runs_with_the_same_ids(tiny_engine_dir, tiny_model_master,
                                                                             tmp_path, beam):
    old = str(tmp_path / "stacked")
    shutil.copytree(tiny_engine_dir, old)
    model, _ = load_model(tiny_model_master)
    with torch.no_grad():
        _with_stacked_step_graph(old, model)
    ids = {}
    for folder in (tiny_engine_dir, old):
        with CaptionEngine(folder) as engine:
            assert engine.manifest.graph(STEP_GRAPH).takes("cache_k") == (folder == old)
            pixels = np.stack([engine.preprocess(read_image_bgr(p)) for p in PHOTOS])
            ids[folder] = engine.generate(engine.encode(pixels)[0], engine.settings(beam))
    assert ids[old] == ids[tiny_engine_dir] and any(len(i) > 1 for i in ids[old])


def test_captioning_never_opens_the_general_decoder(tiny_engine_dir):
    """Where decoder_step exists, a caption's one-token prefill runs on it, and the general
    graph's session is made only when a longer prompt (a question) first needs it: with the
    same logits as an engine that opened it up front."""
    with CaptionEngine(tiny_engine_dir) as engine:
        pixels = np.stack([engine.preprocess(read_image_bgr(p)) for p in PHOTOS[:2]])
        visual = engine.encode(pixels)[0]
        engine.generate(visual, engine.settings(3))
        assert "decoder" not in engine.backend.sessions and STEP_GRAPH in engine.backend.sessions
        prompt = np.array([[engine.manifest.tokens.bos, 5, 6]] * 2, np.int64)
        lazily = engine.backend.decoder_stepper(*engine.cross_kv(visual)).prefill(prompt)
        assert "decoder" in engine.backend.sessions
        engine.backend._open_session("decoder")  # as an engine that opened it up front would have it
        again = engine.backend.decoder_stepper(*engine.cross_kv(visual)).prefill(prompt)
    np.testing.assert_array_equal(lazily, again)
    assert lazily.shape == (2, engine.manifest.model.vocab_size)


def test_the_step_graph_runs_on_one_thread(tiny_engine_dir):
    """Its per-token work is too small to share: one intra-op thread, whatever the others get."""
    with CaptionEngine(tiny_engine_dir, threads=2) as engine:
        threads = {g: s.get_session_options().intra_op_num_threads for g, s in engine.backend.sessions.items()}
    assert threads[STEP_GRAPH] == 1 and threads["vision"] == 2


def test_an_unknown_extra_graph_is_still_refused(tiny_engine_dir):
    manifest = load_manifest(tiny_engine_dir)
    graphs = dict(manifest.graphs)
    graphs["decoder_fast"] = graphs[STEP_GRAPH]
    manifest.replace(graphs=graphs).save(tiny_engine_dir)
    with pytest.raises(EdgeVLMError, match="decoder_fast"):
        CaptionEngine(tiny_engine_dir)
