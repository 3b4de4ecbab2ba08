"""onnxruntime backend: one InferenceSession per graph, on the execution provider the
options name (``cpu``, ``cuda``, ``tensorrt``)."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.backends.base import Backend
from edgevlm.runtime.engine_cache import device_facts, tensorrt_provider_options

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
              "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}
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


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def _open(self) -> None:
        provider = self.options.provider
        wanted = _ORT_PROVIDERS[provider]
        available = ort.get_available_providers()
        if wanted[0] not in available:
            raise EdgeVLMError(
                f"provider {provider!r} needs onnxruntime's {wanted[0]}, which this install lacks "
                f"(available: {', '.join(available)}); install onnxruntime-gpu or use --provider cpu"
            )
        options = session_options(self.options.threads, self.options.spinning)
        self.sessions: dict[str, ort.InferenceSession] = {}
        self.output_names = {graph: list(spec.output_names) for graph, spec in self.manifest.graphs.items()}
        facts = device_facts() if provider == "tensorrt" else None
        for graph in self.manifest.graphs:
            path = self.manifest.graph_path(graph)
            providers = wanted
            if facts is not None:  # its own engine cache, keyed so it can never be stale (engine_cache.py)
                providers = [(wanted[0], tensorrt_provider_options(self.manifest, graph, facts)), *wanted[1:]]
            try:
                self.sessions[graph] = ort.InferenceSession(path, options, providers=providers)
            except Exception as exc:  # onnxruntime raises its own exception types for bad files
                raise EdgeVLMError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}") from exc
            self._check_graph_matches_manifest(graph, self.sessions[graph])

    def _check_graph_matches_manifest(self, graph: str, session: ort.InferenceSession) -> None:
        """The ONNX file's own inputs and outputs must be the manifest's (names and element
        types): the manifest is what feeds are checked against, so it must not lie."""
        spec = self.manifest.graph(graph)
        for kind, declared, actual in (("inputs", spec.inputs, session.get_inputs()),
                                       ("outputs", spec.outputs, session.get_outputs())):
            have = {arg.name: _ORT_TYPES.get(arg.type, arg.type) for arg in actual}
            want = {s.name: s.dtype for s in declared}
            if have != want:
                raise EdgeVLMError(f"{self.manifest.graph_path(graph)}: its {kind} {have} differ from the manifest's "
                                   f"graphs.{graph}.{kind} {want}; re-export the engine")

    def _close(self) -> None:
        self.sessions.clear()

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.sessions[graph].run(self.output_names[graph], feeds)
        return dict(zip(self.output_names[graph], outputs))
