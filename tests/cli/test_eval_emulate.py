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
