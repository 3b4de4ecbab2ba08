"""The family registry: every family the exporter knows round-trips a tiny model through
export, the runtime and parity validation, and the runtime knows every such family."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.export.families import EXPORT_FAMILIES, detect_family
from edgevlm.runtime.families import FAMILIES
from edgevlm.runtime.manifest import load_manifest


@pytest.mark.parametrize("name", sorted(EXPORT_FAMILIES))
def test_every_family_round_trips_a_tiny_model(name, tmp_path):
    """Export, then parity with the reference (ours: our PyTorch search; Hugging Face families:
    transformers' generate()), greedy and beam 3, then captions through the runtime."""
    from edgevlm.export.onnx_export import export_engine
    from edgevlm.export.validate import validate_engine
    from edgevlm.runtime.engine import CaptionEngine

    family = EXPORT_FAMILIES[name]
    assert name in FAMILIES, "an exportable family the runtime cannot run"
    model_dir = family.write_tiny(str(tmp_path / "model"))
    assert detect_family(model_dir) is family
    manifest = export_engine(model_dir, str(tmp_path / "engine"))
    assert manifest.model.family == name and set(manifest.graphs) == set(family.graph_modules)
    written = json.loads((tmp_path / "engine" / "edgevlm.json").read_text())
    assert load_manifest(str(tmp_path / "engine")).to_json() == written  # every section round-trips exactly
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
    for beam in (1, 3):
        report = validate_engine(str(tmp_path / "engine"), model_dir, images, beam)
        assert report["tokens_identical"] and report["passed"], (beam, report["outputs"])
    with CaptionEngine(str(tmp_path / "engine")) as engine:
        assert engine.family is FAMILIES[name]
        if "caption" in manifest.tasks:
            assert all(isinstance(text, str) for text in engine.caption_images(images))
        else:
            with pytest.raises(EdgeVLMError, match="answers questions only"):
                engine.caption_images(images)
        if engine.answers_questions:
            answers = engine.answer_image(images[0], ["is there a dog?", "what is on the grass?"])
            assert len(answers) == 2 and all(0.0 <= a.probability <= 1.0 for a in answers)


def test_an_unknown_architecture_is_named_with_the_supported_ones(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["Pix2StructForConditionalGeneration"]}))
    with pytest.raises(EdgeVLMError, match="cannot export architecture Pix2StructForConditionalGeneration; "
                                           "supported families: blip, blip-vqa, edgevlm-captioner, git, "
                                           "vision-encoder-decoder"):
        detect_family(str(folder))
    with pytest.raises(EdgeVLMError, match="config.json is missing"):
        detect_family(os.fspath(tmp_path))


@pytest.mark.parametrize("name", ["vision-encoder-decoder", "blip"])
def test_a_tied_lm_head_is_stored_once(name, tmp_path):
    """GPT-2's and BLIP's heads share the word embedding: the decoder graph holds one table."""
    import onnx

    from edgevlm.export.onnx_export import export_engine

    export_engine(EXPORT_FAMILIES[name].write_tiny(str(tmp_path / "model")), str(tmp_path / "engine"))
    manifest = load_manifest(str(tmp_path / "engine"))
    vocab, d = manifest.model.vocab_size, manifest.model.d_model
    graph = onnx.load(manifest.graph_path("decoder")).graph
    tables = [i.name for i in graph.initializer if sorted(i.dims) == sorted([vocab, d])]
    assert len(tables) == 1, tables
