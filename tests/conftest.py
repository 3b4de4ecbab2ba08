"""Shared fixtures: tiny random-init configs, a small generated COCO dataset, a model folder,
an engine folder; and the hook that skips ``gpu`` / ``tensorrt`` tests on a machine without
what they need. Helpers that are not fixtures live in tests/support.py."""

from __future__ import annotations

import importlib
import os
import shutil

import pytest

from tests.support import make_coco_dataset


# --------------------------------------------------------------------------- markers
def _missing_for_gpu() -> str | None:
    """Why ``gpu`` tests cannot run here, or None when they can."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        return (f"needs onnxruntime's CUDAExecutionProvider (this onnxruntime {ort.__version__} has "
                f"{', '.join(available)}; install onnxruntime-gpu on a machine with an NVIDIA GPU)")
    return None


def _missing_for_tensorrt() -> str | None:
    """Why ``tensorrt`` tests cannot run here, or None when they can."""
    import onnxruntime as ort

    missing = []
    available = ort.get_available_providers()
    if "TensorrtExecutionProvider" not in available:
        missing.append(f"onnxruntime's TensorrtExecutionProvider (available: {', '.join(available)})")
    try:
        importlib.import_module("tensorrt")
    except Exception as exc:  # ImportError, or a broken install failing to load its libraries
        missing.append(f"the tensorrt Python package ({type(exc).__name__}: {exc})")
    return "needs " + " and ".join(missing) if missing else None


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu`` tests without onnxruntime's CUDA provider, and ``tensorrt`` tests without
    its TensorRT provider and an importable ``tensorrt``, saying what is missing. Each check
    runs once, and only when a collected test carries its marker."""
    checks = {"gpu": _missing_for_gpu, "tensorrt": _missing_for_tensorrt}
    found: dict[str, str | None] = {}
    for item in items:
        reasons = []
        for marker, check in checks.items():
            if item.get_closest_marker(marker) is None:
                continue
            if marker not in found:
                found[marker] = check()
            if found[marker]:
                reasons.append(f"{marker} test {found[marker]}")
        if reasons:
            item.add_marker(pytest.mark.skip(reason="; ".join(reasons)))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session", autouse=True)
def detected_cpu_target_only():
    """Tests run on this CPU's own target: a developer's EDGEVLM_CPU_TARGET (README) would make
    the shipped-engine tests open another variant. Tests of the variable set it themselves."""
    from edgevlm.runtime.cpu_isa import CPU_TARGET_ENV, this_cpu_target

    os.environ.pop(CPU_TARGET_ENV, None)
    this_cpu_target.cache_clear()
    yield


@pytest.fixture(scope="session", autouse=True)
def private_user_cache(tmp_path_factory):
    """Engines opened by tests (and the CLI processes they start) keep their optimized graphs in
    a folder of this run, not in the user's ~/.cache."""
    if "EDGEVLM_CACHE_DIR" in os.environ:
        yield os.environ["EDGEVLM_CACHE_DIR"]
        return
    os.environ["EDGEVLM_CACHE_DIR"] = str(tmp_path_factory.mktemp("user-cache"))
    yield os.environ["EDGEVLM_CACHE_DIR"]
    del os.environ["EDGEVLM_CACHE_DIR"]


@pytest.fixture()
def tiny_dataset(tmp_path):
    root = str(tmp_path / "data")
    make_coco_dataset(root, "train", 6, seed=0)
    make_coco_dataset(root, "dev", 3, seed=1)
    return root


@pytest.fixture()
def tiny_config():
    from edgevlm.config import DecoderConfig, ModelConfig, PreprocessConfig

    return ModelConfig(
        decoder=DecoderConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=12, dropout=0.0),
        preprocess=PreprocessConfig(image_size=64),
    )


@pytest.fixture(scope="session")
def tiny_model_master(tmp_path_factory):
    """A random-init model folder with a tokenizer trained on CAPTIONS (built once)."""
    from edgevlm.export.families.captioner_tiny import write_tiny_captioner

    return write_tiny_captioner(str(tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture()
def tiny_model_dir(tmp_path, tiny_model_master):
    """A private copy of the tiny model folder (tests may damage it)."""
    path = str(tmp_path / "model")
    shutil.copytree(tiny_model_master, path)
    return path


@pytest.fixture(scope="session")
def tiny_engine_master(tmp_path_factory, tiny_model_master):
    from edgevlm.export.onnx_export import export_engine

    path = str(tmp_path_factory.mktemp("engines") / "tiny")
    export_engine(tiny_model_master, path)
    return path


@pytest.fixture()
def tiny_engine_dir(tmp_path, tiny_engine_master):
    path = str(tmp_path / "engine")
    shutil.copytree(tiny_engine_master, path)
    return path


@pytest.fixture(scope="session")
def shipped_fp32_engine(tmp_path_factory):
    """The shipped model exported to FP32: a real model, so captions carry meaning (read-only)."""
    from edgevlm.export.onnx_export import export_engine
    from edgevlm.paths import default_model_dir

    path = str(tmp_path_factory.mktemp("fp32") / "engine")
    export_engine(default_model_dir(), path)
    return path
