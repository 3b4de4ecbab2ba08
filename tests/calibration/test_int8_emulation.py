"""INT8 emulation: integer arithmetic recomputed in float, as a VNNI CPU's int32 sums give it,
whatever this CPU's own int8 kernels do (calibration/int8_emulation.py)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevlm.calibration.int8_emulation import emulate_graph
from edgevlm.errors import EdgeVLMError
from tests.support import onnx_model


def _run(model, feeds, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return onnx_model(graph, 13)


def test_matmul_integer_sums_exactly_where_int16_pairs_would_saturate():
    """u8 255 x s8 127 in every pair: AVX2's vpmaddubsw saturates each pair sum at 32767;
    the exact int32 sum (what VNNI gives) is 8 x 255 x 127 = 259080."""
    a = np.full((1, 8), 255, np.uint8)
    b = np.full((8, 3), 127, np.int8)
    b[:, 2] = -127
    model = _model([helper.make_node("MatMulInteger", ["a", "b", "a_zp"], ["y"])],
                   [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 8])],
                   [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 3])],
                   {"b": b, "a_zp": np.array(3, np.uint8)})
    emulated, counts = emulate_graph(model)
    assert counts["matmul_integer"] == 1
    assert not [n for n in emulated.graph.node if n.op_type == "MatMulInteger"]
    exact = ((a.astype(np.int64) - 3) @ b.astype(np.int64)).astype(np.int32)
    assert exact[0, 0] == 8 * 252 * 127
    assert np.array_equal(_run(emulated, {"a": a}), exact)


def test_a_quantized_convolution_computes_as_its_qdq_arithmetic_whatever_onnxruntime_fuses():
    """Q -> DQ activations and a DQ'd int8 weight into Conv: the emulated graph, optimized
    fully, gives what the QDQ graph computes unoptimized (float reference of the integer
    arithmetic), within float rounding; nothing quantized is left for a fused int8 kernel."""
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, size=(4, 3, 3, 3)).astype(np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zp"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                   {"x_scale": np.array(0.02, np.float32), "x_zp": np.array(128, np.uint8), "w": weight,
                    "w_scale": np.array([0.01, 0.02, 0.03, 0.04], np.float32), "w_zp": np.zeros(4, np.int8)})
    x = rng.normal(0, 1.5, size=(1, 3, 8, 8)).astype(np.float32)  # some beyond the u8 range: clipped
    reference = _run(model, {"x": x}, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    emulated, counts = emulate_graph(model)
    assert counts == {"dequantized": 1, "matmul_integer": 0, "quantize_linear": 1}
    assert not {n.op_type for n in emulated.graph.node} & {"QuantizeLinear", "DequantizeLinear"}
    np.testing.assert_allclose(_run(emulated, {"x": x}), reference, rtol=1e-5, atol=1e-5)


def _one_node(node, inits, out_type=TensorProto.FLOAT):
    return _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                  [helper.make_tensor_value_info("y", out_type, None)], inits)


@pytest.mark.parametrize("model, message", [
    # a fused integer kernel would run this CPU's own arithmetic
    (_model([helper.make_node("QLinearMatMul", ["a", "s", "z", "b", "s", "z", "s", "z"], ["y"])],
            [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 2])],
            [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
            {"s": np.array(0.1, np.float32), "z": np.array(0, np.uint8), "b": np.ones((2, 2), np.uint8)}),
     "cannot emulate a graph with QLinearMatMul"),
    # per-axis activation quantization
    (_one_node(helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1),
               {"s": np.full(4, 0.1, np.float32), "z": np.zeros(4, np.uint8)}, TensorProto.UINT8),
     "only per-tensor activation quantization is emulated"),
    # a scale computed in the graph
    (_one_node(helper.make_node("QuantizeLinear", ["x", "x", "z"], ["y"]), {"z": np.array(0, np.uint8)},
               TensorProto.UINT8),
     "its x is computed, not stored"),
])
def test_what_cannot_be_emulated_exactly_is_refused_in_one_line(model, message):
    with pytest.raises(EdgeVLMError, match=message):
        emulate_graph(model)


def test_without_onnx_emulation_is_one_line_naming_the_extra(tiny_engine_master, tmp_path, monkeypatch):
    import sys

    from edgevlm.calibration.int8_emulation import emulate_engine
    from edgevlm.errors import EdgeVLMError

    monkeypatch.setitem(sys.modules, "onnx", None)  # as on a runtime-only install
    with pytest.raises(EdgeVLMError, match=r"needs onnx, which is not installed: pip install '\.\[calibrate\]'"):
        emulate_engine(tiny_engine_master, str(tmp_path / "emulated"))
    assert not (tmp_path / "emulated").exists()
