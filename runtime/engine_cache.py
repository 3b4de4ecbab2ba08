"""Compiled-engine caches that cannot go stale (issue 14's guard), torch-free and GPU-free.

onnxruntime's TensorRT provider keys its engine cache on the file name and the graph's
structure, not its weights: two models with the same graph share one engine and give the
same outputs (onnxruntime#6455), and nothing invalidates the cache after a TensorRT upgrade
(onnxruntime#22244). So each graph gets its own cache folder, named by everything that makes
a compiled engine valid: the ONNX file's sha256 (weights included; the manifest's, checked
when the engine loads), the onnxruntime and TensorRT versions, and the GPU's compute
capability. A change in any of them is a new folder, never a stale engine.

A serialized TensorRT plan is executable content and is tied to the TensorRT version and GPU
that built it ("Version tag does not match", "generated on an incompatible device"). Before a
plan is deserialized, ``check_plan`` compares its record (written when it was built) with
this device and with the plan file itself (size and sha256: a truncated or altered plan),
and refuses with one line saying what changed. Nothing here imports TensorRT.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.engine_profiles import ort_profile_options
from edgevlm.runtime.file_records import file_matches

CACHE_ENV = "EDGEVLM_CACHE_DIR"


@dataclass(frozen=True)
class DeviceFacts:
    """What a compiled engine depends on besides its ONNX file."""

    ort_version: str
    trt_version: str | None  # None: no TensorRT here
    gpu_name: str | None
    compute_capability: str | None  # "8.7" (Orin), "9.0" (H100/H200)


def installed_version(distribution: str) -> str | None:
    import importlib.metadata  # ~45 ms to import: only TensorRT's cache keys need it, not a CPU start

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpu_identity(timeout: float = 5.0) -> tuple[str | None, str | None]:
    """(name, compute capability) of the first GPU from ``nvidia-smi`` (dGPU; recent Jetson
    releases ship it too), or from the device tree on older Jetsons (name only): (None, None)
    when neither answers within ``timeout`` s."""
    import subprocess

    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode == 0 and done.stdout.strip():
            name, _, capability = done.stdout.strip().splitlines()[0].rpartition(",")
            return name.strip(), capability.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/device-tree/model", encoding="utf-8", errors="replace") as f:
            return f.read().strip("\x00\n "), None
    except OSError:
        return None, None


def device_facts(gpu_name: str | None = None, compute_capability: str | None = None) -> DeviceFacts:
    """This machine's facts: the GPU's as given, else ``gpu_identity()``; TensorRT's version
    from its Python package (JetPack's or PyPI's)."""
    if gpu_name is None and compute_capability is None:
        gpu_name, compute_capability = gpu_identity()
    ort_version = installed_version("onnxruntime-gpu") or installed_version("onnxruntime") or "unknown"
    trt_version = None
    for name in ("tensorrt", "tensorrt-cu12", "tensorrt_cu12", "tensorrt-cu13"):
        trt_version = trt_version or installed_version(name)
    return DeviceFacts(ort_version, trt_version, gpu_name, compute_capability)


def _slug(text: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text) if text else "none"


def cache_key(onnx_sha256: str, facts: DeviceFacts) -> str:
    """The folder name for one graph's compiled engines on this device."""
    gpu = facts.compute_capability or facts.gpu_name  # a Jetson without nvidia-smi: its model name
    return (f"{onnx_sha256[:16]}-ort{_slug(facts.ort_version)}-trt{_slug(facts.trt_version)}"
            f"-sm{_slug(gpu)}")


def user_cache_root() -> str:
    """``$EDGEVLM_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgevlm``, else ``~/.cache/edgevlm``: never the
    engine folder, which may be read-only (the shipped engine inside the package)."""
    return os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "edgevlm")


def cache_root() -> str:
    """Where the TensorRT engine caches live, inside the user cache."""
    return os.path.join(user_cache_root(), "tensorrt")


GRAPH_CACHE_SWITCH = "EDGEVLM_GRAPH_CACHE"


def graph_cache_folder() -> str:
    """Where this machine's optimized onnxruntime graphs live (runtime/optimized_graphs.py)."""
    return os.path.join(user_cache_root(), "optimized-graphs")


def graph_cache_enabled() -> bool:
    return os.environ.get(GRAPH_CACHE_SWITCH, "1").strip().lower() not in ("0", "off", "no", "false")


def graph_cache_dir(onnx_sha256: str, facts: DeviceFacts) -> str:
    return os.path.join(cache_root(), cache_key(onnx_sha256, facts))


def tensorrt_provider_options(manifest, graph: str, facts: DeviceFacts) -> dict[str, str]:
    """onnxruntime TensorrtExecutionProvider options for one graph (names as in onnxruntime's
    TensorRT EP docs, "Execution Provider Options"): its own keyed engine cache and timing
    cache; FP16 unless the engine is INT8; INT8 only for a symmetric Q/DQ variant (the
    precision is then in the graph: TensorRT reads Q/DQ, no calibration table); the
    optimization profile of every dynamic input from the manifest."""
    qdq = is_symmetric_qdq(manifest)
    folder = graph_cache_dir(manifest.files[manifest.graphs[graph].file].sha256, facts)
    return {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": folder,
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": folder,
        "trt_fp16_enable": "True" if manifest.precision != "int8" or qdq else "False",
        "trt_int8_enable": "True" if qdq else "False",
        # explicit min/opt/max per dynamic input (engine_profiles.py): without them the EP builds an
        # engine for the first shapes it sees and rebuilds whenever a larger one arrives
        **ort_profile_options(manifest, graph),
    }


def is_symmetric_qdq(manifest) -> bool:
    """An INT8 engine TensorRT can run as INT8: the ``qdq`` variant (symmetric int8 Q/DQ on
    Conv/MatMul/Gemm, calibration/quantize.py). The ``cpu`` variant's uint8 activations and
    dynamic MatMulInteger are not TensorRT's explicit quantization."""
    return manifest.precision == "int8" and (manifest.quantization or {}).get("variant") == "qdq"


# --------------------------------------------------------------------------- native plans
@dataclass(frozen=True)
class PlanRecord:
    """What ``edgevlm build`` records in the manifest for each plan it writes."""

    onnx_sha256: str  # the ONNX graph the plan was built from
    trt_version: str
    gpu_name: str
    compute_capability: str
    plan_sha256: str
    plan_bytes: int

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_entry(cls, entry) -> "PlanRecord":
        """The record part of a manifest ``PlanEntry`` (manifest.py)."""
        return cls(**{name: getattr(entry, name) for name in cls.__dataclass_fields__})

    @classmethod
    def from_json(cls, data: dict, where: str) -> "PlanRecord":
        try:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise EdgeVLMError(f"{where}: the plan record lacks {exc}; rebuild with `edgevlm build`") from None


class StalePlan(EdgeVLMError):
    """A plan that must not be deserialized here; ``changes`` says what differs."""

    def __init__(self, plan_path: str, changes: list[str]):
        self.changes = changes
        super().__init__(f"{plan_path} cannot be used here: {'; '.join(changes)}; rebuild it with "
                         "`edgevlm build ENGINE_DIR` (or --rebuild)")


def plan_changes(plan_path: str, record: PlanRecord, onnx_sha256: str, facts: DeviceFacts,
                 use_records: bool = True) -> list[str]:
    """What makes the plan unusable here (empty: it may be deserialized). Reads the plan's
    bytes only to hash them, never hands them to TensorRT, and hashes them only when the file
    changed since it last matched (``use_records``: runtime/file_records.py), as the engine's
    own files: a Jetson's plans are larger than our whole CPU engine, and hashing them at
    every start cost more than the rest of the check."""
    changes = []
    if record.onnx_sha256 != onnx_sha256:
        changes.append(f"the ONNX graph changed (plan built from {record.onnx_sha256[:12]}, now {onnx_sha256[:12]})")
    if record.trt_version != facts.trt_version:
        changes.append(f"TensorRT changed ({record.trt_version} when built, {facts.trt_version or 'none'} now)")
    if record.compute_capability != facts.compute_capability or record.gpu_name != facts.gpu_name:
        changes.append(f"the GPU changed (built on {record.gpu_name} sm {record.compute_capability}, now "
                       f"{facts.gpu_name or 'none'} sm {facts.compute_capability or 'none'})")
    if not os.path.isfile(plan_path):
        changes.append("the plan file is missing")
    elif os.path.getsize(plan_path) != record.plan_bytes:
        changes.append(f"the plan file is {os.path.getsize(plan_path)} bytes, not the {record.plan_bytes} recorded "
                       "(truncated or replaced)")
    elif not file_matches(plan_path, record.plan_sha256, use_records):
        changes.append("the plan file's sha256 is not the one recorded (altered)")
    return changes


def plan_problems(manifest, facts: DeviceFacts, use_records: bool = True) -> dict[str, list[str] | None]:
    """{graph: None (no plan built) or what makes its plan unusable here (``plan_changes``)}
    for each graph a GPU runs (``steppers.device_graphs``) whose plan may not be deserialized;
    empty when every plan is current. The backend, ``edgevlm build`` and ``doctor`` all ask
    this one question (doctor and ``edgevlm build`` with ``use_records`` off: every plan's bytes hashed)."""
    from edgevlm.runtime.steppers import device_graphs

    problems: dict[str, list[str] | None] = {}
    for graph in device_graphs(manifest):
        entry = (manifest.plans or {}).get(graph)
        if entry is None:
            problems[graph] = None
            continue
        changes = plan_changes(manifest.plan_path(graph), PlanRecord.from_entry(entry),
                               manifest.files[manifest.graphs[graph].file].sha256, facts, use_records)
        if changes:
            problems[graph] = changes
    return problems


def check_plan(plan_path: str, record: PlanRecord, onnx_sha256: str, facts: DeviceFacts) -> None:
    """Raise StalePlan naming every change; return only when the plan may be deserialized."""
    changes = plan_changes(plan_path, record, onnx_sha256, facts)
    if changes:
        raise StalePlan(plan_path, changes)
