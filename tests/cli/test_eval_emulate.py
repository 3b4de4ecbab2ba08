"""``edgevlm eval --emulate``: an INT8 engine made for another CPU measured on its emulation
(calibration/int8_emulation.py), the temporary copy gone afterwards."""

from __future__ import annotations

import json
import os
import tempfile

from click.testing import CliRunner

from edgevlm.cli.main import cli


def test_an_engine_for_another_cpu_is_evaluated_on_its_emulation(tiny_engine_master, tiny_dataset, tmp_path,
                                                                   monkeypatch):
    from edgevlm.calibration.gated_quantize import quantize_gated
    from edgevlm.calibration.sources import load_calibration_set

    calib = load_calibration_set(os.path.join(tiny_dataset, "images"), min_images=1)
    int8 = str(tmp_path / "vnni")
    quantize_gated(tiny_engine_master, calib, int8, "minmax", "cpu", [], None, target="avx512-vnni")
    with open(os.path.join(int8, "edgevlm.json")) as f:
        manifest_before = f.read()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp")
    captions = os.path.join(tiny_dataset, "captions_dev.json")
    result = CliRunner().invoke(cli, ["eval", "--data", captions, "--engine", int8, "--emulate", "--limit", "2",
                                      "--no-consistency", "--no-meteor", "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["source"] == int8 and report["images"] == 2
    assert "runs on its emulation" in result.stderr
    assert os.listdir(tmp_path / "tmp") == []  # the emulated copy is gone
    with open(os.path.join(int8, "edgevlm.json")) as f:
        assert f.read() == manifest_before  # the engine itself is not touched by measuring it

    refused = CliRunner().invoke(cli, ["eval", "--data", captions, "--emulate"])
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines() == [
        "error: --emulate runs an INT8 engine made for another CPU: give --engine DIR (e.g. "
        "ENGINE/variants/avx512-vnni), not --model"]


def test_a_memory_for_another_cpus_engine_is_embedded_on_its_emulation(tiny_engine_master, tiny_dataset, tmp_path,
                                                                        monkeypatch):
    """Its stored embeddings must be the ones that CPU computes at run time (natively on AVX2 a
    VNNI engine's sums saturate), and the emulated copy goes away afterwards."""
    import hashlib

    from edgevlm.calibration.gated_quantize import quantize_gated
    from edgevlm.calibration import int8_emulation
    from edgevlm.calibration.int8_emulation import emulated_copy
    from edgevlm.calibration.sources import load_calibration_set
    from edgevlm.data.coco import load_coco_captions
    from edgevlm.export import caption_memory
    from edgevlm.runtime.caption_memory import CaptionMemory, caption_words
    from edgevlm.runtime.engine import CaptionEngine

    calib = load_calibration_set(os.path.join(tiny_dataset, "images"), min_images=1)
    int8 = str(tmp_path / "vnni")
    quantize_gated(tiny_engine_master, calib, int8, "minmax", "cpu", [], None, target="avx512-vnni")
    captions = os.path.join(tiny_dataset, "captions_train.json")
    items = [item for item in load_coco_captions(captions) if item.captions]
    with emulated_copy(int8) as emulated, CaptionEngine(emulated, use_memory=False, pick_variant=False) as engine:
        embeddings = caption_memory.embed_photos(engine, [item.path for item in items])
    mean, projection = caption_memory.whitened_projection(embeddings, caption_memory.DEFAULTS["dims"])
    expected = CaptionMemory.remembering(embeddings, [[caption_words(c) for c in item.captions] for item in items],
                                         mean, projection).to_bytes()

    monkeypatch.setattr(int8_emulation, "detected_cpu_target", lambda: "avx2")  # whatever CPU runs the test
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp")
    result = CliRunner().invoke(cli, ["memory", int8, "--data", captions, "--beam", "4"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "photos are embedded on the engine's emulation" in result.stderr
    with open(os.path.join(int8, "edgevlm.json")) as f:
        stored = json.load(f)["files"]["caption_memory"]
    assert stored["sha256"] == hashlib.sha256(expected).hexdigest()
    assert os.listdir(tmp_path / "tmp") == []
