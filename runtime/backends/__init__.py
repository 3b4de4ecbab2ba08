"""Inference backends, registered by name and imported only when asked for, so a machine
without a backend's libraries (tensorrt, onnxruntime-gpu) imports the rest.

Add one: subclass ``base.Backend`` (``_open``, ``_close``, ``_run``; override
``decoder_stepper`` to keep the KV cache on a device), then ``register_backend(name, cls)``
or add its import path to ``BACKENDS``.
"""

from __future__ import annotations

import importlib

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.backends.base import PROVIDERS, Backend, BackendOptions

# name -> "module:Class", imported on first use
BACKENDS: dict[str, str | type[Backend]] = {
    "onnxruntime": "edgevlm.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend",
    # native plans from `edgevlm build`; tensorrt and cuda-python are imported when it opens
    "tensorrt": "edgevlm.runtime.backends.tensorrt_backend:TensorRTBackend",
}
DEFAULT_BACKEND = "onnxruntime"

__all__ = ["BACKENDS", "PROVIDERS", "Backend", "BackendOptions", "configured_backend", "create_backend", "register_backend"]


def register_backend(name: str, backend: str | type[Backend]) -> None:
    BACKENDS[name] = backend


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise EdgeVLMError(f"unknown backend {name!r}; choose one of {', '.join(sorted(BACKENDS))}")
    entry = BACKENDS[name]
    if isinstance(entry, str):
        module, _, cls = entry.partition(":")
        entry = getattr(importlib.import_module(module), cls)
    return entry


def configured_backend(name: str, rebuild: bool = False, on_prepare=None) -> str:
    """The registered name to open a ``--backend`` choice with: "tensorrt" is the native
    backend configured here (``rebuild`` missing or stale plans; ``on_prepare(message)`` told
    before a build), registered in this process (a Ray replica calls this in its own);
    any other name as it is."""
    if name != "tensorrt":
        return name
    from edgevlm.runtime.backends.tensorrt_backend import use_tensorrt

    return use_tensorrt(rebuild=rebuild, on_prepare=on_prepare)


def create_backend(manifest, backend: str = DEFAULT_BACKEND, options: BackendOptions | None = None) -> Backend:
    """-> an opened backend that runs the manifest's graphs."""
    options = options or BackendOptions()
    if options.provider not in PROVIDERS:
        raise EdgeVLMError(f"unknown provider {options.provider!r}; choose one of {', '.join(PROVIDERS)}")
    return backend_class(backend)(manifest, options).open()
