"""Fuse the exported erf-GELU (five nodes) into onnxruntime's one ``Gelu`` node, in a graph
made for onnxruntime's CPU (the ``cpu`` variant) before it is quantized.

Why by hand: onnxruntime fuses this pattern itself (GeluFusion), but in an INT8 QDQ graph
it cannot. Its QDQ pass first gives each consumer of a DequantizeLinear its own copy, so the
pattern's two reads of x (the Div's and the Mul's) come from two different nodes and no
longer match. The float GELU then runs as five nodes and two DequantizeLinear (measured on the
vision graph: ~0.1 ms of a ~2.7 ms run, profiled). ``com.microsoft.Gelu`` is an onnxruntime
contrib op: only the ``cpu`` variant, which nothing but onnxruntime runs, gets it.

The pattern torch.onnx writes for nn.GELU() (approximate="none") at opset 17:
    y = Mul(Mul(x, Add(Erf(Div(x, sqrt(2))), 1)), 0.5)
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph_links import GraphLinks

CONTRIB_DOMAIN = "com.microsoft"


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _scalar_equal(values: dict[str, np.ndarray], name: str, expected: float) -> bool:
    value = values.get(name)
    return value is not None and value.size == 1 and math.isclose(float(value.reshape(())), expected, rel_tol=1e-6)


def _other_input(node: onnx.NodeProto, known: str) -> str | None:
    """The input of a two-input node that is not ``known`` (None if ``known`` is not one)."""
    if known not in node.input:
        return None
    rest = [name for name in node.input if name != known]
    return rest[0] if len(rest) == 1 else None


def fuse_erf_gelu(model: onnx.ModelProto) -> int:
    """Replace every erf-GELU of ``model``'s main graph by one com.microsoft Gelu node,
    in place; its output keeps the last Mul's name. Returns how many were fused."""
    graph = model.graph
    values = _constants(graph)
    only_consumer = GraphLinks(graph).only_reader
    fused, removed = [], set()
    for div in graph.node:
        if div.op_type != "Div" or len(div.input) != 2 or not _scalar_equal(values, div.input[1], math.sqrt(2.0)):
            continue
        x = div.input[0]
        erf = only_consumer(div.output[0], "Erf")
        add = erf and only_consumer(erf.output[0], "Add")
        if not add or not _scalar_equal(values, _other_input(add, erf.output[0]) or "", 1.0):
            continue
        mul = only_consumer(add.output[0], "Mul")
        if not mul or _other_input(mul, add.output[0]) != x:
            continue
        half = only_consumer(mul.output[0], "Mul")
        if not half or not _scalar_equal(values, _other_input(half, mul.output[0]) or "", 0.5):
            continue
        gelu = helper.make_node("Gelu", [x], [half.output[0]], name=f"{div.name.rsplit('/', 1)[0]}/Gelu",
                                domain=CONTRIB_DOMAIN)
        fused.append((div, gelu))
        removed.update(id(node) for node in (div, erf, add, mul, half))
    if not fused:
        return 0
    # Rebuild the node list in order, each Gelu where its Div was (keeps it topologically sorted).
    replacement = {id(div): gelu for div, gelu in fused}
    nodes = [replacement.get(id(node), node) for node in graph.node
             if id(node) in replacement or id(node) not in removed]
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(opset.domain == CONTRIB_DOMAIN for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid(CONTRIB_DOMAIN, 1))
    return len(fused)
