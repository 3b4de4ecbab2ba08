"""Native TensorRT backend: the plans ``edgevlm build`` wrote, run with cuda-python, no PyTorch.

The run follows Polygraphy's TrtRunner (tools/Polygraphy/polygraphy/backend/trt/runner.py):
``set_input_shape`` per input, ``set_tensor_address`` per tensor, ``execute_async_v3`` on one
stream; shape-inference inputs (``engine.is_shape_inference_io``) are given host memory as
it does. Unlike it, device buffers are allocated once at open, at each tensor's largest shape
under the plan's profile (recorded with the plan: ``PlanEntry.axes``), and bound once; a run
only copies feeds in and outputs out (samples/python/common_runtime.py's
``_do_inference_base``). The decoder's cache lives on the device (trt_stepper.py).

The guard: each plan's record is checked (``engine_cache.check_plan``: source sha256,
TensorRT version, GPU, the plan's own size and sha256) before its bytes reach
``deserialize_cuda_engine``. A stale or missing plan is rebuilt when the backend is
configured with ``rebuild`` (``on_prepare`` hears "preparing the engine, about a minute"
first), else refused in one line. tensorrt and cuda-python are imported in ``_open`` only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.backends.base import Backend
from edgevlm.runtime.engine_cache import StalePlan, plan_problems
from edgevlm.runtime.engine_profiles import AxisRange, check_within, max_shape
from edgevlm.runtime.manifest import load_manifest
from edgevlm.runtime.steppers import device_graphs

NO_PLANS = "this engine has no TensorRT plan for {graphs}; run `edgevlm build {root}` first (or pass --rebuild)"


class TensorRTBackend(Backend):
    name = "tensorrt"
    rebuild: bool = False  # build missing or stale plans at open instead of refusing
    on_prepare: Callable[[str], None] | None = None  # told before a build (narration speaks it)

    @classmethod
    def configure(cls, rebuild: bool = False, on_prepare: Callable[[str], None] | None = None) -> type["TensorRTBackend"]:
        """A subclass with these settings (``BackendOptions`` is the ORT backend's; this keeps
        ours off it). ``use_tensorrt`` registers one under the name "tensorrt"."""
        return type(cls.__name__, (cls,), {"rebuild": rebuild, "on_prepare": staticmethod(on_prepare) if on_prepare
                                           else None})

    # --- the guard, before any deserialization ------------------------------------------
    def ensure_plans(self, facts, trt=None, cuda=None) -> None:
        """Every graph's plan checked against ``facts``; built when allowed, else StalePlan /
        one line naming `edgevlm build`. Leaves ``self.manifest`` with the records to load."""
        problems = plan_problems(self.manifest, facts)
        if not problems:
            return
        if not self.rebuild:
            missing = [g for g, p in problems.items() if p is None]
            if missing:
                raise EdgeVLMError(NO_PLANS.format(graphs=", ".join(missing), root=self.manifest.root))
            graph, changes = next(iter(problems.items()))
            raise StalePlan(self.manifest.plan_path(graph), changes)
        from edgevlm.runtime.tensorrt_build import build_plans

        build_plans(self.manifest.root, on_prepare=self.on_prepare, trt=trt, cuda=cuda)
        self.manifest = load_manifest(self.manifest.root, verify=False)  # files were verified when the engine loaded
        problems = plan_problems(self.manifest, facts)
        if problems:  # a plan just built must pass; anything else is a bug worth its own line
            raise EdgeVLMError(f"plans rebuilt in {self.manifest.root} still do not match this device: {problems}")

    # --- lifecycle ----------------------------------------------------------------------
    def _open(self) -> None:
        from edgevlm.runtime.tensorrt_support import Cuda, import_tensorrt, native_facts

        trt = import_tensorrt()
        self.cuda = cuda = Cuda()
        self.ensure_plans(native_facts(trt, cuda), trt, cuda)
        self._trt = trt
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._stream = cuda.stream()
        self.stream_ptr = int(self._stream)
        self.engines, self.contexts, self.buffers, self.ranges = {}, {}, {}, {}
        self._sizes: dict[str, dict[str, int]] = {}  # graph -> tensor -> bytes of its device buffer
        self._host_inputs: dict[str, dict[str, np.ndarray]] = {}
        self._allocated: list[int] = []
        try:
            for graph in device_graphs(self.manifest):
                self._load(graph)
        except BaseException:
            self._close()
            raise

    def _load(self, graph: str) -> None:
        entry = self.manifest.plans[graph]
        with open(self.manifest.plan_path(graph), "rb") as f:  # checked by ensure_plans just before
            engine = self._runtime.deserialize_cuda_engine(f.read())
        if engine is None:
            raise EdgeVLMError(f"TensorRT could not deserialize {self.manifest.plan_path(graph)}; rebuild it with "
                               f"`edgevlm build {self.manifest.root} --rebuild`")
        context = engine.create_execution_context()
        self.engines[graph], self.contexts[graph] = engine, context
        self.ranges[graph] = ranges = {axis: AxisRange(*r) for axis, r in entry.axes.items()}
        spec = self.manifest.graph(graph)
        self.buffers[graph], self._sizes[graph], self._host_inputs[graph] = {}, {}, {}
        for tensor in spec.inputs:
            if getattr(engine, "is_shape_inference_io", lambda _n: False)(tensor.name):
                host = np.zeros(max_shape(tensor, ranges), tensor.dtype)  # shape tensors live on the host (Polygraphy runner.py)
                self._host_inputs[graph][tensor.name] = host
                context.set_tensor_address(tensor.name, host.ctypes.data)
        # Device buffers are made on first use at the size a run needs and grown when a larger run
        # comes (_ensure), not at the profile's largest shape: the decoder's logits at 64 rows x the
        # whole cache x a 50k vocabulary would be gigabytes a Jetson does not have, for a shape
        # (a 64-row prefill) that a caption never runs.

    def _ensure(self, graph: str, name: str, nbytes: int) -> int:
        """``graph``'s own device buffer for ``name``, at least ``nbytes`` (grown, never shrunk),
        bound to its context. Growing waits for the stream: queued work may still read the old one."""
        if self._sizes[graph].get(name, -1) < nbytes:
            old = self.buffers[graph].pop(name, None)
            if old is not None:
                self.cuda.sync(self._stream)
                self.cuda.free(old)
                self._allocated.remove(old)
            ptr = self.cuda.malloc(max(nbytes, 1))
            self._allocated.append(ptr)
            self.buffers[graph][name], self._sizes[graph][name] = ptr, nbytes
            self.contexts[graph].set_tensor_address(name, ptr)
        return self.buffers[graph][name]

    def _close(self) -> None:
        if getattr(self, "_stream", None) is not None:
            # Review fix: a reorder's copies are queued without a sync (trt_stepper.py); let queued work
            # finish before its buffers are freed. Best effort: a failed stream must not hide the
            # error that made _open close, nor leak the buffers below.
            try:
                self.cuda.sync(self._stream)
            except EdgeVLMError:
                pass
        self.contexts, self.engines = {}, {}  # contexts before engines, as TensorRT requires
        for ptr in getattr(self, "_allocated", []):
            self.cuda.free(ptr)
        self._allocated = []
        self._free_device_cache()
        if getattr(self, "_stream", None) is not None:
            self.cuda.destroy_stream(self._stream)
            self._stream = None

    # --- running ------------------------------------------------------------------------
    def bind(self, graph: str, overrides: dict[str, int] | None = None) -> None:
        """(Re)point ``graph``'s tensors: its own buffers, with ``overrides`` {name: device ptr}."""
        context = self.contexts[graph]
        for name, ptr in {**self.buffers[graph], **(overrides or {})}.items():
            context.set_tensor_address(name, ptr)

    def upload(self, graph: str, name: str, array: np.ndarray, ptr: int | None = None) -> None:
        """One input: its shape set, its bytes copied to the device (or the host shape buffer)."""
        array = np.ascontiguousarray(array)
        host = self._host_inputs[graph].get(name)
        if host is not None:
            host.reshape(-1)[: array.size] = array.reshape(-1)
        else:
            self.cuda.copy(ptr or self._ensure(graph, name, array.nbytes), array.ctypes.data, array.nbytes,
                           self.cuda.H2D, self._stream)
        if not self.contexts[graph].set_input_shape(name, array.shape):
            raise EdgeVLMError(f"{graph}.{name}: TensorRT refused shape {array.shape} for this plan; rebuild it with "
                               f"`edgevlm build {self.manifest.root} --rebuild`")

    def execute(self, graph: str) -> None:
        """Run ``graph`` on the stream, once every input's shape is set: each output's buffer is
        sized from the shape TensorRT infers from them."""
        context = self.contexts[graph]
        for tensor in self.manifest.graph(graph).outputs:
            shape = tuple(context.get_tensor_shape(tensor.name))
            self._ensure(graph, tensor.name, int(np.prod(shape, dtype=np.int64)) * np.dtype(tensor.dtype).itemsize)
        if not self.contexts[graph].execute_async_v3(self.stream_ptr):
            raise EdgeVLMError(f"TensorRT failed to run {graph}; re-run with -v for TensorRT's log")

    def download(self, graph: str, name: str, dtype: str) -> np.ndarray:
        """An output, at the shape TensorRT computed from the input shapes, copied to the host
        (complete after ``cuda.sync``)."""
        out = np.empty(tuple(self.contexts[graph].get_tensor_shape(name)), dtype)
        self.cuda.copy(out.ctypes.data, self.buffers[graph][name], out.nbytes, self.cuda.D2H, self._stream)
        return out

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.manifest.graph(graph)
        sizes = {d: feeds[t.name].shape[i] for t in spec.inputs for i, d in enumerate(t.shape) if isinstance(d, str)}
        check_within(graph, self.ranges[graph], sizes)
        self.bind(graph)  # a stepper may have pointed the decoder's cache inputs at its own buffers
        for name, array in feeds.items():
            self.upload(graph, name, array)
        self.execute(graph)
        outputs = {t.name: self.download(graph, t.name, t.dtype) for t in spec.outputs}
        self.cuda.sync(self._stream)
        return outputs

    # --- the device-resident cache --------------------------------------------------------
    def decoder_stepper(self, cross_k, cross_v):
        from edgevlm.runtime.backends.trt_stepper import DeviceCacheStepper

        return DeviceCacheStepper(self, cross_k, cross_v, self.manifest.graph("decoder").takes("prefix_len"))

    def device_cache(self) -> dict[str, int]:
        """cache k/v, their spares and cross k/v on the device, allocated once at the decoder's
        largest row count and reused by every stepper (one search at a time, as the engine is)."""
        if getattr(self, "_device_cache", None) is None:
            spec = {t.name: t for t in self.manifest.graph("decoder").inputs}
            ranges = self.ranges["decoder"]
            sizes = {name: int(np.prod(max_shape(spec[src], ranges), dtype=np.int64)) * np.dtype(spec[src].dtype).itemsize
                     for name, src in (("k", "cache_k"), ("v", "cache_v"), ("spare_k", "cache_k"),
                                       ("spare_v", "cache_v"), ("cross_k", "cross_k"), ("cross_v", "cross_v"))}
            self._device_cache = {name: self.cuda.malloc(size) for name, size in sizes.items()}
            # Review fix: cudaMalloc does not clear memory, and the decoder multiplies the probabilities
            # of unfilled slots (exactly 0) by their V (decoder.py: probs[..., :capacity] @ cache_v):
            # 0 x NaN is NaN, so a garbage NaN/Inf bit pattern there poisons every row. Zero the cache
            # and its spares once, as DeviceKVCache does on onnxruntime (Device.zeros); later searches
            # only leave finite K/V behind. Stream-ordered before the stepper's first copy and run.
            for name in ("k", "v", "spare_k", "spare_v"):
                self.cuda.memset(self._device_cache[name], sizes[name], self._stream)
        return self._device_cache

    def _free_device_cache(self) -> None:
        for ptr in (getattr(self, "_device_cache", None) or {}).values():
            self.cuda.free(ptr)
        self._device_cache = None


def use_tensorrt(rebuild: bool = False, on_prepare: Callable[[str], None] | None = None) -> str:
    """Register the native backend under "tensorrt" with these settings; -> the name to pass
    as ``CaptionEngine(..., backend=...)``. Narration: ``use_tensorrt(rebuild=True,
    on_prepare=say)`` speaks "preparing the engine, about a minute" before a build."""
    from edgevlm.runtime.backends import register_backend

    register_backend("tensorrt", TensorRTBackend.configure(rebuild=rebuild, on_prepare=on_prepare))
    return "tensorrt"
