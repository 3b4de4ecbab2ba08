"""`edgevlm build` and `--backend tensorrt` on a machine without TensorRT: one `error:` line
each, naming what is missing or wrong and the fix, exit code 1."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgevlm.cli.main import cli
from edgevlm.paths import resolve_engine, sample_images_dir
from edgevlm.runtime.manifest import update_manifest

no_tensorrt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")


@pytest.fixture()
def fp32_engine(tmp_path):
    path = str(tmp_path / "engine")
    shutil.copytree(resolve_engine(None), path)
    update_manifest(path, lambda m: m.replace(precision="fp32", quantization=None))
    return path


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@no_tensorrt
def test_build_without_tensorrt_is_one_line(fp32_engine):
    done = subprocess.run([sys.executable, "-m", "edgevlm.cli.main", "build", fp32_engine],
                          capture_output=True, text=True)
    assert done.returncode == 1
    lines = _errors(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: the native TensorRT backend needs the tensorrt Python module")
    assert "tensorrt-cu12" in lines[0] or "python3-libnvinfer" in lines[0]
    assert not os.path.exists(os.path.join(fp32_engine, "plans"))


@pytest.mark.parametrize(("engine", "args", "message"), [
    ("fp32", ["--precision", "int8"], "error: --precision int8 needs the symmetric Q/DQ INT8 engine"),
    ("shipped", [], "error: this engine is the cpu INT8 variant"),
    ("missing", [], "error: engine folder not found"),
])
def test_build_refusals_are_one_line(fp32_engine, tmp_path, engine, args, message):
    folder = {"fp32": fp32_engine, "shipped": resolve_engine(None), "missing": str(tmp_path / "nope")}[engine]
    result = CliRunner().invoke(cli, ["build", folder, *args])
    assert result.exit_code == 1
    assert len(_errors(result.stderr)) == 1 and result.stderr.startswith(message), result.stderr


@no_tensorrt
@pytest.mark.parametrize("command", [["caption", os.path.join(sample_images_dir(), "coffee.jpg")],
                                     ["ask", os.path.join(sample_images_dir(), "coffee.jpg"), "is there a cup?"],
                                     ["narrate", os.path.join(sample_images_dir(), "street.mp4"), "--tts", "none"]])
def test_backend_tensorrt_without_tensorrt_is_one_line(command):
    result = CliRunner().invoke(cli, [*command, "--backend", "tensorrt"])
    assert result.exit_code == 1
    lines = _errors(result.stderr)
    assert len(lines) == 1 and "needs the tensorrt Python module" in lines[0], result.stderr
