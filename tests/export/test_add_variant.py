"""``edgevlm add-variant``: an INT8 engine made for another CPU goes into the top engine's
variants/ folder only when it is the same model, gated on its own CPU and tuned like the
top one; the runtime then opens it on that CPU."""

import os
import re
import shutil

import pytest
from click.testing import CliRunner

from edgevlm.cli.main import cli
from edgevlm.runtime import cpu_variants
from edgevlm.runtime.cpu_variants import load_for_this_cpu
from edgevlm.runtime.manifest import VQAThreshold, load_manifest, update_manifest


def _gate(passed=True, measured_on="avx512-vnni"):
    return {"images": 10, "cider_drop_relative": -0.006, "max_cider_drop": 0.01, "passed": passed,
            "measured_on": measured_on}


def _make_cpu_engine(engine_dir, target, gate=None):
    quantization = {"variant": "cpu", "target": target} | ({"gate": gate} if gate else {})
    update_manifest(engine_dir, lambda m: m.replace(quantization=quantization))


@pytest.fixture
def engines(tmp_path, tiny_engine_master, monkeypatch):
    """(top engine made for avx2, a gated avx512-vnni engine of the same model)."""
    monkeypatch.setattr(cpu_variants, "_warned", set())
    top, variant = str(tmp_path / "top"), str(tmp_path / "vnni")
    shutil.copytree(tiny_engine_master, top)
    shutil.copytree(tiny_engine_master, variant)
    _make_cpu_engine(top, "avx2", _gate(measured_on="avx2"))
    _make_cpu_engine(variant, "avx512-vnni", _gate())
    return top, variant


def _add(top, variant):
    return CliRunner().invoke(cli, ["add-variant", top, variant])


def test_added_variant_is_copied_listed_and_picked_on_its_cpu(engines, monkeypatch):
    top, variant = engines
    result = _add(top, variant)
    assert result.exit_code == 0, result.output
    assert "as variants/avx512-vnni" in result.output and "CIDEr drop -0.60%" in result.output
    manifest = load_manifest(top)
    assert manifest.cpu_variants == {"avx512-vnni": "variants/avx512-vnni"}
    copy = os.path.join(top, "variants", "avx512-vnni")
    assert load_manifest(copy, verify=True).cpu_target == "avx512-vnni"  # every file whole
    assert not [n for n in os.listdir(os.path.join(top, "variants")) if n.startswith(".tmp")]
    assert load_for_this_cpu(top, cpu_target="amx").root == os.path.abspath(copy)  # same layout as VNNI
    assert load_for_this_cpu(top, cpu_target="avx2").root == os.path.abspath(top)

    from edgevlm.runtime.engine import CaptionEngine

    monkeypatch.setattr(cpu_variants, "this_cpu_target", lambda: "avx512-vnni")
    with CaptionEngine(top) as engine:
        assert engine.manifest.root == os.path.abspath(copy)
    assert _add(top, variant).exit_code == 0  # adding it again replaces it
    assert load_manifest(top).cpu_variants == {"avx512-vnni": "variants/avx512-vnni"}


def _no_gate(variant):
    _make_cpu_engine(variant, "avx512-vnni")


def _failed_gate(variant):
    _make_cpu_engine(variant, "avx512-vnni", _gate(passed=False))


def _gated_on_avx2(variant):
    _make_cpu_engine(variant, "avx512-vnni", _gate(measured_on="avx2"))


def _other_checkpoint(variant):
    update_manifest(variant, lambda m: m.replace(source=dict(m.source, checkpoint_sha256="0" * 64)))


def _same_layout_as_top(variant):
    _make_cpu_engine(variant, "avx2", _gate(measured_on="avx2"))


def _emulation(variant):  # marked as int8_emulation.emulate_engine marks its copies
    update_manifest(variant, lambda m: m.replace(source=dict(m.source, emulates="vnni")))


def _fp32(variant):
    update_manifest(variant, lambda m: m.replace(quantization=None))


@pytest.mark.parametrize("spoil, message", [
    (_no_gate, "has no accuracy gate result; quantize it again with --eval"),
    (_failed_gate, "failed its accuracy gate"),
    (_gated_on_avx2, "its gate was measured on avx2, whose int8 kernels"),
    (_other_checkpoint, "is not the same model as .*: its checkpoint"),
    (_same_layout_as_top, "same int8 layout as avx2: it already runs there"),
    (_fp32, "VARIANT_DIR .* is not an INT8 engine made for a CPU"),
    (_emulation, "is an emulation of vnni .*; add the INT8 engine itself"),
])
def test_refusals_name_the_problem_in_one_line_and_write_nothing(engines, spoil, message):
    top, variant = engines
    spoil(variant)
    result = _add(top, variant)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert re.search(message, line), line
    assert not os.path.exists(os.path.join(top, "variants"))
    assert load_manifest(top).cpu_variants == {}


def test_a_variant_without_the_top_engines_tuned_threshold_is_refused(engines):
    top, variant = engines
    update_manifest(top, lambda m: m.replace(vqa=VQAThreshold(0.6, "vqa_dev.json", 100)))
    result = _add(top, variant)
    assert result.exit_code == 1
    assert "lacks what" in result.stderr and f"--vqa QA.json --engine {os.path.abspath(variant)} --tune-abstention" \
        in result.stderr
    update_manifest(variant, lambda m: m.replace(vqa=VQAThreshold(0.5, "vqa_dev.json", 100)))
    assert _add(top, variant).exit_code == 0


def test_a_top_engine_without_a_target_is_refused(engines):
    top, variant = engines
    update_manifest(top, lambda m: m.replace(quantization=None))
    result = _add(top, variant)
    assert result.exit_code == 1 and "ENGINE_DIR" in result.stderr and "no quantization.target" in result.stderr


def test_replacing_a_variant_removes_the_files_only_the_old_one_listed(engines):
    """A variant's caption memory is named by its content: adding a new build of the variant
    must not leave the old one's memory behind in variants/<target>."""
    from edgevlm.runtime.file_records import sha256_file
    from edgevlm.runtime.manifest import FileEntry

    top, variant = engines
    assert _add(top, variant).exit_code == 0
    copy = os.path.join(top, "variants", "avx512-vnni")
    old = os.path.join(copy, "caption_memory-0123456789ab.npz")
    with open(old, "wb") as f:
        f.write(b"an older build's memory")
    entry = FileEntry(os.path.basename(old), sha256_file(old), os.path.getsize(old))
    update_manifest(copy, lambda m: m.replace(files={**m.files, "old_memory": entry}))
    stranger = os.path.join(copy, "NOTES.txt")  # not an engine file: never ours to remove
    with open(stranger, "w") as f:
        f.write("kept")

    result = _add(top, variant)
    assert result.exit_code == 0, result.output
    assert not os.path.exists(old) and os.path.exists(stranger)
    assert load_manifest(copy, verify=True).cpu_target == "avx512-vnni"
