"""Open the engine made for this CPU: pick a per-target variant, warn once on a mismatch.

An engine folder may carry INT8 engines made for other CPU targets (runtime/cpu_isa.py):
each is a complete engine folder inside it, listed in the manifest as
``quantization.variants = {target: "variants/<target>"}``. Complete folders rather than
extra graph files keep every check as it is: each variant has its own manifest, sha256s
and gate report (each must pass the gate on its own CPU), and the top engine stays an
ordinary engine for any edgevlm that predates variants. The tokenizer is copied (57 kB).

``load_for_this_cpu`` is what CaptionEngine opens: the top engine when it was made for this
CPU (or lists nothing better), else the listed variant for it. If what is opened was made
for another CPU, one warning line per process says which, why it matters and the fix.
Engines without a recorded target (FP32, QDQ, made before targets) are never warned about.
"""

from __future__ import annotations

import logging
import os

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.backends import DEFAULT_BACKEND
from edgevlm.runtime.cpu_isa import SATURATING, detected_cpu_target, mismatch, same_layout, this_cpu_target
from edgevlm.runtime.manifest import Manifest, load_manifest, verify_files

log = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()  # (engine target, CPU target) pairs already warned about


def variant_dir(manifest: Manifest, cpu_target: str | None) -> str | None:
    """The folder of ``manifest``'s variant for ``cpu_target``; None when the top engine is
    the one to run (made for this CPU's layout, no variant listed, or CPU unknown)."""
    top = manifest.cpu_target
    if cpu_target is None or top is None or same_layout(top, cpu_target):
        return None
    variants = manifest.cpu_variants
    folder = variants.get(cpu_target) or next(
        (f for t, f in variants.items() if same_layout(t, cpu_target)), None)
    if folder is None:
        return None
    path = os.path.join(manifest.root, folder)
    real_root = os.path.realpath(manifest.root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise EdgeVLMError(f"variant {folder!r} (quantization.variants in {manifest.root}) leads outside the "
                           "engine folder; refusing to open it (rebuild the engine)")
    return path


def runs_variants(provider: str, backend: str = DEFAULT_BACKEND) -> bool:
    """Do CPU variants apply to this provider and backend? Only where onnxruntime's CPU
    provider runs the graphs: variants are int8 layouts for CPU kernels, and a GPU provider
    or the TensorRT backend runs the top engine (``load_for_this_cpu``'s ``on_cpu``)."""
    return provider == "cpu" and backend == DEFAULT_BACKEND


def load_for_this_cpu(engine_dir: str, verify: bool = True, cpu_target: str | None = None,
                      pick: bool = True, on_cpu: bool = True) -> Manifest:
    """The manifest of the engine to run from ENGINE_DIR on this CPU (``cpu_target``: this
    CPU's by default; ``pick`` False: ENGINE_DIR itself), warning once if it was made for
    another CPU. ``on_cpu`` False (a GPU provider or backend runs the graphs): ENGINE_DIR
    itself, never a variant: variants are int8 layouts for CPU kernels, and TensorRT would
    take an ARM variant's int8 Q/DQ nodes, which the top engine's uint8 ones keep on the CPU.
    Those nodes still run on this CPU, so the one warning kept there is the one about wrong
    results: 8-bit weights on a CPU whose u8 x s8 sums saturate."""
    if not on_cpu:
        manifest = load_manifest(engine_dir, verify=verify)
        cpu = cpu_target if cpu_target is not None else detected_cpu_target()
        if cpu in SATURATING and manifest.cpu_target is not None and manifest.cpu_target not in SATURATING:
            warn_if_other_cpu(manifest, cpu)
        return manifest
    cpu_target = cpu_target if cpu_target is not None else this_cpu_target()
    manifest = load_manifest(engine_dir, verify=verify and not pick)
    chosen = variant_dir(manifest, cpu_target) if pick else None
    if chosen is not None:
        variant = load_manifest(chosen, verify=verify)
        if variant.cpu_target is None or not same_layout(variant.cpu_target, cpu_target):
            raise EdgeVLMError(f"{chosen} is listed as the {cpu_target} variant of {engine_dir}, but was made for "
                               f"{variant.cpu_target or 'no CPU target'}; rebuild the engine's variants")
        manifest = variant
    elif pick and verify:  # the top engine is the one: now verify its files
        verify_files(manifest)
    warn_if_other_cpu(manifest, cpu_target)
    return manifest


def warn_if_other_cpu(manifest: Manifest, cpu_target: str | None) -> bool:
    """One warning line (once per process per engine/CPU pair) when ``manifest`` was made
    for another CPU's int8 kernels; -> whether it warned now."""
    made_for = manifest.cpu_target
    if made_for is None or cpu_target is None or manifest.source.get("emulates"):
        return False  # (an emulated engine computes its target's integer arithmetic on any CPU: int8_emulation.py)
    why = mismatch(made_for, cpu_target)
    if why is None or (made_for, cpu_target) in _warned:
        return False
    _warned.add((made_for, cpu_target))
    log.warning("%s is an INT8 engine made for %s CPUs and this CPU is %s: %s; use the engine made for %s, or make "
                "one: `edgevlm quantize FP32_ENGINE --variant cpu --target %s --calib IMAGES --out DIR`",
                manifest.root, made_for, cpu_target, why, cpu_target, cpu_target)
    return True
