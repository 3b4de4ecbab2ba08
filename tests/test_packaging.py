"""pyproject lists every package (package-dir maps export/, runtime/, calibration/ by hand)."""

import os
import tomllib

from tests.support import REPO_ROOT


def test_every_package_is_listed():
    config = tomllib.load(open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb"))["tool"]["setuptools"]
    found = set()
    for package, folder in config["package-dir"].items():
        for dirpath, _, files in os.walk(os.path.join(REPO_ROOT, folder)):
            if "__init__.py" in files and "__pycache__" not in dirpath:
                relative = os.path.relpath(dirpath, os.path.join(REPO_ROOT, folder))
                found.add(package if relative == "." else package + "." + relative.replace(os.sep, "."))
    assert found == set(config["packages"])


def test_shipped_assets_are_package_data():
    config = tomllib.load(open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb"))["tool"]["setuptools"]
    assert config["package-data"]["edgevlm"] == ["assets/**/*"]
    for folder in ("default_model", "default_engine", "samples"):
        assert os.listdir(os.path.join(REPO_ROOT, "edgevlm", "assets", folder))


def test_shipped_engine_is_int8_and_passed_its_gate():
    from edgevlm.paths import default_engine_dir
    from edgevlm.runtime.manifest import load_manifest

    manifest = load_manifest(default_engine_dir())  # verifies every sha256 too
    assert manifest.precision == "int8"
    quantization = manifest.quantization
    assert quantization["gate"]["passed"] and quantization["gate"]["images"] >= 1000
    assert quantization["gate"]["cider_drop_relative"] <= quantization["gate"]["max_cider_drop"]
    assert len(quantization["calibration"]["sha256"]) == 64 and quantization["calibration"]["images"] >= 100


def test_shipped_cpu_variants_are_whole_same_model_and_gated_on_their_cpu():
    from edgevlm.paths import default_engine_dir
    from edgevlm.runtime.cpu_isa import same_layout
    from edgevlm.runtime.manifest import load_manifest

    top = load_manifest(default_engine_dir())
    assert top.cpu_variants, "the shipped engine carries an engine per int8 layout (issue 12)"
    for target, folder in top.cpu_variants.items():
        variant = load_manifest(os.path.join(top.root, folder))  # every sha256 verified
        gate = variant.quantization["gate"]
        assert variant.cpu_target == target and not same_layout(target, top.cpu_target)
        assert gate["passed"] and gate["images"] >= 1000 and same_layout(gate["measured_on"], target)
        assert gate["cider_drop_relative"] <= gate["max_cider_drop"] <= 0.01
        assert variant.source["checkpoint_sha256"] == top.source["checkpoint_sha256"]
        assert variant.files["tokenizer"].sha256 == top.files["tokenizer"].sha256
        assert variant.concepts.tuned_on and variant.vqa and variant.caption_memory


def test_oldest_deps_check_pins_each_base_dependency_at_its_floor():
    """The oldest-versions check installs every runtime dependency at the lowest minor release
    pyproject allows; a dependency without a plain floor would be refused, not skipped."""
    import pytest

    from edgevlm.scripts.oldest_deps_check import base_floor_specs, floor_spec

    assert floor_spec("numpy>=1.24") == "numpy>=1.24,<1.25"
    assert floor_spec("opencv-python-headless>=4.8") == "opencv-python-headless>=4.8,<4.9"
    assert floor_spec("torch>=2.3.1") == "torch>=2.3.1,<2.4"
    with pytest.raises(ValueError, match="not a plain"):
        floor_spec("numpy")
    deps = tomllib.load(open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb"))["project"]["dependencies"]
    specs = base_floor_specs()
    assert [s.split(">=")[0] for s in specs] == [d.split(">=")[0] for d in deps]
