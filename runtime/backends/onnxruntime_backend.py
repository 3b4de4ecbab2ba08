"""onnxruntime backend: one InferenceSession per graph, feeds checked against the manifest."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

from edgevlm.errors import EdgeVLMError

_ORT_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def session_options(threads: int | None, spinning: bool = False) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 4)
    options.inter_op_num_threads = 1
    # Spinning threads burn the cores between the many tiny per-token runs, and the camera,
    # speech and Python threads need those cores: off unless a benchmark shows otherwise.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return options


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, manifest, provider: str = "cpu", threads: int | None = None, spinning: bool = False):
        wanted = _ORT_PROVIDERS[provider]
        available = ort.get_available_providers()
        if wanted[0] not in available:
            raise EdgeVLMError(
                f"provider {provider!r} needs onnxruntime's {wanted[0]}, which this install lacks "
                f"(available: {', '.join(available)}); install onnxruntime-gpu or use --provider cpu"
            )
        self.manifest = manifest
        self.sessions: dict[str, ort.InferenceSession] = {}
        self.specs: dict[str, dict] = {}
        self.output_names: dict[str, list[str]] = {}
        options = session_options(threads, spinning)
        for name in ("vision", "cross_kv", "decoder"):
            path = manifest.path(manifest.graph(name)["file"])
            try:
                self.sessions[name] = ort.InferenceSession(path, options, providers=wanted)
            except Exception as exc:  # onnxruntime raises its own exception types for bad files
                raise EdgeVLMError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}") from exc
            self.specs[name] = {spec["name"]: spec for spec in manifest.graph(name)["inputs"]}
            self.output_names[name] = [spec["name"] for spec in manifest.graph(name)["outputs"]]

    def check_feeds(self, graph: str, feeds: dict[str, np.ndarray]) -> None:
        """Same messages for every backend: names, dtypes and static dims against the manifest."""
        specs = self.specs[graph]
        if set(feeds) != set(specs):
            raise EdgeVLMError(f"{graph}: expected inputs {sorted(specs)}, got {sorted(feeds)}")
        for name, spec in specs.items():
            array = feeds[name]
            if array.dtype != np.dtype(spec["dtype"]) or array.ndim != len(spec["shape"]):
                raise EdgeVLMError(f"{graph}.{name}: expected {spec['dtype']} {spec['shape']}, got {array.dtype} {array.shape}")
            for dim, want in zip(array.shape, spec["shape"]):
                if isinstance(want, int) and dim != want:
                    raise EdgeVLMError(f"{graph}.{name}: expected shape {spec['shape']}, got {array.shape}")

    def run(self, graph: str, feeds: dict[str, np.ndarray], check: bool = False) -> dict[str, np.ndarray]:
        if check:
            self.check_feeds(graph, feeds)
        outputs = self.sessions[graph].run(self.output_names[graph], feeds)
        return dict(zip(self.output_names[graph], outputs))
