"""The decoder stepper with IO binding: cache and cross K/V on the device, only logits back.

Same interface as ``steppers.CacheStepper`` (``step``, ``prefill``, ``reorder``), so the
searches (runtime/search.py, runtime/search_hf.py) drive it unchanged. Per decoder run:
- inputs: ``input_ids``, ``position`` (and ``prefix_len`` where the graph takes it: ours
  does, GIT's does not) are small host OrtValues over reused numpy buffers, rebound each run
  (IO binding copies a host input to the device at bind time); ``cache_k/v`` are the
  ``DeviceKVCache``'s current buffers; ``cross_k/v`` were uploaded once, when the stepper
  was made (once per search).
- outputs: ``new_k/v`` into preallocated device buffers (L,R,H,1,hd), then written into the
  cache on the device (``DeviceKVCache.write``); ``logits`` into a preallocated host buffer
  (R,1,V): the only bytes that come back, since the search reads them.
A prompt (``prefill``, R x P tokens) allocates its P-token buffers once per prompt.
On the CPU device the same code runs with host OrtValues: the tests' proof of identical ids.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from edgevlm.runtime.backends.ort_device_cache import DeviceKVCache, bound_run, host


class DecodeState:
    """Everything one row count needs, allocated once and reused across searches: the
    device cache, the one-token step's host feeds and outputs, the decoder's IO binding."""

    def __init__(self, session: ort.InferenceSession, cache: DeviceKVCache, vocab: int, logits_dtype: str,
                 new_dtype: str):
        self.session, self.cache = session, cache
        layers, rows, heads, _, head_dim = cache.shape
        self.io = session.io_binding()
        self.tokens = np.zeros((rows, 1), np.int64)
        self.position = np.zeros((), np.int64)
        self.prefix_len = np.zeros((), np.int64)
        self.tokens_value, self.position_value, self.prefix_len_value = (
            host(self.tokens), host(self.position), host(self.prefix_len))
        self.logits = np.zeros((rows, 1, vocab), logits_dtype)
        self.logits_value = host(self.logits)  # the decoder writes the host buffer directly
        new_shape = (layers, rows, heads, 1, head_dim)
        self.new_k, self.new_v = cache.device.empty(new_shape, new_dtype), cache.device.empty(new_shape, new_dtype)
        self.new_dtype = new_dtype


class DeviceCacheStepper:
    """Stepper over the decoder graph, rows = images x beams (image-major), state on a device."""

    def __init__(self, state: DecodeState, cross_k: np.ndarray, cross_v: np.ndarray, takes_prefix_len: bool):
        self.state, self.cache = state, state.cache
        self.takes_prefix_len = takes_prefix_len
        self.cross_k, self.cross_v = state.cache.device.upload(cross_k), state.cache.device.upload(cross_v)

    def _run(self, tokens: ort.OrtValue, position: int, prefix_len: int, logits: ort.OrtValue,
             new_k: ort.OrtValue, new_v: ort.OrtValue) -> None:
        """One decoder run at ``position``: logits into ``logits``, the new K/V into the cache."""
        s = self.state
        s.position[()] = position
        inputs = {"input_ids": tokens, "position": s.position_value, "cache_k": self.cache.k,
                  "cache_v": self.cache.v, "cross_k": self.cross_k, "cross_v": self.cross_v}
        if self.takes_prefix_len:
            s.prefix_len[()] = prefix_len
            inputs["prefix_len"] = s.prefix_len_value
        bound_run(s.session, s.io, inputs, {"logits": logits, "new_k": new_k, "new_v": new_v})
        self.cache.write(position, new_k, new_v)

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray:
        """tokens (R,) int64 at ``position`` -> next-token logits (R, V), a fresh array."""
        s = self.state
        if tokens.shape != (self.cache.rows,):  # numpy would broadcast a wrong size silently
            raise ValueError(f"step takes tokens ({self.cache.rows},), not shape {tokens.shape}")
        s.tokens[:, 0] = tokens
        self._run(s.tokens_value, position, 0, s.logits_value, s.new_k, s.new_v)
        return s.logits[:, 0].copy()  # the buffer is overwritten next step; callers may keep this

    def prefill(self, prompts: np.ndarray) -> np.ndarray:
        """prompts (R,P) at positions 0..P-1 in one run -> logits after the last (R, V); as
        ``CacheStepper.prefill`` (a prefix-LM prefix where the graph takes ``prefix_len``)."""
        s = self.state
        prompts = np.ascontiguousarray(prompts, np.int64)
        rows, length = prompts.shape
        if rows != self.cache.rows:
            raise ValueError(f"prefill takes prompts ({self.cache.rows}, P), not shape {prompts.shape}")
        layers, _, heads, _, head_dim = self.cache.shape
        logits = np.empty((rows, length, s.logits.shape[2]), s.logits.dtype)
        new_shape = (layers, rows, heads, length, head_dim)
        device = self.cache.device
        self._run(host(prompts), 0, length, host(logits), device.empty(new_shape, s.new_dtype),
                  device.empty(new_shape, s.new_dtype))
        return logits[:, -1]

    def reorder(self, rows: np.ndarray) -> None:
        self.cache.reorder(rows)
