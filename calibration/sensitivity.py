"""Sensitivity analysis for --auto-exclude: how much does quantizing each node alone hurt?

Each quantizable node is quantized on its own (ranges come from the cache, so this costs
no new calibration) and the graph's main output is compared with FP32 on a few
calibration feeds. Nodes are then returned to float, most damaging first.
"""

from __future__ import annotations

import logging
import os
import tempfile
from itertools import islice

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgevlm.runtime.backends.onnxruntime_backend import session_options
from edgevlm.runtime.engine import CaptionEngine

from .feeds import graph_feeds
from .quantize import _ranges_cache, quantizable_nodes, static_quantize
from .sources import CalibrationSet

log = logging.getLogger(__name__)

MAIN_OUTPUT = {"vision": "visual_tokens", "question": "question_states", "cross_kv": "cross_k", "decoder": "logits",
               "decoder_step": "logits"}


def _damage(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """Mean relative error of the main output: ||a - b|| / ||a||."""
    return float(np.mean([np.linalg.norm(a - b) / (np.linalg.norm(a) + 1e-12) for a, b in zip(reference, candidate)]))


def node_sensitivity(fp32: CaptionEngine, graph: str, calib: CalibrationSet, method: str, cache_dir: str,
                     samples: int = 16) -> list[tuple[str, float]]:
    """[(node name, damage)] for every quantizable node of ``graph``, most damaging first."""
    source = fp32.manifest.graph_path(graph)
    cache = _ranges_cache(cache_dir, source, calib, method)
    feeds = list(islice(graph_feeds(fp32, graph, calib), samples))
    output = MAIN_OUTPUT[graph]
    reference = [fp32.backend.run(graph, f)[output] for f in feeds]
    results = []
    with tempfile.TemporaryDirectory() as work:
        prepared = os.path.join(work, "prepared.onnx")
        quant_pre_process(source, prepared, skip_optimization=True)  # as quantize_graph does
        for node in quantizable_nodes(source):
            path = os.path.join(work, "one.onnx")
            static_quantize(prepared, path, None, "qdq", method, cache, nodes_to_quantize=[node])
            session = ort.InferenceSession(path, session_options(2), providers=["CPUExecutionProvider"])
            candidate = [session.run([output], f)[0] for f in feeds]
            results.append((node, _damage(reference, candidate)))
    return sorted(results, key=lambda item: -item[1])
