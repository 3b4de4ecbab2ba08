"""The two tiny graphs that keep the decoder's self-attention cache on the device.

Why graphs: from Python, onnxruntime offers no in-place slice write into a device OrtValue,
and a graph cannot alias an input to an output (the docs promise no such thing; see
../shared/notes/gpu_jetson.md), so the cache lives in a ping-pong pair: a graph reads the
current buffer and writes the whole updated cache into the spare one, bound as its output
(IO binding), then the pair swaps. The copy is a device-side memcpy of the cache, a few
hundred KB per row, and no byte crosses to the host.

- ``cache_write``: (cache_k, cache_v (L,R,H,S,hd), new_k, new_v (L,R,H,T,hd), position ())
  -> out_k, out_v (L,R,H,S,hd) with slots position..position+T-1 replaced (Slice, Concat
  along axis 3). The caller checks position + T <= S (Slice would clamp silently).
- ``cache_gather``: (cache_k, cache_v (L,R,H,S,hd), rows (R,) int64) -> out_k, out_v with
  row i = old row rows[i] (Gather axis 1): beam reordering.

Bytes are built once per dtype (``onnx_bytes``: no onnx package at run time).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edgevlm.runtime.backends import onnx_bytes as ob

INT64_MAX = 2**63 - 1
_CACHE = ("layers", "rows", "heads", "capacity", "head_dim")
_NEW = ("layers", "rows", "heads", "tokens", "head_dim")


@lru_cache(maxsize=None)
def cache_write_model(dtype: str = "float32") -> bytes:
    nodes = [
        ob.node("Unsqueeze", ["position", "axis0"], ["start"]),  # () -> (1,): Slice wants 1-D
        ob.node("Shape", ["new_k"], ["new_shape"]),
        ob.node("Gather", ["new_shape", "axis3"], ["tokens"], axis=0),  # T, as (1,)
        ob.node("Add", ["start", "tokens"], ["end"]),
    ]
    for x in ("k", "v"):
        nodes += [
            ob.node("Slice", [f"cache_{x}", "zero", "start", "axis3"], [f"head_{x}"]),
            ob.node("Slice", [f"cache_{x}", "end", "int64_max", "axis3"], [f"tail_{x}"]),
            ob.node("Concat", [f"head_{x}", f"new_{x}", f"tail_{x}"], [f"out_{x}"], axis=3),
        ]
    inputs = [ob.tensor_value("cache_k", dtype, _CACHE), ob.tensor_value("cache_v", dtype, _CACHE),
              ob.tensor_value("new_k", dtype, _NEW), ob.tensor_value("new_v", dtype, _NEW),
              ob.tensor_value("position", np.int64, ())]
    outputs = [ob.tensor_value("out_k", dtype, _CACHE), ob.tensor_value("out_v", dtype, _CACHE)]
    constants = [ob.int64_initializer("axis0", [0]), ob.int64_initializer("axis3", [3]),
                 ob.int64_initializer("zero", [0]), ob.int64_initializer("int64_max", [INT64_MAX])]
    return ob.model("cache_write", nodes, inputs, outputs, constants)


@lru_cache(maxsize=None)
def cache_gather_model(dtype: str = "float32") -> bytes:
    nodes = [ob.node("Gather", [f"cache_{x}", "rows"], [f"out_{x}"], axis=1) for x in ("k", "v")]
    inputs = [ob.tensor_value("cache_k", dtype, _CACHE), ob.tensor_value("cache_v", dtype, _CACHE),
              ob.tensor_value("rows", np.int64, ("rows",))]
    outputs = [ob.tensor_value("out_k", dtype, _CACHE), ob.tensor_value("out_v", dtype, _CACHE)]
    return ob.model("cache_gather", nodes, inputs, outputs)
