"""The runner contract: a backend written against ``runtime.backends.base`` runs captions
and answers, feeds are checked before any backend sees them, and the lifecycle holds."""

from __future__ import annotations

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.backends import BACKENDS, Backend, BackendOptions, create_backend, register_backend
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.manifest import load_manifest


class ReferenceBackend(Backend):
    """onnx's pure-Python reference evaluator as a backend: a second, independent executor."""

    name = "onnx-reference"

    def _open(self):
        self.evaluators = {g: ReferenceEvaluator(self.manifest.graph_path(g)) for g in self.manifest.graphs}

    def _close(self):
        self.evaluators.clear()

    def _run(self, graph, feeds):
        names = list(self.manifest.graph(graph).output_names)
        return dict(zip(names, self.evaluators[graph].run(names, feeds)))


@pytest.fixture()
def reference_backend():
    register_backend("onnx-reference", ReferenceBackend)
    yield "onnx-reference"
    BACKENDS.pop("onnx-reference")


def test_a_backend_written_against_the_contract_captions_and_answers(tiny_engine_master, reference_backend):
    images = [np.full((48, 64, 3), value, np.uint8) + np.arange(64, dtype=np.uint8)[None, :, None] for value in (60, 150)]
    with CaptionEngine(tiny_engine_master) as ours, CaptionEngine(tiny_engine_master, backend=reference_backend) as ref:
        assert ref.backend.name == "onnx-reference"
        pixels = np.stack([ours.preprocess(image) for image in images])
        for beam in (1, 2):
            assert ref.generate(ref.see(pixels).visual, ref.settings(beam)) == ours.generate(ours.see(pixels).visual, ours.settings(beam))
        questions = ["is there a dog?", "what is the man doing?"]
        theirs, mine = ref.answer_visual(ref.see(pixels[:1]).visual, questions), ours.answer_visual(ours.see(pixels[:1]).visual, questions)
        assert [a.answer for a in theirs] == [a.answer for a in mine]
        assert [a.probability for a in theirs] == pytest.approx([a.probability for a in mine], abs=1e-4)


@pytest.mark.parametrize("change, message", [
    (lambda f: f.pop("cross_v"), r"missing \['cross_v'\]"),
    (lambda f: f.update(extra=np.zeros(1, np.float32)), r"unexpected \['extra'\]"),
    (lambda f: f.update(input_ids=f["input_ids"].astype(np.int32)), r"decoder.input_ids: expected int64"),
    (lambda f: f.update(cache_k=f["cache_k"][:, :, :, :3]), r"decoder.cache_k: expected shape"),
    (lambda f: f.update(input_ids=np.zeros((2, 1), np.int64)), r"axis 'batch' is 1 but 2 in input_ids"),
])
def test_feeds_are_checked_before_the_backend_runs(tiny_engine_master, change, message):
    manifest = load_manifest(tiny_engine_master)
    m = manifest.model
    cache = np.zeros((m.n_layers, 1, m.n_heads, m.cache_capacity, m.head_dim), np.float32)
    cross = np.zeros((m.n_layers, 1, m.n_heads, m.num_visual_tokens, m.head_dim), np.float32)
    feeds = {"input_ids": np.zeros((1, 1), np.int64), "position": np.zeros((), np.int64),
             "prefix_len": np.zeros((), np.int64), "cache_k": cache, "cache_v": cache, "cross_k": cross, "cross_v": cross}
    with create_backend(manifest) as backend:
        assert set(backend.run("decoder", dict(feeds))) == {"logits", "new_k", "new_v"}
        change(feeds)
        with pytest.raises(EdgeVLMError, match=message):
            backend.run("decoder", feeds)


def test_lifecycle_and_registry(tiny_engine_master):
    manifest = load_manifest(tiny_engine_master)
    backend = create_backend(manifest, options=BackendOptions(threads=1))
    assert backend.is_open and [s.name for s in backend.input_metadata("vision")] == ["pixels"]
    backend.close()
    with pytest.raises(EdgeVLMError, match="backend is closed"):
        backend.run("vision", {"pixels": np.zeros((1, 3, 64, 64), np.float32)})
    with pytest.raises(EdgeVLMError, match="unknown backend 'tensorflow'; choose one of onnxruntime"):
        create_backend(manifest, "tensorflow")
    with pytest.raises(EdgeVLMError, match="unknown provider 'rocm'"):
        create_backend(manifest, options=BackendOptions(provider="rocm"))
    with pytest.raises(EdgeVLMError, match="has no graph 'encoder'"):
        create_backend(manifest).run("encoder", {})
