"""VisionEncoderDecoder with a BERT-style decoder (ViT + ``BertLMHeadModel``): a tiny
random-init folder exports, matches transformers' generate() greedy and beam 3, stores its tied
word embedding once, and the decoder types we do not write graphs for are refused by name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from edgevlm.errors import EdgeVLMError
from edgevlm.export.families.ved_graphs import VED_GRAPH_MODULES, decoder_shape, tiny_ved
from edgevlm.export.families.vision_encoder_decoder import write_tiny_ved


@pytest.fixture(scope="module")
def bert_engine(tmp_path_factory):
    """(tiny ViT + BERT folder, its exported engine folder), exported once for the module."""
    from edgevlm.export.onnx_export import export_engine

    root = tmp_path_factory.mktemp("ved_bert")
    model_dir, engine_dir = write_tiny_ved(str(root / "model"), decoder="bert"), str(root / "engine")
    export_engine(model_dir, engine_dir)
    return model_dir, engine_dir


@pytest.mark.parametrize("beam", [1, 3])
def test_a_bert_decoder_engine_matches_generate(bert_engine, beam):
    """Every graph output within tolerance (decoder logits teacher-forced on generate()'s own
    ids), and the same ids as generate(): positions and the zero token type as HF computes them."""
    from edgevlm.export.validate import validate_engine

    model_dir, engine_dir = bert_engine
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
    report = validate_engine(engine_dir, model_dir, images, beam)
    checks = {check.name: check for check in report["outputs"]}
    assert checks["decoder.logits"].passed and checks["cross_kv.cross_k"].passed, report["outputs"]
    assert report["tokens_identical"] and report["passed"], report["outputs"]
    assert any(theirs for _, theirs in report["captions"]), "generate() stopped at once: nothing was compared"


def test_the_tied_word_embedding_is_stored_once(bert_engine):
    """BERT ties its LM head to the word embedding: one (d,V) table serves the Gather and the
    head MatMul, not two copies; the head's own bias is kept."""
    from edgevlm.runtime.manifest import load_manifest

    _, engine_dir = bert_engine
    m = load_manifest(engine_dir).model
    graph = onnx.load(f"{engine_dir}/decoder.onnx")
    tables = [t.name for t in graph.graph.initializer if sorted(t.dims) == sorted([m.d_model, m.vocab_size])]
    assert len(tables) == 1, tables
    assert [t for t in graph.graph.initializer if list(t.dims) == [m.vocab_size]], "the LM head bias is missing"


@torch.no_grad()
def test_an_untied_bert_head_matches_the_model():
    """A checkpoint with tie_word_embeddings false keeps its own head weights: the decoder graph
    (fresh cache, teacher-forced) gives the model's own logits."""
    model = tiny_ved(decoder="bert")
    head = model.decoder.cls.predictions.decoder
    head.weight = torch.nn.Parameter(head.weight.detach().clone().normal_(0.0, 0.3))
    decoder = VED_GRAPH_MODULES["decoder"](model)
    assert not decoder.tied
    pixels = torch.randn(2, 3, 32, 32)
    visual, _ = VED_GRAPH_MODULES["vision"](model)(pixels)
    cross_k, cross_v = VED_GRAPH_MODULES["cross_kv"](model)(visual)
    layers, heads, hd, _, _ = decoder_shape(model)
    cache = torch.zeros(layers, 2, heads, 8, hd)
    ids = torch.tensor([[1, 5, 7, 9], [1, 4, 4, 8]])
    ours, _, _ = decoder(ids, torch.tensor(0), cache, cache, cross_k, cross_v)
    theirs = model(pixel_values=pixels, decoder_input_ids=ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_a_decoder_without_graphs_is_refused_naming_the_supported_ones(bert_engine, tmp_path):
    from edgevlm.export.onnx_export import export_engine

    folder = tmp_path / "hf"
    shutil.copytree(bert_engine[0], folder)
    config = json.loads((folder / "config.json").read_text())
    config["decoder"]["model_type"] = "roberta"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EdgeVLMError, match="'roberta' decoder is not supported yet; supported decoders: gpt2, bert"):
        export_engine(str(folder), str(tmp_path / "engine"))
    assert not (tmp_path / "engine").exists()
