"""``edgevlm build``: one native TensorRT plan per graph, recorded in the manifest.

Follows TensorRT's Python API as Polygraphy drives it (tools/Polygraphy/polygraphy/backend/
trt/loader.py: ``create_network``, ``NetworkFromOnnxPath``, ``EngineBytesFromNetwork``;
config.py: memory pools, optimization profiles, timing cache): a network from the ONNX file,
one optimization profile from the manifest (engine_profiles.py), a persistent timing cache,
``build_serialized_network``. TensorRT is imported only inside ``build_plans``.

Where plans go: ENGINE_DIR/plans/<graph>-<plan sha256[:12]>.plan, recorded in ENGINE_DIR's
manifest (``plans``). A plan belongs with the manifest that vouches for it, so a copied
engine folder carries both; a plan is device-specific, which the record says and
``check_plan`` enforces. Writing is atomic twice over: each plan file through a temp name,
then the manifest, whose rewrite is the one moment the new plans take effect (a crash before
it leaves the old plans and records valid); replaced plans are removed after. A read-only
engine folder (the shipped one, inside the package) is refused up front: copy it first. The
timing cache is a device matter, not the engine's: it lives in the keyed cache folder
(engine_cache.graph_cache_dir), reused by every later build on this device.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable

from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import atomic_path, probe_writable
from edgevlm.runtime.engine_cache import graph_cache_dir, is_symmetric_qdq, plan_problems
from edgevlm.runtime.engine_profiles import axis_ranges, input_profiles
from edgevlm.runtime.file_records import sha256_file
from edgevlm.runtime.manifest import PlanEntry, load_manifest, update_manifest
from edgevlm.runtime.steppers import device_graphs

log = logging.getLogger(__name__)

PLANS_DIR = "plans"
TIMING_CACHE = "timing.cache"
DEFAULT_WORKSPACE_MB = 1024
PRECISION_CHOICES = ("fp32", "fp16", "int8")
PREPARING = "preparing the engine, about a minute"  # what narration says while plans build


# --------------------------------------------------------------------------- pure decisions
def check_precision_request(manifest, requested: str | None) -> None:
    """Refuse, before TensorRT is imported, a precision this engine's graphs cannot give."""
    variant = (manifest.quantization or {}).get("variant")
    if manifest.precision == "int8" and not is_symmetric_qdq(manifest):
        raise EdgeVLMError(f"this engine is the {variant or 'non-Q/DQ'} INT8 variant (uint8 activations, dynamic "
                           "MatMulInteger: onnxruntime's CPU kernels), which TensorRT cannot build; build the FP32 "
                           "engine (`edgevlm export`) or its `edgevlm quantize --variant qdq` engine")
    if requested == "int8" and not is_symmetric_qdq(manifest):
        raise EdgeVLMError(f"--precision int8 needs the symmetric Q/DQ INT8 engine, and this one is "
                           f"{manifest.precision}; make it with `edgevlm quantize ENGINE_DIR --variant qdq --out DIR` "
                           "and build DIR (TensorRT 11 has no calibration: INT8 must be Q/DQ in the graph)")
    if requested in ("fp32", "fp16") and is_symmetric_qdq(manifest):
        raise EdgeVLMError(f"this engine is INT8 Q/DQ (its precision is in the graph); build it with --precision int8, "
                           f"or build the FP32 engine for --precision {requested}")


def resolve_precision(manifest, requested: str | None, precision_flags: bool) -> str:
    """The precision the plans get. ``precision_flags``: TensorRT 10's BuilderFlag.FP16/INT8
    exist. On TensorRT 11 (none) precision is the graph's: FP16 must be exported as FP16."""
    check_precision_request(manifest, requested)
    if is_symmetric_qdq(manifest):
        return "int8"
    if precision_flags:
        return requested or "fp16"  # TensorRT 10: FP16 kernels where faster, FP32 elsewhere
    graph = manifest.precision  # fp32 or fp16 as exported
    if requested and requested != graph:
        raise EdgeVLMError(f"TensorRT 11 takes precision from the graph, which is {graph}: it has no FP16 builder "
                           f"flag; build with --precision {graph}, or export an {requested} engine first")
    return graph


def plan_name(graph: str, plan_sha256: str) -> str:
    return f"{PLANS_DIR}/{graph}-{plan_sha256[:12]}.plan"


def stale_graphs(manifest, facts, rebuild: bool = False) -> dict[str, list[str]]:
    """{graph: what is wrong with its plan} for every graph that needs (re)building here: no
    plan, or one ``plan_changes`` refuses; with ``rebuild`` every graph."""
    problems = plan_problems(manifest, facts, use_records=False)  # the repair command: every byte hashed
    out = {}
    for graph in device_graphs(manifest):
        if graph in problems:
            out[graph] = problems[graph] or ["no plan built"]
        elif rebuild:
            out[graph] = ["--rebuild"]
    return out


def check_plans_writable(engine_dir: str) -> None:
    """Plans and their records go into the engine folder: fail before a minute of building."""
    try:
        probe_writable(engine_dir)
    except OSError as exc:
        raise EdgeVLMError(f"cannot write plans into {engine_dir} ({exc.strerror or exc}); copy the engine somewhere "
                           f"writable (cp -r {engine_dir} ~/edgevlm-engine) and build that") from None


# --------------------------------------------------------------------------- TensorRT
def _network(trt, builder, logger, onnx_path: str, precision_flags: bool):
    """An empty network and the ONNX file parsed into it (Polygraphy loader.py create_network /
    NetworkFromOnnxPath). Explicit batch is the only mode since TensorRT 10 (the flag is
    deprecated, so it is not passed). TensorRT 10 builds weakly typed, the FP16/INT8 flags
    choosing precision; where those flags are gone (11) the network is strongly typed."""
    flags = 0
    if not precision_flags and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):  # from the path: external weights beside it are found
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = errors[0].splitlines()[0] if errors else "unknown error"
        raise EdgeVLMError(f"TensorRT cannot parse {onnx_path}: {first}; check the TensorRT version supports its "
                           "opset (or use the onnxruntime backend)")
    return network, parser  # the parser owns weights the network points at: keep it alive until built


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _write_bytes(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def build_graph(trt, manifest, graph: str, precision: str, workspace_mb: int, timing_cache: str) -> bytes:
    """One graph -> serialized plan bytes, its timing cache merged into ``timing_cache``."""
    from edgevlm.runtime.tensorrt_support import has_precision_flags

    precision_flags = has_precision_flags(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _network(trt, builder, logger, manifest.graph_path(graph), precision_flags)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision_flags and precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # TensorRT 10; layers outside Q/DQ may run in FP16 too
    if precision_flags and precision == "int8":
        # Explicit quantization: the Q/DQ scales are in the graph, so no calibrator is set.
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in input_profiles(manifest, graph).items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    # Timing cache (Polygraphy config.py / loader.py EngineBytesFromNetwork): start from the saved one,
    # refuse a mismatched one (the folder is keyed by device, so a mismatch is a bug), save the merge.
    cache = config.create_timing_cache(_read_bytes(timing_cache))
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeVLMError(f"TensorRT could not build {graph} ({manifest.graph_path(graph)}); re-run with -v for "
                           "TensorRT's log, or raise --workspace")
    _write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def build_plans(engine_dir: str, precision: str | None = None, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                rebuild: bool = False, on_prepare: Callable[[str], None] | None = None,
                trt=None, cuda=None) -> dict[str, str]:
    """Build the plans ENGINE_DIR lacks (or has stale; every one with ``rebuild``) -> {graph:
    "built"/"up to date"}. ``on_prepare(PREPARING)`` is called once before the first build
    (narration speaks it). ``trt``/``cuda``: injected in tests; imported otherwise."""
    from edgevlm.runtime.tensorrt_support import Cuda, has_precision_flags, import_tensorrt, native_facts

    manifest = load_manifest(engine_dir, verify=True)  # the ONNX files must be the recorded ones
    check_precision_request(manifest, precision)  # before the import: a wrong request fails on any machine
    trt = trt or import_tensorrt()
    cuda = cuda or Cuda()
    final = resolve_precision(manifest, precision, has_precision_flags(trt))
    facts = native_facts(trt, cuda)
    todo = stale_graphs(manifest, facts, rebuild)
    if precision is not None:  # a plan of another precision is rebuilt too
        todo.update({g: ["another precision"] for g, e in (manifest.plans or {}).items()
                     if e.precision != final and g not in todo})
    status = {graph: "up to date" for graph in device_graphs(manifest) if graph not in todo}
    if not todo:
        return status
    check_plans_writable(engine_dir)
    if on_prepare is not None:
        on_prepare(PREPARING)
    entries, old = dict(manifest.plans or {}), []
    for graph, why in todo.items():
        log.info("building %s (%s): %s", graph, final, "; ".join(why))
        onnx_sha = manifest.files[manifest.graphs[graph].file].sha256
        timing = os.path.join(graph_cache_dir(onnx_sha, facts), TIMING_CACHE)
        data = build_graph(trt, manifest, graph, final, workspace_mb, timing)
        path = os.path.join(engine_dir, plan_name(graph, _sha(data)))
        _write_bytes(path, data)
        if graph in entries and entries[graph].path != os.path.relpath(path, engine_dir):
            old.append(os.path.join(engine_dir, entries[graph].path))
        ranges = axis_ranges(manifest, graph)
        entries[graph] = PlanEntry(path=plan_name(graph, _sha(data)), precision=final, onnx_sha256=onnx_sha,
                                   trt_version=facts.trt_version, gpu_name=facts.gpu_name,
                                   compute_capability=facts.compute_capability, plan_sha256=sha256_file(path),
                                   plan_bytes=os.path.getsize(path),
                                   axes={a: (r.min, r.opt, r.max) for a, r in ranges.items()})
        status[graph] = "built"
    update_manifest(engine_dir, lambda m: dataclasses.replace(m, plans=entries), "the plan records")
    for path in old:  # no record points at them any more
        try:
            os.remove(path)
        except OSError:
            pass
    return status


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
