"""FLOP and byte counting on hand-built ONNX graphs whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevlm.errors import EdgeVLMError
from edgevlm.graph_cost import graph_cost, graph_dims, shape_inference_follows_shape_slices
from tests.support import onnx_model


def _model(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "t", inputs, outputs, list(inits))
    return onnx_model(graph, 17)


def _input(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _output(name, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, None)


def test_matmul_is_two_m_k_n_flops_and_its_bytes():
    m, k, n = 7, 32, 48
    w = numpy_helper.from_array(np.zeros((k, n), np.float32), "W")
    model = _model([helper.make_node("MatMul", ["A", "W"], ["Y"])], [_input("A", ["batch", k])], [_output("Y")], [w])
    cost = graph_cost(model, {"batch": m})
    assert cost.float_ops == 2 * m * k * n and cost.int8_ops == 0
    assert cost.weight_bytes == k * n * 4
    assert cost.io_bytes == (m * k + m * n) * 4  # input read once, output written once
    assert cost.bytes == cost.weight_bytes + cost.io_bytes


def test_batched_matmul_and_transposed_gemm():
    batched = _model([helper.make_node("MatMul", ["A", "B"], ["Y"])],
                     [_input("A", [2, 3, 5, 8]), _input("B", [2, 3, 8, 4])], [_output("Y")])
    assert graph_cost(batched, {}).float_ops == 2 * (2 * 3) * 5 * 8 * 4
    w = numpy_helper.from_array(np.zeros((6, 10), np.float32), "W")
    gemm = _model([helper.make_node("Gemm", ["A", "W"], ["Y"], transA=1, transB=1)],
                  [_input("A", [10, 3])], [_output("Y")], [w])  # A^T (3,10) x W^T (10,6)
    assert graph_cost(gemm, {}).float_ops == 2 * 3 * 10 * 6


@pytest.mark.parametrize("group,c_in,c_out", [(1, 8, 16), (2, 8, 16), (8, 8, 8)])  # plain, grouped, depthwise
def test_conv_counts_input_channels_per_group(group, c_in, c_out):
    w = numpy_helper.from_array(np.zeros((c_out, c_in // group, 3, 3), np.float32), "W")
    node = helper.make_node("Conv", ["X", "W"], ["Y"], group=group, pads=[1, 1, 1, 1], strides=[2, 2])
    model = _model([node], [_input("X", ["batch", c_in, 16, 16])], [_output("Y")], [w])
    cost = graph_cost(model, {"batch": 1})
    assert cost.float_ops == 2 * (c_out * 8 * 8) * (c_in // group) * 9


def test_integer_ops_count_as_int8():
    m, k, n = 4, 16, 24
    w = numpy_helper.from_array(np.zeros((k, n), np.int8), "W")
    model = _model([helper.make_node("MatMulInteger", ["A", "W"], ["Y"])],
                   [_input("A", ["batch", k], TensorProto.UINT8)], [_output("Y", TensorProto.INT32)], [w])
    cost = graph_cost(model, {"batch": m})
    assert cost.int8_ops == 2 * m * k * n and cost.float_ops == 0
    assert cost.weight_bytes == k * n  # one byte per int8 weight
    assert cost.io_bytes == m * k + m * n * 4


def test_a_qdq_conv_is_int8_work():
    """Conv over DequantizeLinear'd input and weight: onnxruntime runs it as QLinearConv."""
    inits = [numpy_helper.from_array(np.zeros((4, 2, 1, 1), np.int8), "Wq"),
             numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array(np.array(0, np.uint8), "zu")]
    nodes = [helper.make_node("QuantizeLinear", ["X", "s", "zu"], ["Xq"]),
             helper.make_node("DequantizeLinear", ["Xq", "s", "zu"], ["Xd"]),
             helper.make_node("DequantizeLinear", ["Wq", "s", "z"], ["Wd"]),
             helper.make_node("Conv", ["Xd", "Wd"], ["Y"])]
    cost = graph_cost(_model(nodes, [_input("X", [1, 2, 5, 5])], [_output("Y")], inits), {})
    assert cost.int8_ops == 2 * (4 * 5 * 5) * 2 and cost.float_ops == 0


def test_a_range_over_a_scalar_input_resolves_when_given_its_value():
    """The decoder's positions are Range(position, position + tokens): given a position the
    shapes after it are known and the MatMul behind it counts."""
    inits = [numpy_helper.from_array(np.zeros((64, 8), np.float32), "table"),
             numpy_helper.from_array(np.zeros((8, 5), np.float32), "W"),
             numpy_helper.from_array(np.array(1, np.int64), "one")]
    nodes = [helper.make_node("Shape", ["ids"], ["shape"], start=1, end=2),
             helper.make_node("Squeeze", ["shape"], ["count"]),
             helper.make_node("Add", ["position", "count"], ["end"]),
             helper.make_node("Range", ["position", "end", "one"], ["positions"]),
             helper.make_node("Gather", ["table", "positions"], ["embedded"]),
             helper.make_node("MatMul", ["embedded", "W"], ["Y"])]
    model = _model(nodes, [_input("ids", ["batch", "tokens"], TensorProto.INT64), _input("position", [], TensorProto.INT64)],
                   [_output("Y")], inits)
    if not shape_inference_follows_shape_slices():  # its shape inference ignores Shape's start/end: one clear line
        with pytest.raises(EdgeVLMError, match="shape inference cannot follow this graph .*upgrade onnxruntime"):
            graph_cost(model, {"batch": 1, "tokens": 3}, {"position": 5})
        return
    cost = graph_cost(model, {"batch": 1, "tokens": 3}, {"position": 5})
    assert cost.float_ops == 2 * 3 * 8 * 5


def test_a_shape_inference_failure_is_one_line_naming_the_graph_file(tiny_engine_dir, monkeypatch):
    """onnxruntime's shape inference tool fails by a bare assert: bench's floor says which graph
    file and what to do, in one line (the upgrade only where the installed release predates 1.32)."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    from edgevlm.graph_cost import engine_costs
    from edgevlm.runtime.manifest import load_manifest

    def fail(*_args, **_kwargs):
        raise AssertionError()

    monkeypatch.setattr(SymbolicShapeInference, "infer_shapes", staticmethod(fail))
    with pytest.raises(EdgeVLMError) as err:
        engine_costs(load_manifest(tiny_engine_dir))
    message = str(err.value)
    assert "shape inference cannot follow" in message and ".onnx (AssertionError)" in message and "\n" not in message
    assert message.endswith("run bench with --no-floor")
    assert ("upgrade onnxruntime" in message) != shape_inference_follows_shape_slices()


def test_an_axis_without_a_size_is_named():
    model = _model([helper.make_node("Relu", ["A"], ["Y"])], [_input("A", ["frames", 4])], [_output("Y")])
    with pytest.raises(KeyError, match="frames"):
        graph_cost(model, {"batch": 1})


def test_graph_dims_sizes_every_named_axis():
    from edgevlm.runtime.manifest import TensorSpec

    specs = [TensorSpec("input_ids", "int64", ("batch", "tokens")), TensorSpec("cache", "float32", (4, "batch", 32))]
    assert graph_dims(specs, batch=3) == {"batch": 3, "tokens": 1}
