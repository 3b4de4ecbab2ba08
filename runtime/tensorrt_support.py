"""TensorRT and CUDA from Python, imported only when called: a machine without them imports
everything else, and their absence is one line naming the fix.

CUDA comes from cuda-python, as NVIDIA's samples use it (TensorRT
``samples/python/common_runtime.py``: ``cudaMalloc``, ``cudaMemcpyAsync``,
``cudaStreamCreate``, calls returning ``(error, *results)``). Its module moved: cuda-python
12.6+ is ``cuda.bindings.runtime``, older releases (JetPack 6's) ``cuda.cudart``; both are
tried. No PyTorch, no pycuda.
"""

from __future__ import annotations

import importlib

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.doctor import is_jetson


def tensorrt_fix() -> str:
    return ("install JetPack's TensorRT for Python: sudo apt-get install python3-libnvinfer" if is_jetson() else
            "pip install tensorrt-cu12 (CUDA 12; see NVIDIA's TensorRT installation guide)")


def import_tensorrt():
    """The ``tensorrt`` module, or EdgeVLMError naming the fix."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise EdgeVLMError(f"the native TensorRT backend needs the tensorrt Python module, which is not installed "
                           f"({exc}); {tensorrt_fix()}") from None
    except Exception as exc:  # a broken install (missing libnvinfer, CUDA mismatch) raises anything
        raise EdgeVLMError(f"import tensorrt failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                           f"{tensorrt_fix()}") from None


def import_cudart():
    """cuda-python's runtime API: ``cuda.bindings.runtime`` (12.6+) or ``cuda.cudart`` (older)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise EdgeVLMError("the native TensorRT backend needs cuda-python (cuda.bindings.runtime or cuda.cudart), which "
                       "is not installed; pip install cuda-python (the release matching your CUDA major version)")


def trt_major(trt) -> int:
    return int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)


def has_precision_flags(trt) -> bool:
    """TensorRT 10 builds weakly typed networks with BuilderFlag.FP16/INT8 choosing kernels'
    precision; TensorRT 11 removed those flags (and implicit INT8 calibration): networks are
    strongly typed, precision is what the ONNX graph says (FP16 tensors, symmetric Q/DQ for
    INT8). Asked by feature, not version, so a 10.x without them is handled too."""
    return hasattr(trt.BuilderFlag, "FP16")


class Cuda:
    """The few CUDA runtime calls the backend makes, each checked: a failed call is an
    EdgeVLMError naming it (``cudaGetErrorName``), as the samples' ``cuda_call`` does."""

    def __init__(self, cudart=None):
        self.rt = cudart or import_cudart()
        kinds = self.rt.cudaMemcpyKind
        self.H2D, self.D2H, self.D2D = (kinds.cudaMemcpyHostToDevice, kinds.cudaMemcpyDeviceToHost,
                                        kinds.cudaMemcpyDeviceToDevice)

    def call(self, what: str, result):
        error, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(getattr(error, "value", error)):
            name = self.rt.cudaGetErrorName(error)[1]
            raise EdgeVLMError(f"CUDA {what} failed: {name.decode() if isinstance(name, bytes) else name}; "
                               "check the GPU with `edgevlm doctor --provider tensorrt`")
        return rest[0] if len(rest) == 1 else rest

    def malloc(self, nbytes: int) -> int:
        return int(self.call("cudaMalloc", self.rt.cudaMalloc(max(1, nbytes))))

    def free(self, ptr: int) -> None:
        self.call("cudaFree", self.rt.cudaFree(ptr))

    def stream(self):
        return self.call("cudaStreamCreate", self.rt.cudaStreamCreate())

    def destroy_stream(self, stream) -> None:
        self.call("cudaStreamDestroy", self.rt.cudaStreamDestroy(stream))

    def sync(self, stream) -> None:
        self.call("cudaStreamSynchronize", self.rt.cudaStreamSynchronize(stream))

    def memset(self, ptr: int, nbytes: int, stream) -> None:
        """Zero ``nbytes`` at ``ptr`` on ``stream``. cuda-python: ``cudaMemsetAsync(devPtr, int value,
        size_t count, stream)`` -> ``(err,)`` (cuda-bindings 12.9 runtime.pyx; the C API's order)."""
        if nbytes:
            self.call("cudaMemsetAsync", self.rt.cudaMemsetAsync(ptr, 0, nbytes, stream))

    def copy(self, dst: int, src: int, nbytes: int, kind, stream) -> None:
        if nbytes:
            self.call("cudaMemcpyAsync", self.rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream))

    def copy_2d(self, dst: int, src: int, plan, stream) -> None:
        """A ``cache_copies.Copy2D`` on the device (offsets added to the base pointers)."""
        self.call("cudaMemcpy2DAsync", self.rt.cudaMemcpy2DAsync(
            dst + plan.dst_offset, plan.dst_pitch, src + plan.src_offset, plan.src_pitch, plan.width, plan.height,
            self.D2D, stream))


def native_facts(trt, cuda: Cuda, device: int = 0):
    """This device as a native plan records it: TensorRT's version from the module itself
    (JetPack's apt package has no pip metadata for ``device_facts`` to read), the GPU's name
    and compute capability from CUDA (older Jetsons have no nvidia-smi)."""
    import dataclasses

    from edgevlm.runtime.engine_cache import device_facts

    props = cuda.call("cudaGetDeviceProperties", cuda.rt.cudaGetDeviceProperties(device))
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    base = device_facts(gpu_name="-", compute_capability="-")  # versions only: skip nvidia-smi
    return dataclasses.replace(base, trt_version=str(trt.__version__), gpu_name=name.strip("\x00 "),
                               compute_capability=f"{props.major}.{props.minor}")
