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
from edgevlm.runtime.steppers import device_graphs


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


@pytest.mark.parametrize("broken", ["top", "variant"])
def test_a_decoder_onnxruntime_cannot_load_fails_though_captioning_never_opens_it(tmp_path, broken):
    """The decoder session is made on first use (captions run on decoder_step), but doctor opens
    every graph of every engine in the folder (the top one and each CPU variant, whichever this
    CPU runs): a decoder.onnx whose sha256 the manifest lists yet onnxruntime refuses is found."""
    from edgevlm.runtime.file_records import sha256_file
    from edgevlm.runtime.manifest import FileEntry, load_manifest

    engine = tmp_path / "engine"
    shutil.copytree(default_engine_dir(), engine)
    target, folder = next(iter(load_manifest(str(engine), verify=False).cpu_variants.items()))
    where = engine if broken == "top" else engine / folder
    (where / "decoder.onnx").write_bytes(b"not an onnx graph")
    manifest = load_manifest(str(where), verify=False)
    files = dict(manifest.files)
    files["decoder"] = FileEntry("decoder.onnx", sha256_file(str(where / "decoder.onnx")), 17)
    manifest.replace(files=files).save(str(where))
    result = _doctor("--engine", str(engine))
    assert result.exit_code == 1
    errors = _errors(result)
    assert len(errors) == 1, result.stderr
    assert "cannot open" in errors[0] and "onnxruntime cannot load" in errors[0] and "decoder.onnx" in errors[0]
    assert (f"the {target} variant" in errors[0]) == (broken == "variant")


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


def test_native_tensorrt_backend_without_tensorrt_is_one_line_naming_the_fix():
    result = _doctor("--backend", "tensorrt")
    assert result.exit_code == 1
    errors = _errors(result)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: this engine cannot run here with --backend tensorrt: tensorrt: ")
    assert "install" in errors[0] and "tensorrt" in errors[0].split(": ", 2)[2]
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert lines["tensorrt"].startswith("MISSING") and "-> fix:" in lines["tensorrt"]
    # the shipped engine has no plans (and, being the CPU INT8 variant, cannot get any): missing, with the way out
    assert lines["plans"].startswith("MISSING") and "edgevlm quantize --variant qdq" in lines["plans"]
    report = json.loads(_doctor("--backend", "tensorrt", "--json").stdout)
    assert report["backend"] == "tensorrt" and report["ok"] is False
    assert {c["name"]: c["ok"] for c in report["checks"]}["plans"] is False


def test_plans_check_reports_missing_stale_and_current_plans(tmp_path, monkeypatch):
    """check_plans on an FP32 engine with plans recorded for a TensorRT 10.3 Orin, asked on
    10.3 and on 10.7 (native_facts faked: there is no GPU here); never deserializes."""
    import dataclasses
    import hashlib

    from edgevlm.runtime import doctor, tensorrt_support
    from edgevlm.runtime.engine_cache import DeviceFacts
    from edgevlm.runtime.manifest import PlanEntry, load_manifest, update_manifest

    engine = str(tmp_path / "engine")
    shutil.copytree(default_engine_dir(), engine)
    update_manifest(engine, lambda m: m.replace(precision="fp32", quantization=None))
    missing = doctor.check_plans(engine, tensorrt_found=False)
    assert missing.ok is False and missing.needed and missing.fix.startswith(f"edgevlm build {engine}")

    manifest = load_manifest(engine, verify=False)
    os.makedirs(os.path.join(engine, "plans"))
    entries = {}
    for graph in device_graphs(manifest):  # as edgevlm build plans them
        spec = manifest.graphs[graph]
        data = graph.encode() * 10
        with open(os.path.join(engine, "plans", f"{graph}.plan"), "wb") as f:
            f.write(data)
        entries[graph] = PlanEntry(f"plans/{graph}.plan", "fp16", manifest.files[spec.file].sha256, "10.3.0", "Orin",
                                   "8.7", hashlib.sha256(data).hexdigest(), len(data))
    update_manifest(engine, lambda m: dataclasses.replace(m, plans=entries))
    assert doctor.check_plans(engine, tensorrt_found=False).ok is None  # present; current? needs TensorRT

    here = {"facts": DeviceFacts("1.20.0", "10.3.0", "Orin", "8.7")}
    monkeypatch.setattr(tensorrt_support, "import_tensorrt", lambda: object())
    monkeypatch.setattr(tensorrt_support, "Cuda", lambda: object())
    monkeypatch.setattr(tensorrt_support, "native_facts", lambda trt, cuda: here["facts"])
    current = doctor.check_plans(engine, tensorrt_found=True)
    assert current.ok is True and "3 plans current for TensorRT 10.3.0 on Orin" in current.detail
    here["facts"] = DeviceFacts("1.20.0", "10.7.0", "Orin", "8.7")
    stale = doctor.check_plans(engine, tensorrt_found=True)
    assert stale.ok is False and stale.needed and "TensorRT changed (10.3.0 when built, 10.7.0 now)" in stale.detail
    assert "edgevlm build" in stale.fix

    # A plan damaged under a record that still vouches for it (what stat cannot see): the
    # backend's start trusts the record; doctor and `edgevlm build` hash every byte.
    here["facts"] = DeviceFacts("1.20.0", "10.3.0", "Orin", "8.7")
    from edgevlm.runtime import file_records
    from edgevlm.runtime.engine_cache import plan_problems
    from edgevlm.runtime.tensorrt_build import stale_graphs

    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(tmp_path / "user-cache"))
    plan = os.path.realpath(os.path.join(engine, entries["vision"].path))
    with open(plan, "r+b") as f:
        f.write(b"XX")
    manifest = load_manifest(engine, verify=False)

    def forge() -> None:  # a record vouching for the damaged plan (either check below drops it)
        file_records._write_records(file_records._records_path(entries["vision"].plan_sha256),
                                    {plan: file_records._identity(os.stat(plan))})
        assert plan_problems(manifest, here["facts"]) == {}  # a start trusts it

    forge()
    assert stale_graphs(manifest, here["facts"]) == {"vision": ["the plan file's sha256 is not the one recorded (altered)"]}
    forge()
    damaged = doctor.check_plans(engine, tensorrt_found=True)
    assert damaged.ok is False and "vision: the plan file's sha256 is not the one recorded (altered)" in damaged.detail


def _graph_cache_line(*args):
    result = _doctor(*args)
    return next(line for line in result.stdout.splitlines() if line.split()[1] == "graph-cache")


def test_graph_cache_line_says_where_the_optimized_graphs_are_and_how_many(tmp_path, monkeypatch):
    from edgevlm.runtime.doctor import check_graph_cache

    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEVLM_GRAPH_CACHE", raising=False)
    assert check_graph_cache("cpu").ok is True and "empty" in check_graph_cache("cpu").detail
    line = _graph_cache_line()  # its engine check opened every graph of the default engine first
    assert line.startswith("OK") and str(tmp_path / "cache" / "optimized-graphs") in line
    from edgevlm.runtime.manifest import load_manifest

    top = load_manifest(default_engine_dir(), verify=False)
    engines = [top] + [load_manifest(os.path.join(top.root, folder), verify=False)
                       for folder in top.cpu_variants.values()]  # doctor opens each
    # one copy per distinct graph file: variants may share graphs byte for byte (the VNNI and
    # ARM engines' dynamic int8 decoders are the same file)
    graphs = {m.files[spec.file].sha256 for m in engines for spec in m.graphs.values()}
    assert f"{len(graphs)} optimized graph(s)" in line


def test_graph_cache_that_cannot_be_written_warns_with_the_fix(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(blocker))
    monkeypatch.delenv("EDGEVLM_GRAPH_CACHE", raising=False)
    result = _doctor("--json")
    assert result.exit_code == 0  # a slower start, not a blocker
    check = {c["name"]: c for c in json.loads(result.stdout)["checks"]}["graph-cache"]
    assert check["ok"] is False and "EDGEVLM_CACHE_DIR" in check["fix"] and not check["needed"]


def test_graph_cache_switched_off_or_on_a_gpu_provider_is_not_applicable(monkeypatch):
    monkeypatch.setenv("EDGEVLM_GRAPH_CACHE", "0")
    assert _graph_cache_line().startswith("n/a") and "EDGEVLM_GRAPH_CACHE=0" in _graph_cache_line()
    monkeypatch.delenv("EDGEVLM_GRAPH_CACHE")
    assert _graph_cache_line("--provider", "cuda").startswith("n/a")
