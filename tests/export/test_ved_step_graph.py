"""VisionEncoderDecoder engines, GPT-2 and BERT decoders alike, carry the single-token
``decoder_step`` graph (export/families/ved_step_graph.py): the same logits and cache rows as
the general decoder graph at every position, fewer nodes, the cache and cross K/V one input
per layer."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgevlm.runtime.manifest import load_manifest
from edgevlm.runtime.steppers import STEP_GRAPH
from edgevlm.runtime.token_embeddings import TOKEN_EMBEDDINGS, TokenEmbeddings


@pytest.fixture(scope="module", params=["gpt2", "bert"])
def ved_engine(request, tmp_path_factory):
    from edgevlm.export.families.vision_encoder_decoder import write_tiny_ved
    from edgevlm.export.onnx_export import export_engine

    root = tmp_path_factory.mktemp(f"ved_{request.param}")
    export_engine(write_tiny_ved(str(root / "model"), decoder=request.param), str(root / "engine"))
    return str(root / "engine")


def test_the_step_graph_is_listed_static_and_smaller(ved_engine):
    manifest = load_manifest(ved_engine)
    spec = manifest.graph(STEP_GRAPH)
    layers = manifest.model.n_layers
    assert spec.input_names == ("word_embeds", "position", *(f"{name}_{i}" for name in ("cache_k", "cache_v",
                                                                                       "cross_k", "cross_v")
                                                             for i in range(layers)))
    assert "Split" not in [n.op_type for n in onnx.load(manifest.graph_path(STEP_GRAPH)).graph.node if
                           n.input and n.input[0].startswith(("cache", "cross"))]  # no copy of a stacked input
    assert spec.inputs[0].shape == ("batch", 1, manifest.model.d_model)
    # no token lookup in the step: the tied table is read by the head alone (token_embeddings.py)
    assert "Gather" not in {n.op_type for n in onnx.load(manifest.graph_path(STEP_GRAPH)).graph.node
                            if n.input and n.input[0] == "word_embeds"}
    assert not [n for n in onnx.load(manifest.graph_path(STEP_GRAPH)).graph.node
                if n.op_type == "Gather" and "input_ids" in n.input]
    step = [n.op_type for n in onnx.load(manifest.graph_path(STEP_GRAPH)).graph.node]
    general = [n.op_type for n in onnx.load(manifest.graph_path("decoder")).graph.node]
    assert step.count("Transpose") < general.count("Transpose") and step.count("Where") <= 1 < general.count("Where")
    assert len(step) < len(general)


def test_step_logits_and_cache_rows_equal_the_general_graphs_at_every_position(ved_engine):
    manifest = load_manifest(ved_engine)
    m = manifest.model
    general = ort.InferenceSession(manifest.graph_path("decoder"), providers=["CPUExecutionProvider"])
    step = ort.InferenceSession(manifest.graph_path(STEP_GRAPH), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    rows = 2
    cache = (m.n_layers, rows, m.n_heads, m.cache_capacity, m.head_dim)
    cross = (m.n_layers, rows, m.n_heads, m.num_visual_tokens, m.head_dim)
    cache_k, cache_v = np.zeros(cache, np.float32), np.zeros(cache, np.float32)
    cross_k, cross_v = (rng.standard_normal(cross).astype(np.float32) for _ in range(2))
    embeddings = TokenEmbeddings(manifest.path(TOKEN_EMBEDDINGS))
    for position in range(m.cache_capacity - 1):
        feeds = {"input_ids": rng.integers(0, m.vocab_size, (rows, 1)), "position": np.array(position),
                 "cache_k": cache_k, "cache_v": cache_v, "cross_k": cross_k, "cross_v": cross_v}
        layered = {f"{name}_{i}": feeds[name][i] for name in ("cache_k", "cache_v", "cross_k", "cross_v")
                   for i in range(m.n_layers)}
        want = general.run(None, feeds)
        rows_of = embeddings.rows(feeds["input_ids"])  # what the stepper feeds (runtime/token_embeddings.py)
        got = step.run(None, {"word_embeds": rows_of, "position": feeds["position"], **layered})
        for a, b in zip(want, got):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
        cache_k[:, :, :, position] = want[1][:, :, :, 0]  # the caller writes the new row, as KVCache does
        cache_v[:, :, :, position] = want[2][:, :, :, 0]


def test_the_token_rows_file_is_the_decoders_word_embedding(ved_engine):
    """token_embeddings.npy holds the model's (V,d) table, rows read one token at a time; an id
    outside the vocabulary is one line, not a read past the end."""
    from edgevlm.errors import EdgeVLMError

    manifest = load_manifest(ved_engine)
    table = np.load(manifest.path(TOKEN_EMBEDDINGS))
    assert table.shape == (manifest.model.vocab_size, manifest.model.d_model) and table.dtype == np.float32
    embeddings = TokenEmbeddings(manifest.path(TOKEN_EMBEDDINGS))
    ids = np.array([[3], [0], [manifest.model.vocab_size - 1]])
    np.testing.assert_array_equal(embeddings.rows(ids), table[ids[:, 0]][:, None, :])
    with pytest.raises(EdgeVLMError, match=f"token id {manifest.model.vocab_size} is outside the vocabulary"):
        embeddings.rows(np.array([manifest.model.vocab_size]))
    embeddings.close()


def test_a_step_taking_both_or_neither_token_inputs_or_rows_without_their_file_is_refused(ved_engine):
    """runtime/families/hf.py: a VED step takes its token as an id (older engines) or as a row."""
    import dataclasses

    from edgevlm.runtime.families.hf import _step_reads_one_token
    from edgevlm.runtime.manifest import TensorSpec

    manifest = load_manifest(ved_engine)
    assert _step_reads_one_token(manifest) is None
    spec = manifest.graph(STEP_GRAPH)

    def with_inputs(inputs, files=manifest.files):
        graphs = dict(manifest.graphs) | {STEP_GRAPH: dataclasses.replace(spec, inputs=tuple(inputs))}
        return manifest.replace(graphs=graphs, files=files)

    ids = TensorSpec("input_ids", "int64", ("batch", 1))
    older = with_inputs([ids, *spec.inputs[1:]])  # an engine exported before: its id
    assert _step_reads_one_token(older) is None
    assert "it takes ['input_ids', 'word_embeds']" in _step_reads_one_token(with_inputs([ids, *spec.inputs]))
    assert "it takes neither" in _step_reads_one_token(with_inputs(spec.inputs[1:]))
    no_file = {k: v for k, v in manifest.files.items() if k != TOKEN_EMBEDDINGS}
    assert "lists no token_embeddings file" in _step_reads_one_token(with_inputs(spec.inputs, no_file))
