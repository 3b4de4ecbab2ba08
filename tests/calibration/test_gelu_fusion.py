"""The erf-GELU torch exports, fused into onnxruntime's one Gelu node for the cpu variant."""

import math

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgevlm.calibration.gelu_fusion import fuse_erf_gelu
from tests.support import onnx_model


def _gelu_graph(mul_input="x"):
    """x (2,5) -> erf-GELU -> y; ``mul_input`` other than x: a near miss, not a GELU."""
    consts = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
              (("root2", math.sqrt(2.0)), ("one", 1.0), ("half", 0.5))]
    nodes = [helper.make_node("Div", ["x", "root2"], ["d"], name="/mlp/act/Div"),
             helper.make_node("Erf", ["d"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"]),
             helper.make_node("Mul", [mul_input, "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])]
    if mul_input != "x":
        inputs.append(helper.make_tensor_value_info(mul_input, TensorProto.FLOAT, [2, 5]))
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])], consts)
    return onnx_model(graph)


def _run(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_the_pattern_becomes_one_gelu_with_the_same_values():
    model = _gelu_graph()
    x = np.linspace(-4, 4, 10, dtype=np.float32).reshape(2, 5)
    before = _run(model, {"x": x})
    assert fuse_erf_gelu(model) == 1
    assert [(n.op_type, n.domain, list(n.input), list(n.output)) for n in model.graph.node] == [
        ("Gelu", "com.microsoft", ["x"], ["y"])]
    np.testing.assert_allclose(_run(model, {"x": x}), before, atol=1e-6)


def test_a_near_miss_is_left_alone():
    model = _gelu_graph(mul_input="z")
    before = model.SerializeToString()
    assert fuse_erf_gelu(model) == 0
    assert model.SerializeToString() == before
