"""Who reads and who writes each tensor of an ONNX graph: what the graph rewrites here
(gelu_fusion.py, stem_space_to_depth.py) match their patterns with, built once per graph."""

from __future__ import annotations

import onnx


class GraphLinks:
    """Readers and writer of every tensor name of ``graph`` as it is now (a rewrite that
    changes the graph builds a new one)."""

    def __init__(self, graph: onnx.GraphProto):
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        self.writers: dict[str, onnx.NodeProto] = {}
        self.graph_outputs = {output.name for output in graph.output}
        for node in graph.node:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
            for name in node.output:
                self.writers[name] = node

    def only_reader(self, name: str, op_type: str | None = None) -> onnx.NodeProto | None:
        """The one node reading ``name`` (of ``op_type``, if given), or None: none, several,
        another type, or ``name`` is also a graph output (a rewrite would lose it)."""
        nodes = self.readers.get(name, [])
        if len(nodes) != 1 or name in self.graph_outputs or (op_type and nodes[0].op_type != op_type):
            return None
        return nodes[0]

    def writer(self, name: str) -> onnx.NodeProto | None:
        """The node writing ``name``, or None (a graph input or an initializer)."""
        return self.writers.get(name)
