"""The decoder stepper of the native TensorRT backend: the self-attention cache and the cross
K/V stay in device memory for a whole search; only tokens go in and logits come back.

Per run: the token ids (and the 0-d position / prefix_len) are copied in, the decoder's
cache and cross inputs point at this stepper's device buffers, ``execute_async_v3`` writes
logits and the new K/V (L,R,H,T,hd) into the decoder's own output buffers, then one
``cudaMemcpy2DAsync`` per tensor puts the new K/V into cache slots position..position+T-1
(cache_copies.write_plan) and the logits come back. All on one stream, so the next run
sees the written cache without a host round trip, and no cache byte crosses PCIe.

Why copies and ping-pong rather than in-place: the graph returns only the new K/V (DESIGN.md,
"fixed capacity"), so input and output never alias (TensorRT does not promise in-place
I/O). Beam reordering is a gather, which cannot run in place: it copies into the spare
buffers (one 2-D copy per new row, cache_copies.reorder_plan) and swaps, as KVCache does.
"""

from __future__ import annotations

import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.cache_copies import reorder_plan, write_plan
from edgevlm.runtime.engine_profiles import check_within


class DeviceCacheStepper:
    """Stepper over the decoder plan; rows = images x beams, image-major (runtime/search.py)."""

    def __init__(self, backend, cross_k: np.ndarray, cross_v: np.ndarray, takes_prefix_len: bool):
        self.backend, self.cuda = backend, backend.cuda
        m = backend.manifest.model
        self.layers, self.heads, self.capacity, self.head_dim = m.n_layers, m.n_heads, m.cache_capacity, m.head_dim
        self.rows = cross_k.shape[1]
        check_within("decoder", backend.ranges["decoder"], {"batch": self.rows})
        self.takes_prefix_len = takes_prefix_len
        decoder = backend.manifest.graph("decoder")
        self.specs = {t.name: t for t in decoder.inputs}
        # Review fix: the logits' dtype is the graph's (an FP16-exported graph on TensorRT 11 returns
        # float16), not a hard-coded float32: download() sizes the host copy from it.
        self.logits_dtype = next(t.dtype for t in decoder.outputs if t.name == "logits")
        self.itemsize = np.dtype(self.specs["cache_k"].dtype).itemsize
        self._check_cross(backend, cross_k, cross_v)
        self.cache_shape = (self.layers, self.rows, self.heads, self.capacity, self.head_dim)
        self.buffers = dict(backend.device_cache())  # k, v, spare_k, spare_v, cross_k, cross_v
        stream = backend._stream
        for name, array in (("cross_k", cross_k), ("cross_v", cross_v)):  # once per search
            array = np.ascontiguousarray(array, self.specs[name].dtype)
            self.cross_shape = array.shape
            self.cuda.copy(self.buffers[name], array.ctypes.data, array.nbytes, self.cuda.H2D, stream)
        self.cuda.sync(stream)  # the host arrays may go once this returns
        self._position = np.zeros((), np.int64)
        self._prefix_len = np.zeros((), np.int64)

    def _run(self, tokens: np.ndarray, position: int, prefix_len: int) -> np.ndarray:
        """tokens (R,T) at ``position`` -> logits (R,T,V); their K/V written into the device cache."""
        b, cuda, stream = self.backend, self.cuda, self.backend._stream
        t = tokens.shape[1]
        copy_k = write_plan(self.layers, self.rows, self.heads, self.capacity, self.head_dim, position, t, self.itemsize)
        check_within("decoder", b.ranges["decoder"], {"batch": self.rows, "tokens": t})
        b.bind("decoder", {"cache_k": self.buffers["k"], "cache_v": self.buffers["v"],
                           "cross_k": self.buffers["cross_k"], "cross_v": self.buffers["cross_v"]})
        self._position[()] = position
        b.upload("decoder", "input_ids", np.ascontiguousarray(tokens, np.int64))
        b.upload("decoder", "position", self._position)
        if self.takes_prefix_len:
            self._prefix_len[()] = prefix_len
            b.upload("decoder", "prefix_len", self._prefix_len)
        context = b.contexts["decoder"]
        for name, shape in (("cache_k", self.cache_shape), ("cache_v", self.cache_shape),
                            ("cross_k", self.cross_shape), ("cross_v", self.cross_shape)):
            context.set_input_shape(name, shape)  # the data is already on the device
        b.execute("decoder")
        out = b.buffers["decoder"]
        cuda.copy_2d(self.buffers["k"], out["new_k"], copy_k, stream)
        cuda.copy_2d(self.buffers["v"], out["new_v"], copy_k, stream)
        logits = b.download("decoder", "logits", self.logits_dtype)
        cuda.sync(stream)
        return logits

    def _check_cross(self, backend, cross_k: np.ndarray, cross_v: np.ndarray) -> None:
        """Review fix: cross K/V are copied into buffers sized for the profile's largest shape
        (tensorrt_backend.device_cache), and cudaMemcpyAsync does not know that size. Refuse, in
        one line, an array whose rank or static dims differ from the manifest's or whose named axes
        (batch; BLIP's question "context") leave the plan's profile, instead of writing past the buffer."""
        for name, array in (("cross_k", cross_k), ("cross_v", cross_v)):
            spec = self.specs[name]
            if array.ndim != len(spec.shape) or any(isinstance(d, int) and d != n for d, n in zip(spec.shape, array.shape)):
                raise EdgeVLMError(f"decoder.{name}: shape {tuple(array.shape)} does not match the manifest's "
                                   f"{tuple(spec.shape)}")
            check_within("decoder", backend.ranges["decoder"],
                         {d: n for d, n in zip(spec.shape, array.shape) if isinstance(d, str)})
        if cross_k.shape != cross_v.shape:
            raise EdgeVLMError(f"decoder: cross_k {tuple(cross_k.shape)} and cross_v {tuple(cross_v.shape)} differ")

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray:
        """tokens (R,) int64 at ``position`` -> next-token logits (R, V)."""
        return self._run(tokens.reshape(-1, 1), position, 0)[:, 0]

    def prefill(self, prompts: np.ndarray) -> np.ndarray:
        """prompts (R,P) at positions 0..P-1 in one run -> logits after the last (R, V)."""
        return self._run(np.ascontiguousarray(prompts, np.int64), 0, prompts.shape[1])[:, -1]

    def reorder(self, rows: np.ndarray) -> None:
        """Row i becomes old row ``rows[i]``: gathered into the spares, then swapped."""
        row_bytes = self.heads * self.capacity * self.head_dim * self.itemsize
        stream = self.backend._stream
        for name in ("k", "v"):
            for plan in reorder_plan(rows, self.layers, self.rows, row_bytes):
                self.cuda.copy_2d(self.buffers["spare_" + name], self.buffers[name], plan, stream)
            self.buffers[name], self.buffers["spare_" + name] = self.buffers["spare_" + name], self.buffers[name]
