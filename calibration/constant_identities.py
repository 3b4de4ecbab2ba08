"""Replace ``Identity`` nodes that copy a stored constant by a stored copy of it.

Why: torch.onnx stores equal constants once and reads the repeats through Identity nodes
(a random-init or freshly initialised model has many equal BatchNorm-folded biases). The
static quantizer quantizes only stored biases ("Expected bias ... to be an initializer"), so
a Conv whose bias comes through an Identity keeps a float bias, and onnxruntime cannot fuse
it into an integer QLinearConv. Copies cost a few bytes per bias.
"""

from __future__ import annotations

import onnx


def inline_constant_identities(model: onnx.ModelProto) -> int:
    """In place: every Identity of an initializer becomes an initializer of its output's name.
    Returns how many were replaced."""
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    outputs = {output.name for output in graph.output}
    copies = [node for node in graph.node
              if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs]
    for node in copies:
        copy = onnx.TensorProto()
        copy.CopyFrom(inits[node.input[0]])
        copy.name = node.output[0]
        graph.initializer.append(copy)
        graph.node.remove(node)
    return len(copies)
