"""``edgevlm doctor`` on this machine (CPU onnxruntime, no GPU, no TensorRT): the CPU
engine runs, the GPU providers do not, and each failure is one line naming the fix."""

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from edgevlm.cli.main import cli
from edgevlm.paths import default_engine_dir
from edgevlm.runtime.doctor import opencv_video_io


def _doctor(*args):
    return CliRunner().invoke(cli, ["doctor", *args])


def _errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_cpu_engine_runs_here():
    result = _doctor("--provider", "cpu")
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert lines["onnxruntime"].startswith("OK") and "CPUExecutionProvider" in lines["onnxruntime"]
    assert lines["engine"].startswith("OK") and "default_engine" in lines["engine"]
    assert _errors(result) == []


@pytest.mark.parametrize("provider, ep, fix", [("tensorrt", "TensorrtExecutionProvider", "onnxruntime-gpu"),
                                               ("cuda", "CUDAExecutionProvider", "onnxruntime-gpu")])
def test_gpu_providers_fail_with_one_line_naming_the_fix(provider, ep, fix):
    result = _doctor("--provider", provider)
    assert result.exit_code == 1
    errors = _errors(result)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: this engine cannot run here with --provider {provider}: ")
    assert ep in errors[0] and fix in errors[0]


@pytest.mark.parametrize("provider", ["tensorrt", "cuda"])
def test_json_for_gpu_providers_is_not_ok(provider):
    result = _doctor("--provider", provider, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["onnxruntime"]["ok"] is False and checks["onnxruntime"]["fix"]
    assert set(checks["python"]) >= {"name", "ok", "detail", "fix"}


def test_json_for_cpu_is_ok():
    result = _doctor("--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert {c["name"]: c["ok"] for c in report["checks"]}["engine"] is True


def test_broken_engine_fails_naming_the_missing_file(tmp_path):
    engine = tmp_path / "engine"
    shutil.copytree(default_engine_dir(), engine)
    os.remove(engine / "decoder.onnx")
    result = _doctor("--engine", str(engine))
    assert result.exit_code == 1
    errors = _errors(result)
    assert len(errors) == 1, result.stderr
    assert "engine" in errors[0] and "decoder.onnx" in errors[0] and "edgevlm export" in errors[0]


CANNED_BUILD_INFO = """
  Video I/O:
    DC1394:                      NO
    FFMPEG:                      YES
      avcodec:                   YES (58.54.100)
    GStreamer:                   YES (1.16.3)
    v4l/v4l2:                    YES (linux/videodev2.h)

  Parallel framework:            TBB (ver 2020.1 interface 11101)
"""


def test_opencv_build_information_is_parsed():
    assert opencv_video_io(CANNED_BUILD_INFO) == {"GStreamer": True, "V4L/V4L2": True, "FFMPEG": True}
    no_gst = CANNED_BUILD_INFO.replace("YES (1.16.3)", "NO").replace("FFMPEG:                      YES", "FFMPEG: NO")
    assert opencv_video_io(no_gst) == {"GStreamer": False, "V4L/V4L2": True, "FFMPEG": False}
    assert opencv_video_io("General configuration for OpenCV") == {"GStreamer": None, "V4L/V4L2": None, "FFMPEG": None}


def test_cpu_features_read_x86_flags_and_arm_features():
    from edgevlm.runtime.doctor import cpu_features

    x86 = "model name\t: Intel Xeon\nflags\t\t: fpu sse avx2 avx512f avx512_vnni amx_int8\n"
    assert cpu_features(x86) == ("Intel Xeon", ["AVX2", "AVX-512", "AVX-512 VNNI", "AMX"])
    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp\n"
    assert cpu_features(arm) == ("", ["NEON", "ARM dotprod"])
