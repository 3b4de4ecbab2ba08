"""A minimal ONNX ModelProto writer: enough protobuf to state a few-node graph as bytes.

The runtime's base install is numpy + onnxruntime, without the ``onnx`` package (it is an
export/calibrate extra), yet the device-resident KV cache needs two tiny graphs built at
run time (``ort_cache_graphs.py``). They are written here straight in protobuf's wire
format (varints and length-delimited fields), following onnx/onnx.proto's field numbers;
``tests/runtime/test_io_binding.py`` parses the result with ``onnx`` and runs its checker.

Supported: tensor-typed inputs/outputs (static or named dims), int64 initializers, nodes
with int / ints attributes. Nothing else is needed by the cache graphs.
"""

from __future__ import annotations

import numpy as np

# onnx.proto TensorProto.DataType
ELEM_TYPES = {np.dtype("float32"): 1, np.dtype("float16"): 10, np.dtype("int64"): 7}
IR_VERSION = 8  # onnxruntime >= 1.10 reads it; our floor is 1.17 (pyproject)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s are ten-byte two's complement on the wire
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, payload: bytes | str) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def tensor_value(name: str, dtype, dims: tuple) -> bytes:
    """ValueInfoProto of a tensor; ``dims`` holds ints (static) or strings (named, dynamic)."""
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in dims)
    tensor_type = _int(1, ELEM_TYPES[np.dtype(dtype)]) + _bytes(2, shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def int64_initializer(name: str, values: list[int]) -> bytes:
    """TensorProto: a 1-D int64 constant (raw little-endian data)."""
    dims = _int(1, len(values))
    return dims + _int(2, ELEM_TYPES[np.dtype("int64")]) + _bytes(8, name) + _bytes(9, np.asarray(values, "<i8").tobytes())


def node(op_type: str, inputs: list[str], outputs: list[str], **attributes: int | list[int]) -> bytes:
    """NodeProto; attributes are INT (type 2) or INTS (type 7)."""
    out = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
    out += _bytes(3, f"{op_type}_{outputs[0]}") + _bytes(4, op_type)
    for key, value in attributes.items():
        if isinstance(value, int):
            out += _bytes(5, _bytes(1, key) + _int(3, value) + _int(20, 2))
        else:
            out += _bytes(5, _bytes(1, key) + b"".join(_int(8, v) for v in value) + _int(20, 7))
    return out


def model(name: str, nodes: list[bytes], inputs: list[bytes], outputs: list[bytes],
          initializers: list[bytes] = (), opset: int = 13) -> bytes:
    """ModelProto bytes, ready for ``onnxruntime.InferenceSession(bytes)``."""
    graph = b"".join(_bytes(1, n) for n in nodes) + _bytes(2, name)
    graph += b"".join(_bytes(5, t) for t in initializers)
    graph += b"".join(_bytes(11, v) for v in inputs) + b"".join(_bytes(12, v) for v in outputs)
    opset_import = _bytes(1, "") + _int(2, opset)
    return _int(1, IR_VERSION) + _bytes(2, "edgevlm") + _bytes(7, graph) + _bytes(8, opset_import)
