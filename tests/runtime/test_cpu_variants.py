"""The manifest's quantization.target/variants, the runtime's pick of the engine made for
this CPU, and its one warning when it runs one made for another."""

import json
import logging
import os
import shutil

import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime import cpu_variants
from edgevlm.runtime.cpu_variants import load_for_this_cpu
from edgevlm.runtime.manifest import MANIFEST_FILE, Manifest, load_manifest, update_manifest


def _set_quantization(engine_dir, **keys):
    update_manifest(engine_dir, lambda m: m.replace(quantization=(m.quantization or {}) | keys))


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(cpu_variants, "_warned", set())


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == cpu_variants.__name__]


def test_manifest_round_trip_with_and_without_target(tiny_engine_dir):
    plain = load_manifest(tiny_engine_dir)
    assert plain.cpu_target is None and plain.cpu_variants == {}
    assert Manifest.from_json(plain.to_json(), plain.root) == plain  # an engine from before targets
    _set_quantization(tiny_engine_dir, target="avx512-vnni", variants={"avx2": "variants/avx2"})
    with open(os.path.join(tiny_engine_dir, MANIFEST_FILE)) as f:
        data = json.load(f)
    assert data["quantization"]["target"] == "avx512-vnni"
    manifest = Manifest.from_json(data, tiny_engine_dir)
    assert manifest.cpu_target == "avx512-vnni" and manifest.cpu_variants == {"avx2": "variants/avx2"}
    assert Manifest.from_json(manifest.to_json(), manifest.root) == manifest


@pytest.mark.parametrize("keys, field", [({"target": "avx10"}, "quantization.target"),
                                         ({"variants": {"sse": "v"}}, "quantization.variants.sse"),
                                         ({"variants": {"amx": "../amx"}}, "quantization.variants.amx"),
                                         ({"variants": {"amx": "/abs"}}, "quantization.variants.amx")])
def test_bad_targets_and_variant_folders_refused_naming_the_field(tiny_engine_dir, keys, field):
    data = load_manifest(tiny_engine_dir).to_json()
    data["quantization"] = keys
    with pytest.raises(EdgeVLMError, match=field.replace(".", r"\.")) as exc:
        Manifest.from_json(data, tiny_engine_dir)
    assert "\n" not in str(exc.value)


def test_warns_once_for_an_engine_made_for_another_cpu(tiny_engine_dir, caplog):
    _set_quantization(tiny_engine_dir, target="avx512-vnni")
    with caplog.at_level(logging.WARNING):
        load_for_this_cpu(tiny_engine_dir, cpu_target="avx2")
        load_for_this_cpu(tiny_engine_dir, cpu_target="avx2")
    [line] = _warnings(caplog)
    assert "made for avx512-vnni" in line and "this CPU is avx2" in line and "saturate" in line
    assert "--target avx2" in line and "\n" not in line


@pytest.mark.parametrize("target, cpu", [(None, "avx2"), ("avx2", "avx2"), ("amx", "avx512-vnni"), ("avx2", None)])
def test_no_warning_on_a_match_or_without_a_target(tiny_engine_dir, caplog, monkeypatch, target, cpu):
    monkeypatch.setattr(cpu_variants, "this_cpu_target", lambda: None)  # cpu None: a CPU nobody can tell
    if target:
        _set_quantization(tiny_engine_dir, target=target)
    with caplog.at_level(logging.WARNING):
        load_for_this_cpu(tiny_engine_dir, cpu_target=cpu)
    assert _warnings(caplog) == []


def _with_variant(engine_dir, top, target):
    """ENGINE_DIR made for ``top``, carrying a copy of itself made for ``target``."""
    folder = os.path.join(engine_dir, "variants", target)
    shutil.copytree(engine_dir, folder)
    _set_quantization(folder, target=target)
    _set_quantization(engine_dir, target=top, variants={target: f"variants/{target}"})
    return folder


def test_runtime_picks_the_variant_for_this_cpu(tiny_engine_dir, caplog):
    folder = _with_variant(tiny_engine_dir, "avx2", "avx512-vnni")
    with caplog.at_level(logging.WARNING):
        assert load_for_this_cpu(tiny_engine_dir, cpu_target="avx512-vnni").root == os.path.abspath(folder)
        assert load_for_this_cpu(tiny_engine_dir, cpu_target="amx").root == os.path.abspath(folder)  # same layout
        assert load_for_this_cpu(tiny_engine_dir, cpu_target="avx2").root == os.path.abspath(tiny_engine_dir)
        top = load_for_this_cpu(tiny_engine_dir, cpu_target="avx512-vnni", pick=False)
    assert top.root == os.path.abspath(tiny_engine_dir)
    assert len(_warnings(caplog)) == 1  # pick=False ran the avx2 top engine on a VNNI CPU


def test_no_variant_for_this_cpu_runs_the_top_engine_and_warns(tiny_engine_dir, caplog):
    _with_variant(tiny_engine_dir, "avx2", "avx512-vnni")
    with caplog.at_level(logging.WARNING):
        assert load_for_this_cpu(tiny_engine_dir, cpu_target="arm-dotprod").cpu_target == "avx2"
    assert "made for avx2" in _warnings(caplog)[0]


def test_graphs_run_off_the_cpu_open_the_top_engine_without_a_warning(tiny_engine_dir, caplog):
    """A GPU provider or backend runs the top engine: variants are CPU int8 layouts (TensorRT
    would take an ARM variant's int8 Q/DQ nodes, which the top engine's uint8 ones keep on the CPU)."""
    _with_variant(tiny_engine_dir, "avx2", "arm-dotprod")
    with caplog.at_level(logging.WARNING):
        top = load_for_this_cpu(tiny_engine_dir, cpu_target="arm-dotprod", on_cpu=False)
    assert top.root == os.path.abspath(tiny_engine_dir) and top.cpu_target == "avx2"
    assert _warnings(caplog) == []


def test_off_the_cpu_only_a_saturating_cpu_is_warned_about(tiny_engine_dir, caplog):
    """The top engine's integer nodes still run on the CPU under a GPU provider: 8-bit weights
    on AVX2 (wrong sums) are said; a mere speed mismatch (avx2 engine, ARM CPU) is not."""
    _set_quantization(tiny_engine_dir, target="avx512-vnni")
    with caplog.at_level(logging.WARNING):
        load_for_this_cpu(tiny_engine_dir, cpu_target="avx2", on_cpu=False)
    assert len(_warnings(caplog)) == 1 and "saturate" in _warnings(caplog)[0]
    _set_quantization(tiny_engine_dir, target="avx2")
    with caplog.at_level(logging.WARNING):
        load_for_this_cpu(tiny_engine_dir, cpu_target="arm-dotprod", on_cpu=False)
    assert len(_warnings(caplog)) == 1


def test_a_variant_made_for_another_target_is_refused(tiny_engine_dir):
    folder = _with_variant(tiny_engine_dir, "avx2", "avx512-vnni")
    _set_quantization(folder, target="arm-dotprod")
    with pytest.raises(EdgeVLMError, match="listed as the avx512-vnni variant"):
        load_for_this_cpu(tiny_engine_dir, cpu_target="avx512-vnni")


def test_caption_engine_opens_the_picked_variant(tiny_engine_dir, monkeypatch):
    from edgevlm.runtime.engine import CaptionEngine

    folder = _with_variant(tiny_engine_dir, "avx2", "arm-dotprod")
    monkeypatch.setattr(cpu_variants, "this_cpu_target", lambda: "arm-dotprod")
    with CaptionEngine(tiny_engine_dir) as engine:
        assert engine.manifest.root == os.path.abspath(folder)


@pytest.mark.parametrize(("provider", "backend"), [("tensorrt", "onnxruntime"), ("cuda", "onnxruntime"),
                                                  ("cpu", "tensorrt")])
def test_caption_engine_off_the_cpu_opens_the_top_engine(tiny_engine_dir, monkeypatch, provider, backend):
    from edgevlm.runtime import engine as engine_module

    _with_variant(tiny_engine_dir, "avx2", "arm-dotprod")
    monkeypatch.setattr(cpu_variants, "this_cpu_target", lambda: "arm-dotprod")
    opened = []  # no GPU here: the backend is not made, only the manifest it would be given is seen
    monkeypatch.setattr(engine_module, "create_backend", lambda manifest, *rest: opened.append(manifest) or object())
    engine_module.CaptionEngine(tiny_engine_dir, provider=provider, backend=backend)
    assert [m.root for m in opened] == [os.path.abspath(tiny_engine_dir)]

