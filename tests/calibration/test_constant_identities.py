"""Identity copies of stored constants become stored constants (so the quantizer sees biases)."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgevlm.calibration.constant_identities import inline_constant_identities
from tests.support import onnx_model


def test_identity_copies_of_a_bias_become_initializers_with_the_same_values():
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((2, 3, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([0.5, -1.0], np.float32), "b")]
    nodes = [helper.make_node("Identity", ["b"], ["b_copy"]),
             helper.make_node("Conv", ["x", "w", "b"], ["y1"]), helper.make_node("Conv", ["y1", "w2", "b_copy"], ["y"])]
    inits.append(numpy_helper.from_array(rng.standard_normal((2, 2, 1, 1)).astype(np.float32), "w2"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = onnx_model(graph)
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    before = run(model)
    assert inline_constant_identities(model) == 1
    assert "Identity" not in {n.op_type for n in model.graph.node}
    assert "b_copy" in {i.name for i in model.graph.initializer}
    np.testing.assert_array_equal(run(model), before)


def test_an_identity_that_is_a_graph_output_stays():
    graph = helper.make_graph([helper.make_node("Identity", ["b"], ["out"])], "g", [],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])],
                              [numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "b")])
    model = onnx_model(graph)
    assert inline_constant_identities(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Identity"]
