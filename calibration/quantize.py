"""Static INT8 (QDQ) quantization of an engine's graphs with onnxruntime's quantization tools.

Symmetric int8 activations and weights, per-channel weights, ranges from real calibration
data only (cached by a hash of the graph, the data and the method). Only Conv, MatMul and
Gemm are quantized: LayerNorm, Softmax, residual Adds and the rest stay in float, the
known ways a blind quantization breaks transformers.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import shutil
import tempfile

import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import atomic_dir, write_json
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.manifest import MANIFEST_FILE, sha256_file

from .feeds import GRAPH_FEEDS, FeedReader
from .sources import CalibrationSet

log = logging.getLogger(__name__)

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]
GRAPHS = ("vision", "cross_kv", "decoder")
FEEDS_VERSION = "1"  # bump when the feeds change meaning: invalidates cached ranges


def quantizable_nodes(model_path: str) -> list[str]:
    return [n.name for n in onnx.load(model_path, load_external_data=False).graph.node if n.op_type in QUANTIZED_OPS]


def match_nodes(model_path: str, patterns: list[str]) -> list[str]:
    """Node names matching any glob pattern, e.g. '/decoder/layers.3/*' or '*/mlp/*'."""
    names = [n.name for n in onnx.load(model_path, load_external_data=False).graph.node]
    return [name for name in names if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


def _ranges_cache(cache_dir: str, graph_path: str, calib: CalibrationSet, method: str) -> str:
    key = hashlib.sha256(f"{sha256_file(graph_path)}:{calib.digest}:{method}:{FEEDS_VERSION}".encode()).hexdigest()[:20]
    return os.path.join(cache_dir, f"ranges-{os.path.basename(graph_path)}-{key}.json")


def quantize_graph(fp32: CaptionEngine, graph: str, calib: CalibrationSet, out_path: str, method: str,
                   exclude: list[str], cache_dir: str, work_dir: str) -> dict:
    """Quantize one graph; returns what was done (for the manifest)."""
    source = fp32.manifest.path(graph)
    prepared = os.path.join(work_dir, f"{graph}.prepared.onnx")
    if not os.path.isfile(prepared):
        # Shape inference only: graph optimisation would rename nodes that --exclude names.
        quant_pre_process(source, prepared, skip_optimization=True)
    cache = _ranges_cache(cache_dir, source, calib, method)
    cached = os.path.isfile(cache)
    reader = None if cached else FeedReader(GRAPH_FEEDS[graph](fp32, calib))
    quantize_static(
        prepared, out_path, reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=QUANTIZED_OPS,
        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude, calibrate_method=METHODS[method], calibration_cache_path=cache,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                       "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}},
    )
    return {"excluded": sorted(exclude), "ranges_cache": os.path.basename(cache), "ranges_reused": cached}


def quantize_engine(fp32_dir: str, calib: CalibrationSet, out_dir: str, method: str = "minmax",
                    exclude: dict[str, list[str]] | None = None, cache_dir: str | None = None,
                    extra_manifest: dict | None = None) -> dict:
    """FP32 engine -> INT8 engine (atomically); ``exclude``: graph -> node names kept float."""
    if method not in METHODS:
        raise EdgeVLMError(f"unknown calibration method {method!r}; choose {', '.join(METHODS)}")
    fp32 = CaptionEngine(fp32_dir, threads=2)
    if fp32.manifest.data.get("precision") != "fp32":
        raise EdgeVLMError(f"{fp32_dir} is a {fp32.manifest.data.get('precision')} engine; quantize the FP32 one")
    cache_dir = cache_dir or os.path.expanduser(os.path.join("~", ".cache", "edgevlm", "calibration"))
    os.makedirs(cache_dir, exist_ok=True)
    exclude = exclude or {}
    details = {}
    manifest = dict(fp32.manifest.data)
    with tempfile.TemporaryDirectory() as work, atomic_dir(out_dir) as tmp:
        for graph in GRAPHS:
            file_name = fp32.manifest.data["files"][graph]["path"]
            details[graph] = quantize_graph(fp32, graph, calib, os.path.join(tmp, file_name), method,
                                            exclude.get(graph, []), cache_dir, work)
        shutil.copyfile(fp32.manifest.path("tokenizer"), os.path.join(tmp, "tokenizer.json"))
        files = {}
        for key, entry in fp32.manifest.data["files"].items():
            path = os.path.join(tmp, entry["path"])
            files[key] = {"path": entry["path"], "sha256": sha256_file(path), "bytes": os.path.getsize(path)}
        manifest.update(
            files=files,
            precision="int8",
            quantization={
                "format": "QDQ", "static": True, "activations": "int8 symmetric", "weights": "int8 symmetric per-channel",
                "op_types": QUANTIZED_OPS, "method": method, "graphs": details,
                "calibration": {"images": len(calib.images), "sha256": calib.digest},
                "fp32_engine": {key: entry["sha256"] for key, entry in fp32.manifest.data["files"].items()},
                **(extra_manifest or {}),
            },
        )
        write_json(os.path.join(tmp, MANIFEST_FILE), manifest)
    return manifest
