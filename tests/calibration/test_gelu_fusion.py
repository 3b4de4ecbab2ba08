"""The erf-GELU torch exports, fused into onnxruntime's one Gelu node for the cpu variant."""

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevlm.calibration.gelu_fusion import fuse_erf_gelu
from tests.support import onnx_model


def _gelu_graph(mul_input="x", half=0.5, extra_output=None):
    """x (2,5) -> erf-GELU -> y; ``mul_input`` other than x, another ``half`` or an inner
    tensor also a graph output (``extra_output``): near misses, not a GELU to fuse."""
    consts = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
              (("root2", math.sqrt(2.0)), ("one", 1.0), ("half", half))]
    nodes = [helper.make_node("Div", ["x", "root2"], ["d"], name="/mlp/act/Div"),
             helper.make_node("Erf", ["d"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"]),
             helper.make_node("Mul", [mul_input, "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])]
    if mul_input != "x":
        inputs.append(helper.make_tensor_value_info(mul_input, TensorProto.FLOAT, [2, 5]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])]
    if extra_output:
        outputs.append(helper.make_tensor_value_info(extra_output, TensorProto.FLOAT, [2, 5]))
    graph = helper.make_graph(nodes, "g", inputs, outputs, consts)
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


@pytest.mark.parametrize("options", [{"mul_input": "z"}, {"half": 0.25}, {"extra_output": "e"}],
                         ids=["another input", "another constant", "an inner output"])
def test_a_near_miss_is_left_alone(options):
    model = _gelu_graph(**options)
    before = model.SerializeToString()
    assert fuse_erf_gelu(model) == 0
    assert model.SerializeToString() == before
