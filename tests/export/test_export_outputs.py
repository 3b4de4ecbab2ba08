"""`edgevlm export` outputs complete or absent (issue 16): SIGTERM or Ctrl-C mid-export
leaves no staging folder and the old engine as it was; re-exporting keeps a user's file;
an unwritable --out fails before the model loads."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.export.onnx_export import export_engine

GUARD_S = 120.0  # torch's import and the export are slow on a loaded 2-core machine: only a hang fails


def _digests(folder) -> dict:
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder))}


def _staged(parent) -> list[str]:
    """Staging folders and writability probes (both ``.tmp-*``)."""
    return [name for name in os.listdir(parent) if name.startswith(".tmp-")]


def _exporting(parent) -> bool:
    """The export's own staging folder exists (``.tmp-engine*``), not just a writability probe."""
    return any(name.startswith(".tmp-engine") for name in os.listdir(parent))


@pytest.mark.parametrize("signum, code, said", [(signal.SIGTERM, 143, "stopped: SIGTERM"),
                                                (signal.SIGINT, 130, "stopped: interrupted (Ctrl-C)")])
def test_a_signal_mid_export_removes_the_staging_folder_and_keeps_the_old_engine(
        tiny_model_master, tiny_engine_master, tmp_path, signum, code, said):
    out = tmp_path / "engine"
    shutil.copytree(tiny_engine_master, out)
    (out / "README.md").write_text("my notes")
    before, inode = _digests(out), os.stat(out).st_ino
    process = subprocess.Popen([sys.executable, "-m", "edgevlm.cli.main", "export", tiny_model_master, "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + GUARD_S
    while not _exporting(tmp_path):  # the export has begun writing its graphs
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no staging folder appeared"
        time.sleep(0.005)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=GUARD_S)
    assert process.returncode == code, stderr
    assert stderr.strip().splitlines() == [f"{said}; unfinished outputs were removed"] and stdout == ""
    assert _staged(tmp_path) == []
    assert os.stat(out).st_ino == inode and _digests(out) == before


def test_re_exporting_into_an_engine_folder_keeps_the_users_file(tiny_model_master, tiny_engine_master, tmp_path):
    out = tmp_path / "engine"
    shutil.copytree(tiny_engine_master, out)
    (out / "README.md").write_text("my notes")
    export_engine(tiny_model_master, str(out))
    assert (out / "README.md").read_text() == "my notes"
    assert sorted(os.listdir(out)) == ["README.md", "cross_kv.onnx", "decoder.onnx", "decoder_step.onnx", "edgevlm.json",
                                       "tokenizer.json", "vision.onnx"]
    assert _staged(tmp_path) == [] and os.listdir(tmp_path) == ["engine"]


def test_an_unwritable_out_fails_before_the_model_loads(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(EdgeVLMError, match=f"--out {afile}/engine: {afile} is a file, not a folder"):
        export_engine(str(tmp_path / "no-such-model"), str(afile / "engine"))  # the model is never looked at
