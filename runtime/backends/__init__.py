"""Inference backends, one module each, chosen by name. Heavy optional modules (tensorrt) are
imported only when their backend is asked for, so a machine without them imports the rest."""

from __future__ import annotations

from edgevlm.errors import EdgeVLMError

PROVIDERS = ("cpu", "cuda", "tensorrt")


def create_backend(manifest, provider: str = "cpu", threads: int | None = None, spinning: bool = False):
    """-> a backend whose ``run(graph, feeds) -> dict`` executes the manifest's graphs."""
    if provider not in PROVIDERS:
        raise EdgeVLMError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    from edgevlm.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(manifest, provider, threads, spinning)
