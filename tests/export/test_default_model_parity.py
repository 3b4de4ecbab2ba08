"""End to end on the real model: the shipped PyTorch model exported to ONNX, then validated
against itself on the four sample photos (every graph output within tolerance, token ids
identical). Slow (a full-size export): run with ``-m slow``."""

from __future__ import annotations

import pytest

from edgevlm.export.onnx_export import export_engine
from edgevlm.export.validate import validate_engine
from edgevlm.paths import default_model_dir
from edgevlm.runtime.preprocess import read_image_bgr
from tests.support import SAMPLE_PHOTOS


@pytest.mark.slow
def test_the_shipped_model_exports_to_an_engine_that_passes_validation(tmp_path):
    model_dir = default_model_dir()
    engine_dir = str(tmp_path / "engine")
    export_engine(model_dir, engine_dir)
    images = [read_image_bgr(path) for path in SAMPLE_PHOTOS]
    assert len(images) == 4
    report = validate_engine(engine_dir, model_dir, images)
    assert report["tokens_identical"], report["captions"]
    assert report["passed"], [check for check in report["outputs"] if not check.passed]
