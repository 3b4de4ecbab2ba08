"""The per-CPU INT8 layout table, --target resolution, and `edgevlm quantize --target` refusals."""

import pytest
from click.testing import CliRunner
from onnxruntime.quantization import QuantType

from edgevlm.calibration.cpu_layouts import AVX2_FLOAT_PATTERNS, LAYOUTS, layout_for, resolve_target
from edgevlm.calibration.quantize import variant_settings
from edgevlm.errors import EdgeVLMError
from edgevlm.runtime import cpu_isa


def test_layout_table():
    assert set(LAYOUTS) == set(cpu_isa.TARGETS)
    avx2 = layout_for("avx2")  # the shipped engine's measured layout
    assert (avx2.activations, avx2.reduce_range, avx2.float_patterns) == ("uint8", True, AVX2_FLOAT_PATTERNS)
    for target in ("avx512-vnni", "amx"):  # no saturation: 8-bit weights, whole encoder
        assert (LAYOUTS[target].activations, LAYOUTS[target].reduce_range, LAYOUTS[target].float_patterns) == \
            ("uint8", False, ())
    arm = layout_for("arm-dotprod")  # ORT's ARM guidance: S8S8 QDQ
    assert (arm.activations, arm.symmetric, arm.reduce_range, arm.float_patterns) == ("int8", True, False, ())


def test_runtime_same_layout_groups_match_the_table():
    for a in cpu_isa.TARGETS:
        for b in cpu_isa.TARGETS:
            layouts_equal = (LAYOUTS[a].activations, LAYOUTS[a].reduce_range, LAYOUTS[a].float_patterns) == \
                (LAYOUTS[b].activations, LAYOUTS[b].reduce_range, LAYOUTS[b].float_patterns)
            assert cpu_isa.same_layout(a, b) == layouts_equal, (a, b)


def test_variant_settings_per_target():
    assert variant_settings("cpu")["reduce_range"] is True  # no target: the variant as it was
    vnni = variant_settings("cpu", "avx512-vnni")
    assert vnni["reduce_range"] is False and vnni["activation"] == QuantType.QUInt8 and not vnni["symmetric"]
    arm = variant_settings("cpu", "arm-dotprod")
    assert arm["activation"] == QuantType.QInt8 and arm["symmetric"] and arm["dynamic"] == ("cross_kv", "decoder", "decoder_step")
    with pytest.raises(EdgeVLMError, match="--variant cpu"):
        variant_settings("qdq", "avx2")


def test_auto_is_this_cpu(monkeypatch):
    from edgevlm.calibration import cpu_layouts

    monkeypatch.setattr(cpu_layouts, "this_cpu_target", lambda: "amx")
    assert resolve_target("auto") == resolve_target(None) == "amx"
    assert resolve_target("arm-dotprod") == "arm-dotprod"
    monkeypatch.setattr(cpu_layouts, "this_cpu_target", lambda: None)
    with pytest.raises(EdgeVLMError, match="pass --target"):
        resolve_target("auto")


def _quantize(tmp_path, *args):
    from edgevlm.cli.main import cli

    return CliRunner().invoke(cli, ["quantize", str(tmp_path / "fp32"), "--calib", str(tmp_path / "calib"),
                                    "--out", str(tmp_path / "int8"), *args])


@pytest.mark.parametrize("args, message", [
    (["--variant", "cpu", "--target", "avx512"], "error: unknown --target 'avx512'; choose auto, avx2, avx512-vnni, "
                                                 "amx, arm-dotprod"),
    (["--variant", "cpu", "--target", "neon"], "error: unknown --target 'neon'"),
    (["--target", "avx2"], "error: --target chooses the CPU layout; use it with --variant cpu, not qdq"),
])
def test_quantize_refuses_bad_targets_in_one_line(tmp_path, args, message):
    result = _quantize(tmp_path, *args)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(message), result.stderr
    assert not (tmp_path / "int8").exists()


@pytest.mark.parametrize("target, zero_point_type, weight_max", [("arm-dotprod", 3, 127), ("avx2", 2, 64)])
def test_tiny_engine_quantized_for_a_target(tiny_engine_master, tmp_path, target, zero_point_type, weight_max):
    import os

    import numpy as np
    import onnx
    from onnx import numpy_helper

    from edgevlm.calibration.gated_quantize import quantize_gated
    from edgevlm.calibration.sources import load_calibration_set
    from edgevlm.runtime.manifest import load_manifest
    from tests.support import make_coco_dataset

    make_coco_dataset(str(tmp_path / "calib"), "train", 20, seed=3)
    calib = load_calibration_set(str(tmp_path / "calib" / "images"))
    out = str(tmp_path / "int8")
    quantize_gated(tiny_engine_master, calib, out, "minmax", "cpu", [], None, target=target)
    q = load_manifest(out).quantization
    assert q["target"] == target and q["layout"]["reduce_range"] == (target == "avx2")
    assert set(AVX2_FLOAT_PATTERNS) <= set(q["patterns_excluded"]) if target == "avx2" else q["patterns_excluded"] == []
    vision = onnx.load(os.path.join(out, "vision.onnx")).graph
    activation_zero_points = {n.input[2] for n in vision.node if n.op_type == "QuantizeLinear"}
    types = {i.data_type for i in vision.initializer if i.name in activation_zero_points}
    assert types == {zero_point_type}  # INT8 = 3 (symmetric, ARM), UINT8 = 2 (x86)
    weights = [numpy_helper.to_array(i) for i in vision.initializer if i.data_type == 3 and i.dims and len(i.dims) > 1]
    assert max(int(np.abs(w).max()) for w in weights) == weight_max  # 7-bit weights only for AVX2


@pytest.mark.parametrize("here", ["avx2", "avx512-vnni"])
def test_an_engine_for_another_cpu_is_gated_on_its_emulation(tiny_engine_master, tmp_path, monkeypatch, here):
    """A VNNI engine made on an AVX2 CPU is gated on its emulation (its integer arithmetic in
    float), and the report says so; on a VNNI CPU, on the engine itself. Nothing emulated is
    left behind."""
    import os
    import tempfile

    import edgevlm.calibration.gated_quantize as gated
    from edgevlm.calibration import int8_emulation
    from edgevlm.calibration.sources import load_calibration_set
    from edgevlm.runtime.manifest import load_manifest
    from tests.support import make_coco_dataset

    monkeypatch.setattr(gated, "detected_cpu_target", lambda: here)
    monkeypatch.setattr(int8_emulation, "detected_cpu_target", lambda: here)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp")
    make_coco_dataset(str(tmp_path / "calib"), "train", 20, seed=3)
    make_coco_dataset(str(tmp_path / "calib"), "dev", 3, seed=4)
    calib = load_calibration_set(str(tmp_path / "calib" / "images"))
    said: list[str] = []
    out = str(tmp_path / "int8")
    eval_set = gated.load_eval_set(str(tmp_path / "calib" / "captions_dev.json"))
    report = gated.quantize_gated(tiny_engine_master, calib, out, "minmax", "cpu", [], eval_set, max_cider_drop=1.0,
                                  say=said.append, target="avx512-vnni")
    emulated = here != "avx512-vnni"
    assert report["measured_on"] == "avx512-vnni" and report.get("emulated_on") == ("avx2" if emulated else None)
    assert load_manifest(out).quantization["gate"]["measured_on"] == "avx512-vnni"
    assert any("emulated" in line for line in said) == emulated
    assert os.listdir(tmp_path / "tmp") == []  # the emulated copy is gone
    assert not load_manifest(out).source.get("emulates")  # the engine written is the real one
