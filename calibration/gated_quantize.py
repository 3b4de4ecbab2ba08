"""Quantize, gate against FP32, and (with ``auto_exclude``) return the most damaging nodes
to float until the gate passes: the body of ``edgevlm quantize``.

The gate report is recorded in the INT8 engine's manifest under ``quantization.gate``, with
the CPU target it was measured on: a gate run on one CPU's int8 kernels says nothing of
another's (an 8-bit engine saturates on AVX2 and not on VNNI). An engine made for another
CPU is gated on its emulation (its integer arithmetic in float, ``emulated_on`` naming this
CPU), so a VNNI variant can be made and judged on an AVX2 machine.
"""

from __future__ import annotations

import os
from typing import Callable

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.cpu_isa import detected_cpu_target
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.manifest import update_manifest

from .cpu_layouts import layout_for
from .gate import EvalSet, check_gateable, compare_engines, format_report
from .int8_emulation import emulation_needed, engine_as_made
from .quantize import default_ranges_dir, match_nodes, quantize_engine
from .sensitivity import node_sensitivity
from .sources import CalibrationSet


def quantize_gated(engine_dir: str, calib: CalibrationSet, out_dir: str, method: str, variant: str,
                   patterns: list[str], eval_set: EvalSet | None, max_cider_drop: float = 0.02,
                   auto_exclude: bool = False, extra_manifest: dict | None = None,
                   say: Callable[[str], None] = lambda message: None, target: str | None = None) -> dict | None:
    """Write the INT8 engine; -> the gate report (None without ``eval_set``). ``say`` gets
    progress lines for the user. ``target``: the CPU the ``cpu`` variant is made for; its
    layout's float blocks are kept float on top of ``patterns``."""
    if auto_exclude and eval_set is None:
        raise EdgeVLMError("--auto-exclude needs --eval CAPTIONS.json: the gate decides when to stop")
    if auto_exclude and variant != "qdq":
        raise EdgeVLMError("--auto-exclude ranks nodes of the static QDQ variant; use it with --variant qdq")
    if target is not None:
        patterns = list(patterns) + [p for p in layout_for(target).float_patterns if p not in patterns]
    here = detected_cpu_target()  # what the gate measures on (never EDGEVLM_CPU_TARGET's)
    # An 8-bit VNNI engine gated on AVX2's kernels failed (CIDEr drop 4.9%, pooled cosine 0.91
    # mean); its emulation reproduced the figures measured on a VNNI CPU (MODEL_CARD.md).
    emulate = eval_set is not None and emulation_needed(target)
    if emulate:
        say(f"note: this CPU ({here or 'unknown'}) does not have {target}'s int8 kernels: the gate runs the engine "
            f"emulated, its integer arithmetic in float as {target} kernels sum it (calibration/int8_emulation.py)")
    with CaptionEngine(engine_dir, threads=2) as fp32:
        if eval_set is not None:  # before any work: the gate could only fail after it
            check_gateable(fp32)
        graphs = list(fp32.manifest.graphs)
        exclude = {g: match_nodes(fp32.manifest.graph_path(g), list(patterns)) for g in graphs}
        extra = dict(extra_manifest or {}) | {"patterns_excluded": list(patterns)}
        quantize_engine(engine_dir, calib, out_dir, method, exclude, extra_manifest=extra, variant=variant,
                        target=target)
        if eval_set is None:
            return None
        fp32_cache: dict = {}
        with engine_as_made(out_dir, emulate, threads=2) as int8:
            report = compare_engines(fp32, int8, eval_set, max_cider_drop, fp32_cache)
        auto: list[tuple[str, str, float]] = []
        if not report["passed"] and auto_exclude:
            say(format_report(report) + "\nrunning sensitivity analysis...")
            ranked = [(g, node, damage) for g in graphs
                      for node, damage in node_sensitivity(fp32, g, calib, method, default_ranges_dir())]
            ranked.sort(key=lambda item: -item[2])
            count = 1
            while not report["passed"] and count <= len(ranked):
                auto = ranked[:count]
                for g, node, _ in auto:
                    if node not in exclude[g]:
                        exclude[g].append(node)
                quantize_engine(engine_dir, calib, out_dir, method, exclude,
                                extra_manifest=extra | {"auto_excluded": [n for _, n, _ in auto]})
                with engine_as_made(out_dir, emulate, threads=2) as int8:
                    report = compare_engines(fp32, int8, eval_set, max_cider_drop, fp32_cache)
                say(f"  {count} node(s) in float: CIDEr drop {report['cider_drop_relative']:+.2%}")
                count *= 2
    report["auto_excluded"] = [{"graph": g, "node": n, "damage": round(d, 5)} for g, n, d in auto]
    # the CPU target whose integer arithmetic the gate measured: the target's when emulated
    report["measured_on"] = target if emulate else here
    if emulate:  # said in the report, so no reader takes it for a native measurement
        report["emulated_on"] = here or "unknown"
    update_manifest(out_dir, lambda m: m.replace(quantization=m.quantization | {"gate": report}), "the gate report")
    return report


def load_eval_set(path: str, limit: int | None = None) -> EvalSet:
    """The gate's images and human captions from a COCO caption file (e.g. the dev split)."""
    from edgevlm.data.coco import load_coco_captions
    from edgevlm.runtime.preprocess import read_image_bgr

    items = [i for i in load_coco_captions(path) if i.captions][:limit]
    if not items:
        raise EdgeVLMError(f"--eval {path} has no captioned images to gate on")
    return EvalSet([read_image_bgr(i.path) for i in items], [list(i.captions) for i in items], [i.path for i in items])


def held_out_names(eval_set: EvalSet | None) -> set[str] | None:
    """Absolute paths of the gate's images: never used for calibration."""
    return {os.path.abspath(n) for n in eval_set.names} if eval_set else None
