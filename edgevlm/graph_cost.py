"""The arithmetic and memory traffic of an ONNX graph, counted from the graph itself.

One pass over the nodes after ``onnx.shape_inference`` on concrete input shapes (every
dynamic axis given a number), counting the matrix ops only: MatMul, Gemm and Conv
(grouped and depthwise included) as float work, and the integer ops (MatMulInteger,
ConvInteger, QLinearMatMul, QLinearConv, and onnxruntime's DynamicQuantizeMatMul,
MatMulIntegerToFloat, MatMulNBits) as int8 work. A float MatMul/Conv/Gemm whose data and
weight inputs both come straight from DequantizeLinear is a QDQ pair that onnxruntime runs
as QLinearConv/QLinearMatMul: int8 work too. Elementwise ops, norms and softmax are left
out: on our graphs they are a few percent of the FLOPs, and their cost is memory traffic,
which the byte count below covers only for the graph's own inputs and outputs.

Units: ops = 2 x multiply-accumulates (a MatMul (M,K)x(K,N) is 2*M*K*N), split into
``float_ops`` and ``int8_ops``. Bytes = every weight (initializers and Constant nodes, at
their stored dtype) read once + every graph input read once + every graph output written
once. Assumption: intermediate activations stay in the caches between the node that makes
them and the node that reads them (true at batch 1: the largest is < 1 MB), so they are not
counted; the floor is therefore a lower bound, which is what a floor should be.

Needs the ``onnx`` package (the calibrate/export extras), never torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgevlm.errors import EdgeVLMError


def shape_inference_follows_shape_slices() -> bool:
    """Does this onnxruntime's symbolic shape inference honour Shape's start/end (opset 15+)?
    Releases before 1.32 ignore them, and a Range after such a Shape fails an assert."""
    import onnxruntime as ort

    return tuple(int(part) for part in ort.__version__.split(".")[:2] if part.isdigit()) >= (1, 32)


class ShapeInferenceError(EdgeVLMError):
    """onnxruntime's symbolic shape inference failed on ``where`` (``engine_costs`` names the
    file); ``cause``: what the tool raised, kept so the error can be re-raised for a file."""

    def __init__(self, cause: str, where: str = "this graph"):
        import onnxruntime as ort

        self.cause = cause
        fix = ("" if shape_inference_follows_shape_slices()
               else "upgrade onnxruntime (1.32 follows Shape's start/end), or ")
        super().__init__(f"onnxruntime {ort.__version__}'s shape inference cannot follow {where} ({cause}); "
                         f"{fix}run bench with --no-floor")


# node type -> (index of the data input A / X, index of the weight input B / W)
_FLOAT_MATMUL = {"MatMul": (0, 1), "Gemm": (0, 1)}
_INT8_MATMUL = {"MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "DynamicQuantizeMatMul": (0, 1),
                "MatMulIntegerToFloat": (0, 1), "MatMulNBits": (0, 1)}
_FLOAT_CONV = {"Conv": (0, 1)}
_INT8_CONV = {"ConvInteger": (0, 1), "QLinearConv": (0, 3)}


@dataclass(frozen=True)
class GraphCost:
    """One graph at one set of input shapes: ops (2 x MACs) and bytes moved (see module doc)."""

    float_ops: int
    int8_ops: int
    weight_bytes: int
    io_bytes: int  # graph inputs read + outputs written, at the concrete shapes

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.io_bytes

    def to_json(self) -> dict:
        return {"float_ops": self.float_ops, "int8_ops": self.int8_ops, "weight_bytes": self.weight_bytes,
                "io_bytes": self.io_bytes, "bytes": self.bytes}


def with_concrete_shapes(model: onnx.ModelProto, dims: dict[str, int],
                         values: dict[str, int] | None = None) -> onnx.ModelProto:
    """A copy of ``model`` with every named dynamic input axis set from ``dims`` (e.g.
    {"batch": 1, "tokens": 1}) and the 0-d int64 inputs named in ``values`` (e.g.
    {"position": 5}) made constants, shapes then inferred through the whole graph.

    onnxruntime's symbolic shape inference, not ``onnx.shape_inference``: the decoder's
    position embedding is a Range over ``position`` .. ``position + tokens``, whose length
    onnx's data propagation leaves unknown (335 of 1238 decoder tensors), while
    onnxruntime's evaluates it (needs sympy, as ``quantize`` does). An axis not in ``dims``
    is a KeyError naming it: a silent 1 would miscount."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.value_info[:]  # the exporter's symbolic shapes would shadow the concrete ones
    values = values or {}
    initializers = {i.name for i in model.graph.initializer}
    kept = []
    for value in model.graph.input:
        if value.name in values:  # a known scalar: a constant, so Range and friends evaluate
            model.graph.initializer.append(numpy_helper.from_array(np.array(values[value.name], np.int64), value.name))
            continue
        kept.append(value)
        if value.name in initializers:
            continue
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                name = dim.dim_param
                if name not in dims:
                    raise KeyError(f"input {value.name!r}: no size for dynamic axis {name!r} (have {sorted(dims)})")
                dim.dim_value = dims[name]  # clears dim_param (a oneof)
    del model.graph.input[:]
    model.graph.input.extend(kept)
    for value in model.graph.output:  # outputs are re-inferred; stale symbols would clash
        value.type.tensor_type.ClearField("shape")
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception as exc:  # noqa: BLE001 - the tool asserts (shape_inference_follows_shape_slices)
        # a bare AssertionError would say nothing
        raise ShapeInferenceError(f"{type(exc).__name__}{': ' + str(exc).splitlines()[0] if str(exc) else ''}") from exc


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...] | None]:
    """tensor name -> concrete shape (None where inference left an axis unknown)."""
    out: dict[str, tuple[int, ...] | None] = {}
    for value in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        shape = value.type.tensor_type.shape
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in shape.dim)
        out[value.name] = None if -1 in dims or not value.type.tensor_type.HasField("shape") else dims
    for tensor in model.graph.initializer:
        out[tensor.name] = tuple(tensor.dims)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            out[node.output[0]] = tuple(node.attribute[0].t.dims)
    return out


def _tensor_bytes(tensor: onnx.TensorProto) -> int:
    itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return int(np.prod(tensor.dims, dtype=np.int64)) * itemsize


def _value_bytes(value: onnx.ValueInfoProto, shape: tuple[int, ...] | None) -> int:
    if shape is None:
        return 0
    itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)).itemsize
    return int(np.prod(shape, dtype=np.int64)) * itemsize


def _matmul_macs(node: onnx.NodeProto, shapes: dict, a_index: int) -> int:
    """MACs of a (batched) matrix product: output elements x the shared dimension K."""
    a, out = shapes.get(node.input[a_index]), shapes.get(node.output[0])
    if a is None or out is None:
        raise ValueError(f"{node.op_type} {node.name!r}: shapes unknown after inference")
    if node.op_type == "MatMulNBits":
        k = helper.get_node_attr_value(node, "K")
    elif node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute):
        k = a[0]
    else:
        k = a[-1]
    return int(np.prod(out, dtype=np.int64)) * int(k)


def _conv_macs(node: onnx.NodeProto, shapes: dict, w_index: int) -> int:
    """MACs of a convolution: output elements x (input channels per group x kernel area).
    The weight is (C_out, C_in / group, *kernel), so grouped and depthwise need no special case."""
    w, out = shapes.get(node.input[w_index]), shapes.get(node.output[0])
    if w is None or out is None:
        raise ValueError(f"{node.op_type} {node.name!r}: shapes unknown after inference")
    return int(np.prod(out, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))


# node type -> (MAC counter, the input it reads: A for a product, W for a convolution,
# (data, weight) inputs, int8 whatever its inputs)
_COUNTED = {
    **{op: (_matmul_macs, ins[0], ins, False) for op, ins in _FLOAT_MATMUL.items()},
    **{op: (_matmul_macs, ins[0], ins, True) for op, ins in _INT8_MATMUL.items()},
    **{op: (_conv_macs, ins[1], ins, False) for op, ins in _FLOAT_CONV.items()},
    **{op: (_conv_macs, ins[1], ins, True) for op, ins in _INT8_CONV.items()},
}


def graph_cost(model: onnx.ModelProto, dims: dict[str, int], values: dict[str, int] | None = None) -> GraphCost:
    """Count ``model`` (see the module doc) at input axes ``dims`` and scalar inputs ``values``."""
    inferred = with_concrete_shapes(model, dims, values)
    shapes = _shapes(inferred)
    made_by = {out: node.op_type for node in inferred.graph.node for out in node.output}

    def dequantized(node: onnx.NodeProto, indices: tuple[int, int]) -> bool:
        return all(made_by.get(node.input[i]) == "DequantizeLinear" for i in indices)

    float_macs = int8_macs = 0
    for node in inferred.graph.node:
        counted = _COUNTED.get(node.op_type)
        if counted is None:
            continue
        count, index, inputs, int8 = counted
        macs = count(node, shapes, index)
        if int8 or dequantized(node, inputs):  # a float op between DequantizeLinears runs as int8 (QDQ)
            int8_macs += macs
        else:
            float_macs += macs
    weights = sum(_tensor_bytes(t) for t in inferred.graph.initializer)
    weights += sum(_tensor_bytes(n.attribute[0].t) for n in inferred.graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value")
    initializers = {t.name for t in inferred.graph.initializer}
    io = sum(_value_bytes(v, shapes.get(v.name)) for v in (*inferred.graph.input, *inferred.graph.output)
             if v.name not in initializers)
    return GraphCost(2 * float_macs, 2 * int8_macs, weights, io)


def graph_dims(spec_inputs, batch: int = 1, tokens: int = 1, question: int = 8) -> dict[str, int]:
    """Sizes for every dynamic axis named in a graph's manifest inputs: ``batch`` rows,
    ``tokens`` new decoder tokens (1: one step), ``question`` tokens for BLIP's question
    graph (8: a typical spoken question). Unknown axis names get 1 (listed nowhere else)."""
    sizes = {"batch": batch, "tokens": tokens, "question": question, "context": question}
    return {dim: sizes.get(dim, 1) for spec in spec_inputs for dim in spec.shape if isinstance(dim, str)}


# A decoder step at a typical position of a caption (~10 tokens); our decoder attends over
# the whole fixed-capacity cache (masked), so its ops do not depend on the position anyway.
STEP_VALUES = {"position": 5, "prefix_len": 0}


def engine_costs(manifest, batch: int = 1) -> dict[str, GraphCost]:
    """graph name -> its cost at ``batch`` rows (1 greedy; beams x images for beam search):
    the decoder for one token (a search step, on the manifest's cache capacity), the other
    graphs for one run."""
    costs = {}
    for name, spec in manifest.graphs.items():
        values = {k: v for k, v in STEP_VALUES.items() if spec.takes(k) and not _has_shape(spec, k)}
        path = manifest.graph_path(name)
        try:
            costs[name] = graph_cost(onnx.load(path), graph_dims(spec.inputs, batch), values)
        except ShapeInferenceError as exc:
            raise ShapeInferenceError(exc.cause, path) from exc
    return costs


def _has_shape(spec, name: str) -> bool:
    """Is input ``name`` of a manifest graph spec an array (not a 0-d scalar)?"""
    return any(t.name == name and len(t.shape) > 0 for t in spec.inputs)
