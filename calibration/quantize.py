"""INT8 quantization of an engine's graphs with onnxruntime's quantization tools.

Two variants, recorded in the manifest:
- ``qdq`` (for TensorRT): static QDQ on every graph, symmetric int8 activations and
  weights, per-channel weights. Only Conv, MatMul and Gemm are quantized: LayerNorm,
  Softmax, residual Adds and the rest stay in float, the known ways a blind quantization
  breaks transformers.
- ``cpu`` (for onnxruntime on CPU, chosen by measurement): the vision graph static QDQ
  with uint8 asymmetric activations, so ReLU6 (Clip) and the residual Adds fold into the
  int8 convolutions (measured here: 2.5 vs 5.3 ms FP32, pooled cosine 0.996, where the
  symmetric variant ran 6.0 ms at cosine 0.908); the cross-K/V and decoder graphs dynamic
  int8 MatMuls (decoder step 0.40 vs 0.63 ms): their activations are single rows, which
  dynamic quantization handles without calibrated ranges. Which activation type, weight bits
  and float blocks it uses depends on the CPU it is made for (``target``, cpu_layouts.py).

Static ranges come from real calibration data only, cached by a hash of the graph, the
data, the method and the variant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import logging
import os
import shutil
import sys
import tempfile

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import atomic_dir, check_writable
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.file_records import sha256_file
from edgevlm.runtime.manifest import FileEntry, GraphSpec, Manifest, Preprocess, TensorSpec, check_engine_out
from edgevlm.runtime.pixel_layout import pixel_dtype_name, pixels_shape
from edgevlm.runtime.token_embeddings import HALF, TOKEN_EMBEDDINGS, write_token_embeddings

from .cpu_layouts import layout_for
from .constant_identities import inline_constant_identities
from .gelu_fusion import fuse_erf_gelu
from .stem_space_to_depth import rewrite_stem
from .feeds import FeedReader, graph_feeds
from .sources import CalibrationSet

log = logging.getLogger(__name__)

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]
VARIANTS = {
    "qdq": {"consumer": "TensorRT (explicit QDQ)", "activation": QuantType.QInt8, "symmetric": True,
            "ops": QUANTIZED_OPS, "dynamic": (), "reduce_range": False},
    # reduce_range: 7-bit weights. x86 CPUs without VNNI (AVX2 only) multiply u8 x s8 with
    # vpmaddubsw, whose int16 pair sums saturate: measured on an AVX2 EPYC, the shipped
    # INT8 vision graph's pooled cosine to FP32 fell to 0.88-0.91 (0.99 with 7-bit weights,
    # and 0.99 on the AVX-512 VNNI machine it was first built on). onnxruntime's docs
    # recommend reduce_range for such machines; the cost elsewhere is one bit of weight.
    "cpu": {"consumer": "onnxruntime CPU", "activation": QuantType.QUInt8, "symmetric": False,
            "ops": QUANTIZED_OPS + ["Clip", "Add"], "dynamic": ("cross_kv", "decoder", "decoder_step"), "reduce_range": True},
}
# bump when the feeds or the prepared graphs change meaning: invalidates cached ranges
# (3: the cpu variant's graphs are prepared by prepare_for_cpu before calibration)
FEEDS_VERSION = "3"


def check_target_variant(variant: str, target: str | None) -> None:
    """Only the ``cpu`` variant is made for a CPU target: refuse ``target`` with any other."""
    if target is not None and variant != "cpu":
        raise EdgeVLMError(f"--target chooses the CPU layout; use it with --variant cpu, not {variant}")


def variant_settings(variant: str, target: str | None = None) -> dict:
    """VARIANTS[variant], with the ``cpu`` variant's activation type and weight bits taken from
    ``target``'s layout (None: the variant as written, the AVX2 layout's settings)."""
    check_target_variant(variant, target)
    settings = dict(VARIANTS[variant])
    if target is not None:
        layout = layout_for(target)
        settings.update(activation=QuantType.QInt8 if layout.symmetric else QuantType.QUInt8,
                        symmetric=layout.symmetric, reduce_range=layout.reduce_range)
    return settings


def is_transformer_encoder(model_path: str) -> bool:
    """A vision graph with at most one Conv (a ViT's patch embedding) and MatMuls: a
    transformer encoder (the HF families' ViT/DeiT/BEiT/CLIP), not our EfficientNet."""
    ops = [n.op_type for n in onnx.load(model_path, load_external_data=False).graph.node]
    return ops.count("Conv") <= 1 and "MatMul" in ops


def quantizes_dynamically(graph: str, settings: dict, prepared: str, variant: str) -> bool:
    """The decoder-side graphs of the ``cpu`` variant, and its transformer vision encoders.

    A ViT quantized statically gets QDQ pairs around every Add, Erf and LayerNorm input (its
    GELU then cannot fuse) and int8 attention products; dynamically, only its weight MatMuls
    are int8 (onnxruntime leaves the activation x activation products float), as in the
    decoders. The race's ViT-base vision graph (AVX-512 VNNI EPYC, 20 photos,
    /work/runs/s27/vis_variants.py): 1.15x faster (interleaved), pooled cosine to FP32 0.9994
    against 0.9976, 9 MB less activation memory."""
    if graph in settings["dynamic"]:
        return True
    return variant == "cpu" and graph == "vision" and is_transformer_encoder(prepared)


def quantizable_nodes(model_path: str) -> list[str]:
    return [n.name for n in onnx.load(model_path, load_external_data=False).graph.node if n.op_type in QUANTIZED_OPS]


def match_nodes(model_path: str, patterns: list[str]) -> list[str]:
    """Node names matching any glob pattern, e.g. '/decoder/layers.3/*' or '*/mlp/*'."""
    names = [n.name for n in onnx.load(model_path, load_external_data=False).graph.node]
    return [name for name in names if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


def _ranges_cache(cache_dir: str, graph_path: str, calib: CalibrationSet, method: str, variant: str = "qdq") -> str:
    key = f"{sha256_file(graph_path)}:{calib.digest}:{method}:{variant}:{FEEDS_VERSION}"
    key = hashlib.sha256(key.encode()).hexdigest()[:20]
    return os.path.join(cache_dir, f"ranges-{os.path.basename(graph_path)}-{key}.json")


def static_quantize(model_path: str, out_path: str, reader, variant: str, method: str, ranges_cache: str,
                    nodes_to_exclude: list[str] | None = None, nodes_to_quantize: list[str] | None = None,
                    target: str | None = None) -> None:
    """onnxruntime's quantize_static with this variant's settings (for ``target``'s CPU);
    ``reader`` None = ranges from ``ranges_cache`` only. The one place the static options are
    spelled out."""
    settings = variant_settings(variant, target)
    # onnxruntime's histogram calibrators (entropy, percentile) print progress with print():
    # on stdout it would come before `quantize --json`'s report, which must be all of stdout.
    with contextlib.redirect_stdout(sys.stderr):
        quantize_static(
            model_path, out_path, reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=settings["ops"],
            per_channel=True, reduce_range=settings["reduce_range"], activation_type=settings["activation"],
            weight_type=QuantType.QInt8,
            nodes_to_quantize=nodes_to_quantize, nodes_to_exclude=nodes_to_exclude, calibrate_method=METHODS[method],
            calibration_cache_path=ranges_cache,
            extra_options={"ActivationSymmetric": settings["symmetric"], "WeightSymmetric": True,
                           "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}},
        )


def prepare_for_cpu(prepared: str) -> None:
    """The ``cpu`` variant's static graphs get every bias stored (constant_identities.py) and
    onnxruntime's one-node Gelu (gelu_fusion.py)."""
    model = onnx.load(prepared)
    if inline_constant_identities(model) + fuse_erf_gelu(model):
        onnx.save(model, prepared)


def quantize_graph(fp32: CaptionEngine, graph: str, calib: CalibrationSet, out_path: str, method: str,
                   exclude: list[str], cache_dir: str, work_dir: str, variant: str = "qdq",
                   target: str | None = None) -> dict:
    """Quantize one graph; returns what was done (for the manifest)."""
    settings = variant_settings(variant, target)
    source = fp32.manifest.graph_path(graph)
    prepared = os.path.join(work_dir, f"{graph}.prepared.onnx")
    if not os.path.isfile(prepared):
        # Shape inference only: graph optimisation would rename nodes that --exclude names.
        quant_pre_process(source, prepared, skip_optimization=True)
    if quantizes_dynamically(graph, settings, prepared, variant):
        quantize_dynamic(prepared, out_path, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather"],
                         nodes_to_exclude=exclude, reduce_range=settings["reduce_range"])
        return {"mode": "dynamic", "excluded": sorted(exclude)}
    if variant == "cpu":
        prepare_for_cpu(prepared)
    # Keyed by variant, not target: the cache holds float ranges, which every target's
    # activation type is then computed from (onnxruntime's load_tensors_data).
    cache = _ranges_cache(cache_dir, source, calib, method, variant)
    cached = os.path.isfile(cache)
    reader = None if cached else FeedReader(graph_feeds(fp32, graph, calib))
    try:
        static_quantize(prepared, out_path, reader, variant, method, cache, nodes_to_exclude=exclude, target=target)
    except ValueError as exc:
        # onnxruntime's histogram collector stacks every batch's tensor into one array, so a
        # graph whose token count varies between batches fails deep inside it (onnxruntime#18792).
        if method == "minmax" or "inhomogeneous" not in str(exc):
            raise
        raise EdgeVLMError(f"--method {method} cannot calibrate the {graph} graph: onnxruntime's histogram "
                           "calibrators need each tensor to keep one shape across calibration batches, and its "
                           "token count varies (onnxruntime#18792); use --method minmax, or --variant cpu, "
                           "which quantizes the decoder graphs dynamically") from exc
    return {"mode": "static", "excluded": sorted(exclude), "ranges_cache": os.path.basename(cache),
            "ranges_reused": cached}


def check_output(out_dir: str, fp32_dir: str) -> None:
    """Refuse OUT_DIR before any work: not an engine folder (or the input inside it), or a
    place that cannot be written. The CLI calls it before calibration data is read."""
    check_engine_out(out_dir, inputs=(fp32_dir,))
    check_writable(out_dir)


def quantize_engine(fp32_dir: str, calib: CalibrationSet, out_dir: str, method: str = "minmax",
                    exclude: dict[str, list[str]] | None = None, cache_dir: str | None = None,
                    extra_manifest: dict | None = None, variant: str = "qdq", target: str | None = None) -> Manifest:
    """FP32 engine -> INT8 engine (atomically); ``exclude``: graph -> node names kept float;
    ``target``: the CPU the ``cpu`` variant is made for (recorded in the manifest; the
    caller adds its layout's float patterns to ``exclude``)."""
    if method not in METHODS:
        raise EdgeVLMError(f"unknown calibration method {method!r}; choose {', '.join(METHODS)}")
    if variant not in VARIANTS:
        raise EdgeVLMError(f"unknown variant {variant!r}; choose {', '.join(VARIANTS)}")
    settings = variant_settings(variant, target)  # refuses a bad target before any work
    check_output(out_dir, fp32_dir)
    with CaptionEngine(fp32_dir, threads=2) as fp32:
        return _quantize_engine(fp32, calib, out_dir, method, exclude or {}, cache_dir, extra_manifest, variant,
                                target, settings)


def _quantize_engine(fp32: CaptionEngine, calib: CalibrationSet, out_dir: str, method: str,
                     exclude: dict[str, list[str]], cache_dir: str | None, extra_manifest: dict | None,
                     variant: str, target: str | None, settings: dict) -> Manifest:
    source = fp32.manifest
    if source.precision != "fp32":
        raise EdgeVLMError(f"{source.root} is a {source.precision} engine; quantize the FP32 one")
    cache_dir = cache_dir or default_ranges_dir()
    os.makedirs(cache_dir, exist_ok=True)
    details = {}
    with tempfile.TemporaryDirectory() as work, atomic_dir(out_dir) as tmp:
        preprocess, graphs = source.preprocess, source.graphs
        for graph in source.graphs:
            file_name = source.files[source.graph(graph).file].path
            details[graph] = quantize_graph(fp32, graph, calib, os.path.join(tmp, file_name), method,
                                            exclude.get(graph, []), cache_dir, work, variant, target)
            # ours only: a Hugging Face engine's pixels are its image processor's (hf_preprocess)
            if variant == "cpu" and graph == "vision" and details[graph]["mode"] == "static" and \
                    source.image_processor is None:
                preprocess, graphs = space_to_depth_input(os.path.join(tmp, file_name), source)
                details[graph]["input"] = preprocess.layout
        graph_files = {spec.file for spec in source.graphs.values()}
        # A caption memory's keys are the FP32 vision graph's embeddings, not the INT8 one's
        # queries: not copied (`edgevlm memory` rebuilds it for the INT8 engine).
        dropped = {source.caption_memory.file} if source.caption_memory else set()
        kept = {key: entry for key, entry in source.files.items() if key not in dropped}
        for key, entry in kept.items():
            if key == TOKEN_EMBEDDINGS:  # the step's word rows, at half the bytes (token_embeddings.py)
                write_token_embeddings(os.path.join(tmp, entry.path), np.load(source.path(key)), HALF)
            elif key not in graph_files:  # the tokenizer and any other listed file: copied as is
                shutil.copyfile(source.path(key), os.path.join(tmp, entry.path))
        files = {key: FileEntry(entry.path, sha256_file(os.path.join(tmp, entry.path)),
                                os.path.getsize(os.path.join(tmp, entry.path)))
                 for key, entry in kept.items()}
        manifest = source.replace(
            files=files,
            precision="int8",
            preprocess=preprocess,
            graphs=graphs,
            vqa=None,  # an abstention threshold tuned on FP32 answers: retune on INT8 (eval --vqa)
            caption_memory=None,  # see above
            quantization={
                "variant": variant, "consumer": VARIANTS[variant]["consumer"],
                "format": quantization_format(details),
                "activations": "int8 symmetric (static graphs)" if settings["symmetric"] else "uint8 asymmetric (static graphs)",
                "weights": ("7-bit" if settings["reduce_range"] else "int8")
                + " symmetric per-channel (static), per-tensor (dynamic)",
                **({"target": target, "layout": layout_for(target).record()} if target else {}),
                "op_types": VARIANTS[variant]["ops"], "method": method, "graphs": details,
                "calibration": {"images": len(calib.images), "sha256": calib.digest},
                "fp32_engine": {key: entry.sha256 for key, entry in source.files.items()},
                **(extra_manifest or {}),
            },
        )
        manifest.save(tmp)
    return manifest


def space_to_depth_input(vision_path: str, source: Manifest) -> tuple[Preprocess, dict[str, GraphSpec]]:
    """Give the quantized vision graph at ``vision_path`` raw uint8 space-to-depth pixels where
    its stem allows (stem_space_to_depth.py); -> the engine's preprocess and graph specs."""
    model = onnx.load(vision_path)
    preprocess = rewrite_stem(model, source.preprocess)
    if preprocess is None:
        return source.preprocess, source.graphs
    onnx.save(model, vision_path)
    vision, layout = source.graph("vision"), preprocess.layout
    pixels = TensorSpec("pixels", pixel_dtype_name(layout), ("batch", *pixels_shape(layout, preprocess.image_size)))
    inputs = tuple(pixels if spec.name == "pixels" else spec for spec in vision.inputs)
    return preprocess, {**source.graphs, "vision": dataclasses.replace(vision, inputs=inputs)}


def quantization_format(details: dict) -> str:
    """What the manifest says was done: "QDQ", or e.g. "QDQ (vision) + dynamic MatMulInteger
    (cross_kv, decoder, decoder_step)" from each graph's mode."""
    static = [graph for graph, done in details.items() if done["mode"] == "static"]
    dynamic = [graph for graph, done in details.items() if done["mode"] == "dynamic"]
    if not dynamic:
        return "QDQ"
    parts = [f"QDQ ({', '.join(static)})"] if static else []
    return " + ".join(parts + [f"dynamic MatMulInteger ({', '.join(dynamic)})"])


def default_ranges_dir() -> str:
    """Where calibrated ranges are cached between runs."""
    return os.path.expanduser(os.path.join("~", ".cache", "edgevlm", "calibration"))
