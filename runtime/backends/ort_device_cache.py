"""The decoder's self-attention cache as device-resident OrtValues, written without a host trip.

``DeviceKVCache`` is ``KVCache`` (runtime/kv_cache.py) on an onnxruntime device: a ping-pong
pair per K and V, shape (layers, rows, heads, capacity, head_dim), allocated once per row
count and reused across searches. ``write`` and ``reorder`` run the tiny graphs of
``ort_cache_graphs.py`` with the current buffer bound as input and the spare as output, then
swap: onnxruntime cannot write a slice of an OrtValue in place from Python, nor alias a graph
input to its output. On the CPU device the same code runs on OrtValues in host memory, which
is how the tests prove it gives the numpy path's ids.

onnxruntime APIs followed (python/onnxruntime_inference_collection.py, docs
performance/tune-performance/iobinding): ``OrtValue.ortvalue_from_numpy(array, device_type,
device_id)``, ``InferenceSession.io_binding()``, ``IOBinding.bind_ortvalue_input/output``,
``synchronize_inputs/outputs``, ``run_with_iobinding``. Two facts shape the code:
- ``IOBinding::BindInput`` copies a value to the device its consumer needs *at bind time*
  (core/session/IOBinding.cc, ``CopyOneInputAcrossDevices``), so a host value updated in place
  is not seen on CUDA unless rebound: every run binds every input again (microseconds).
- ``Run`` synchronizes the execution providers' streams before returning unless the run
  option ``disable_synchronize_execution_providers`` is set (onnxruntime_run_options_config_keys.h),
  so a buffer written by one session is complete when the next session reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from edgevlm.runtime.backends.ort_cache_graphs import cache_gather_model, cache_write_model


@dataclass(frozen=True)
class Device:
    """Where OrtValues live: onnxruntime's device name ('cpu', 'cuda') and ordinal."""

    type: str = "cpu"
    id: int = 0

    def upload(self, array: np.ndarray) -> ort.OrtValue:
        """A copy of ``array`` on the device (on 'cpu' the OrtValue wraps the array itself)."""
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.type, self.id)

    def zeros(self, shape: tuple[int, ...], dtype) -> ort.OrtValue:
        """A zero-filled buffer: the decoder reads only slots < position, but masked garbage
        could still be NaN, and 0 x NaN poisons attention."""
        return self.upload(np.zeros(shape, dtype))

    def empty(self, shape: tuple[int, ...], dtype) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.dtype(dtype).type, self.type, self.id)


def host(array: np.ndarray) -> ort.OrtValue:
    """An OrtValue over a host numpy array, sharing its memory (update the array, rebind)."""
    return ort.OrtValue.ortvalue_from_numpy(array)


def bound_run(session: ort.InferenceSession, io: ort.IOBinding, inputs: dict, outputs: dict) -> None:
    """Bind every input and output (OrtValues) to ``io`` again and run ``session`` on it."""
    for name, value in inputs.items():
        io.bind_ortvalue_input(name, value)
    for name, value in outputs.items():
        io.bind_ortvalue_output(name, value)
    io.synchronize_inputs()
    session.run_with_iobinding(io)
    io.synchronize_outputs()


class CacheGraphs:
    """The cache-write and cache-gather sessions, one pair per backend (every row count's
    cache uses them). ``providers`` is onnxruntime's list for the cache's device."""

    def __init__(self, dtype: str, providers: list, options: ort.SessionOptions):
        self.write = ort.InferenceSession(cache_write_model(dtype), options, providers=providers)
        self.gather = ort.InferenceSession(cache_gather_model(dtype), options, providers=providers)


class DeviceKVCache:
    """Self-attention K/V for ``rows`` decoder rows on ``device``; ``k``/``v`` are the current
    buffers (layers, rows, heads, capacity, head_dim)."""

    def __init__(self, graphs: CacheGraphs, device: Device, shape: tuple[int, ...], dtype: str):
        self.graphs, self.device, self.shape, self.dtype, self.capacity = graphs, device, shape, dtype, shape[3]
        self._k = [device.zeros(shape, dtype), device.zeros(shape, dtype)]
        self._v = [device.zeros(shape, dtype), device.zeros(shape, dtype)]
        self._current = 0
        self._write_io, self._gather_io = graphs.write.io_binding(), graphs.gather.io_binding()
        self._position = np.zeros((), np.int64)  # host feeds, reused: updated, then rebound
        self._position_value = host(self._position)
        self._rows = np.zeros(shape[1], np.int64)
        self._rows_value = host(self._rows)

    @property
    def rows(self) -> int:
        return self.shape[1]

    @property
    def k(self) -> ort.OrtValue:
        return self._k[self._current]

    @property
    def v(self) -> ort.OrtValue:
        return self._v[self._current]

    def buffer_pointers(self) -> set[int]:
        """The four buffers' device addresses: the cache never lives anywhere else."""
        return {value.data_ptr() for value in (*self._k, *self._v)}

    def write(self, position: int, new_k: ort.OrtValue, new_v: ort.OrtValue) -> None:
        """new_k/v (layers, rows, heads, T, head_dim) on the device -> slots position..position+T-1."""
        t = new_k.shape()[3]
        if position + t > self.capacity:  # the graph's Slice would clamp instead of failing
            raise ValueError(f"cache full: position {position} + {t} tokens > capacity {self.capacity}")
        self._position[()] = position
        self._swap(self.graphs.write, self._write_io,
                   {"new_k": new_k, "new_v": new_v, "position": self._position_value})

    def reorder(self, rows: np.ndarray) -> None:
        """Row i becomes old row ``rows[i]`` (beam search)."""
        self._rows[:] = rows
        self._swap(self.graphs.gather, self._gather_io, {"rows": self._rows_value})

    def _swap(self, session: ort.InferenceSession, io: ort.IOBinding, feeds: dict) -> None:
        """Run a cache graph from the current buffers into the spare ones, then swap."""
        spare = 1 - self._current
        bound_run(session, io, {"cache_k": self.k, "cache_v": self.v, **feeds},
                  {"out_k": self._k[spare], "out_v": self._v[spare]})
        self._current = spare
