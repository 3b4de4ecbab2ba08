"""The typed manifest: the only reader and writer of edgevlm.json, strict about what it
reads, and confining engine files to the engine folder."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess

import numpy as np
import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.manifest import Manifest, load_manifest
from edgevlm.runtime.preprocess import preprocess_bgr
from tests.support import REPO_ROOT, edit_manifest

SHIPPED = os.path.join(REPO_ROOT, "edgevlm", "assets", "default_engine")


def test_shipped_manifest_round_trips_exactly():
    with open(os.path.join(SHIPPED, "edgevlm.json")) as f:
        data = json.load(f)
    manifest = load_manifest(SHIPPED)
    assert manifest.to_json() == data
    assert Manifest.from_json(manifest.to_json(), SHIPPED) == manifest
    assert manifest.model.family == "edgevlm-captioner" and manifest.graph("decoder").takes("prefix_len")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(schema_version=7), "unknown schema_version 7"),
    (lambda d: d.update(colour_space="YUV"), "unknown field 'colour_space'"),
    (lambda d: d["model"].update(rope_theta=10000), "unknown field 'model.rope_theta'"),
    (lambda d: d["model"].pop("n_heads"), "model.n_heads is missing"),
    (lambda d: d["model"].update(n_layers="4"), "model.n_layers is '4', expected int"),
    (lambda d: d["generation"].update(banned_ids=[0, "x"]), r"generation.banned_ids\[1\] is 'x'"),
    (lambda d: d["preprocess"].update(resize_mode="letterbox"), "preprocess.resize_mode is 'letterbox'; this runtime supports"),
    (lambda d: d["preprocess"].update(layout="NHWC"), "preprocess.layout is 'NHWC'"),
    (lambda d: d.update(tasks=["caption", "ocr"]), r"tasks lists \['ocr'\]"),
    (lambda d: d["model"].update(family="pix2struct"), "cannot run model family 'pix2struct'.*it runs: blip, blip-vqa, "
                                                         "edgevlm-captioner, git, vision-encoder-decoder"),
    (lambda d: d["model"].update(cache_capacity=99), "decoder.cache_k has shape"),
    (lambda d: d["graphs"]["vision"]["outputs"].append({"name": "boxes", "dtype": "float32", "shape": [1]}),
     r"graph 'vision' lacks outputs \[\] or has unknown outputs \['boxes'\]"),
])
def test_fields_the_runtime_cannot_honour_refuse_the_engine(tiny_engine_dir, change, message):
    edit_manifest(tiny_engine_dir, change)
    with pytest.raises(EdgeVLMError, match=message):
        CaptionEngine(tiny_engine_dir)


@pytest.mark.parametrize("path", ["../../../etc/passwd", "/etc/passwd", "sub/../../x.onnx", "./vision.onnx", ""])
def test_engine_files_must_be_plain_names_inside_the_folder(tiny_engine_dir, path):
    edit_manifest(tiny_engine_dir, lambda d: d["files"]["vision"].update(path=path))
    with pytest.raises(EdgeVLMError, match=re.escape(f"files.vision.path is {path!r}")):
        load_manifest(tiny_engine_dir, verify=False)


def test_a_symlink_leaving_the_engine_folder_is_refused(tiny_engine_dir, tmp_path):
    outside = tmp_path / "outside.onnx"
    os.replace(os.path.join(tiny_engine_dir, "vision.onnx"), outside)
    os.symlink(outside, os.path.join(tiny_engine_dir, "vision.onnx"))
    with pytest.raises(EdgeVLMError, match="leads outside the engine folder"):
        load_manifest(tiny_engine_dir, verify=False)


def test_preprocessing_follows_the_manifest(tiny_engine_dir):
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 200  # blue in BGR
    edit_manifest(tiny_engine_dir, lambda d: d["preprocess"].update(color_order="BGR", scale=1 / 100, interpolation="linear"))
    with CaptionEngine(tiny_engine_dir) as engine:
        pixels = engine.preprocess(image)
        assert pixels.shape == (3, 64, 64)
        np.testing.assert_allclose(pixels[:, 0, 0], [(2.0 - 0.5) / 0.5, -1.0, -1.0], rtol=1e-6)  # channel 0 = blue
    np.testing.assert_allclose(preprocess_bgr(image, 64)[:, 0, 0], [-1.0, -1.0, (200 / 255 - 0.5) / 0.5], rtol=1e-6)


def test_only_the_manifest_module_touches_edgevlm_json():
    """No module but runtime/manifest.py names the file in code (a path string, or the
    MANIFEST_FILE constant): every reader and writer goes through it. Prose may mention it."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for name in files:
        if name.startswith("tests/") or name == "runtime/manifest.py" or not os.path.isfile(os.path.join(REPO_ROOT, name)):
            continue
        with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            path_string = isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                node.value == "edgevlm.json" or node.value.endswith("/edgevlm.json"))
            constant = (isinstance(node, ast.Name) and node.id == "MANIFEST_FILE") or (
                isinstance(node, ast.alias) and node.name == "MANIFEST_FILE")
            if path_string or constant:
                offenders.append(f"{name}:{getattr(node, 'lineno', '?')}")
    assert offenders == []
