"""A tiny random-init model exported to ONNX and run by the torch-free runtime."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from edgevlm.errors import EdgeVLMError
from edgevlm.export.validate import validate_engine
from edgevlm.generate import generate_from_pixels, search_settings
from edgevlm.model_io import load_model
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.manifest import load_manifest
from edgevlm.runtime.preprocess import read_image_bgr
from tests.support import BLOCK_TORCH, SAMPLES

PHOTOS = [os.path.join(SAMPLES, n) for n in ("coffee.jpg", "chelsea.jpg", "astronaut.jpg")]


def test_engine_files_manifest_and_node_names(tiny_engine_master):
    manifest = load_manifest(tiny_engine_master)
    assert set(manifest.files) == {"vision", "cross_kv", "decoder", "decoder_step", "tokenizer"}
    assert manifest.precision == "fp32" and manifest.schema_version == 1
    assert manifest.exporter["opset"] >= 17
    for graph in ("vision", "cross_kv", "decoder", "decoder_step"):
        model = onnx.load(manifest.graph_path(graph))
        onnx.checker.check_model(model)
        assert [i.name for i in model.graph.input] == list(manifest.graph(graph).input_names)
    names = {n.name for n in onnx.load(manifest.graph_path("cross_kv")).graph.node}
    assert "/decoder/layers.1/cross_attn/kv/MatMul" in names
    for graph in ("decoder", "decoder_step"):  # the same paths: one --exclude pattern means both
        names = {n.name for n in onnx.load(manifest.graph_path(graph)).graph.node}
        assert "/decoder/layers.0/self_attn/qkv/MatMul" in names
    assert not [n for n in os.listdir(os.path.dirname(tiny_engine_master)) if n.startswith(".tmp")]


@pytest.mark.parametrize("beam", [1, 3])
def test_runtime_tokens_equal_pytorch(tiny_engine_master, tiny_model_master, beam):
    engine = CaptionEngine(tiny_engine_master)
    model, _ = load_model(tiny_model_master)
    images = [read_image_bgr(p) for p in PHOTOS]
    pixels = np.stack([engine.preprocess(i) for i in images])
    ours = engine.generate(engine.encode(pixels)[0], engine.settings(beam))
    theirs = generate_from_pixels(model, torch.from_numpy(pixels), search_settings(model.cfg, beam))
    assert ours == theirs
    assert any(len(ids) > 1 for ids in ours)


def test_validate_reports_outputs_within_tolerance(tiny_engine_master, tiny_model_master):
    report = validate_engine(tiny_engine_master, tiny_model_master, [read_image_bgr(p) for p in PHOTOS])
    assert report["passed"] and report["tokens_identical"]
    by_name = {c.name: c for c in report["outputs"]}
    assert set(by_name) == {"vision.visual_tokens", "vision.pooled", "cross_kv.cross_k", "cross_kv.cross_v", "decoder.logits",
                            "decoder_step.logits"}
    assert by_name["decoder.logits"].max_abs < 1e-3


def test_validate_fails_against_another_model(tiny_engine_master, tiny_model_dir):
    from safetensors.torch import load_file, save_file

    path = os.path.join(tiny_model_dir, "model.safetensors")
    state = load_file(path)
    state["decoder.ln_f.weight"] = state["decoder.ln_f.weight"] * 1.5
    save_file(state, path)
    report = validate_engine(tiny_engine_master, tiny_model_dir, [read_image_bgr(PHOTOS[0])])
    assert not report["passed"]
    assert not {c.name: c for c in report["outputs"]}["decoder.logits"].passed


def test_tampered_file_is_refused(tiny_engine_dir):
    with open(os.path.join(tiny_engine_dir, "decoder.onnx"), "ab") as f:
        f.write(b"\0")
    with pytest.raises(EdgeVLMError, match="does not match the sha256"):
        CaptionEngine(tiny_engine_dir)


def test_unknown_schema_and_missing_manifest_are_refused(tiny_engine_dir, tmp_path):
    path = os.path.join(tiny_engine_dir, "edgevlm.json")
    data = json.load(open(path))
    data["schema_version"] = 99
    json.dump(data, open(path, "w"))
    with pytest.raises(EdgeVLMError, match="unknown schema_version 99"):
        CaptionEngine(tiny_engine_dir)
    with pytest.raises(EdgeVLMError, match="edgevlm.json is missing"):
        CaptionEngine(str(tmp_path))


def test_corrupt_onnx_with_matching_hash_is_a_clear_error(tiny_engine_dir):
    from edgevlm.runtime.file_records import sha256_file

    onnx_path = os.path.join(tiny_engine_dir, "vision.onnx")
    open(onnx_path, "wb").write(b"not a model")
    path = os.path.join(tiny_engine_dir, "edgevlm.json")
    data = json.load(open(path))
    data["files"]["vision"]["sha256"] = sha256_file(onnx_path)
    json.dump(data, open(path, "w"))
    with pytest.raises(EdgeVLMError, match="onnxruntime cannot load .*vision.onnx"):
        CaptionEngine(tiny_engine_dir)


def test_runtime_captions_where_torch_cannot_be_imported(tiny_engine_master, tiny_model_master):
    code = BLOCK_TORCH + (
        "from edgevlm.runtime.engine import CaptionEngine\n"
        "from edgevlm.runtime.preprocess import read_image_bgr\n"
        f"engine = CaptionEngine({tiny_engine_master!r})\n"
        f"print(engine.caption_images([read_image_bgr({PHOTOS[0]!r})], 1)[0])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    model, tokenizer = load_model(tiny_model_master)
    engine = CaptionEngine(tiny_engine_master)
    pixels = engine.preprocess(read_image_bgr(PHOTOS[0]))[None]
    expected = tokenizer.decode(generate_from_pixels(model, torch.from_numpy(pixels), search_settings(model.cfg, 1))[0])
    assert result.stdout.strip() == expected


def test_export_never_replaces_a_folder_that_is_not_an_engine(tiny_model_master, tmp_path):
    from edgevlm.export.onnx_export import export_engine

    precious = tmp_path / "runs"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(EdgeVLMError, match="refusing to replace .*not an edgevlm engine"):
        export_engine(tiny_model_master, str(precious))
    assert (precious / "notes.txt").read_text() == "keep me"
    with pytest.raises(EdgeVLMError, match="contains the input"):
        export_engine(tiny_model_master, os.path.dirname(tiny_model_master))
    out = str(tmp_path / "engine")
    export_engine(tiny_model_master, out)
    export_engine(tiny_model_master, out)  # an earlier engine is replaced whole
    assert sorted(os.listdir(out)) == ["cross_kv.onnx", "decoder.onnx", "decoder_step.onnx", "edgevlm.json", "tokenizer.json",
                                   "vision.onnx"]


def test_graph_newer_than_onnxruntime_names_the_upgrade(tiny_engine_dir):
    """An engine written by an onnx newer than this onnxruntime (a Jetson's wheel lags PyPI):
    one line naming both IR versions and the fix, not onnxruntime's C++ constructor."""
    import onnx

    from edgevlm.runtime.file_records import sha256_file

    onnx_path = os.path.join(tiny_engine_dir, "vision.onnx")
    model = onnx.load(onnx_path)
    model.ir_version = 99
    onnx.save(model, onnx_path)
    path = os.path.join(tiny_engine_dir, "edgevlm.json")
    data = json.load(open(path))
    data["files"]["vision"]["sha256"] = sha256_file(onnx_path)
    json.dump(data, open(path, "w"))
    with pytest.raises(EdgeVLMError) as err:
        CaptionEngine(tiny_engine_dir)
    message = str(err.value)
    assert "vision.onnx: it is ONNX IR version 99 and this onnxruntime reads up to" in message
    assert "upgrade onnxruntime" in message and "\n" not in message and "model.cc" not in message
