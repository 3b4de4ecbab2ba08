"""Which int8 instruction set this CPU has, and which INT8 engine layout it wants (torch-free).

A CPU INT8 engine is made for one of four *targets*, named after the instruction set that
onnxruntime's int8 kernels (MLAS) use on it:

- ``avx2``: x86 without VNNI (AVX2, or AVX-512 without VNNI). u8 x s8 products go through
  ``vpmaddubsw``, which adds pairs of products into *saturating* int16: 255 * 127 * 2 =
  64770 does not fit, so 8-bit weights can clip (onnxruntime's quantization guide, "When and
  why do I need to try U8U8?": "this instruction might suffer from saturation issues").
- ``avx512-vnni``: x86 with AVX-512 VNNI or AVX-VNNI. ``vpdpbusd`` adds four u8 x s8
  products straight into int32: no saturation ("There is no such issue on other CPU
  architectures (x64 with VNNI and ARM)", same guide).
- ``amx``: x86 with AMX-INT8 tiles (Sapphire Rapids and later). MLAS dispatches u8s8 GEMMs
  to its AMX kernel (``MlasGemmU8S8DispatchAmx`` in mlas/lib/platform.cpp), int32
  accumulation; the CPU also has AVX-512 VNNI for the rest.
- ``arm-dotprod``: ARM64 (a Jetson's Cortex-A78AE/Carmel, Graviton, Apple silicon). With the
  dot-product extension (``asimddp``) MLAS uses ``sdot``/``udot`` kernels
  (``MlasGemmS8S8DispatchSdot``, ``MlasGemmU8X8DispatchUdot``); no saturation either.

Flags come from /proc/cpuinfo (x86 ``flags``, ARM ``Features``). ``this_cpu_target`` is
what ``edgevlm quantize --target auto`` and the runtime's engine check use.
"""

from __future__ import annotations

import functools
import logging
import os
import platform

log = logging.getLogger(__name__)

TARGETS = ("avx2", "avx512-vnni", "amx", "arm-dotprod")

# x86 targets whose u8 x s8 kernels saturate (vpmaddubsw's int16 pair sums).
SATURATING = frozenset({"avx2"})
# Targets whose engines are built alike (calibration/cpu_layouts.py: tests check the layouts
# are equal): an engine made for one runs as intended on the other, so no warning.
SAME_LAYOUT = (frozenset({"avx512-vnni", "amx"}),)

_FLAG_LABELS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
                "amx_int8": "AMX", "asimd": "NEON", "asimddp": "ARM dotprod"}
_ARM_MACHINES = ("aarch64", "arm64")


def parse_cpuinfo(cpuinfo: str) -> tuple[str, set[str]]:
    """(CPU model, every flag) from /proc/cpuinfo's text. x86 lists ``flags``, ARM ``Features``."""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return model, flags


def cpu_features(cpuinfo: str) -> tuple[str, list[str]]:
    """(CPU model, the int8-relevant instruction sets, as labels) from /proc/cpuinfo's text."""
    model, flags = parse_cpuinfo(cpuinfo)
    return model, [label for flag, label in _FLAG_LABELS.items() if flag in flags]


def target_from_flags(flags: set[str], machine: str = "") -> str | None:
    """The best target for a CPU with these flags; None when neither x86 nor ARM can be told.

    ARM without ``asimddp`` still gets ``arm-dotprod``: the same layout runs there on MLAS's
    plain NEON kernels (slower, never saturating). x86 without AVX2 gets ``avx2``: its SSE4.1
    u8s8 kernel saturates the same way (pmaddubsw), so it needs the same layout."""
    if "amx_int8" in flags and "amx_tile" in flags:
        return "amx"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "avx512-vnni"
    if "asimd" in flags or "asimddp" in flags or machine.lower() in _ARM_MACHINES:
        return "arm-dotprod"
    if "avx2" in flags or "sse4_1" in flags or machine.lower() in ("x86_64", "amd64", "i686", "x86"):
        return "avx2"
    return None


def target_from_cpuinfo(cpuinfo: str, machine: str = "") -> str | None:
    """The best target for the CPU /proc/cpuinfo's text describes (``machine``: platform.machine())."""
    return target_from_flags(parse_cpuinfo(cpuinfo)[1], machine)


def read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:  # macOS, Windows: no /proc; the machine name is all there is
        return ""


# Treat this CPU as that target: which engine variant runs, and quantize's --target auto. Never
# which arithmetic this CPU does: whether a gate or a caption memory needs an engine's
# emulation is always decided by ``detected_cpu_target`` (a told VNNI on an AVX2 CPU saturates).
CPU_TARGET_ENV = "EDGEVLM_CPU_TARGET"


@functools.lru_cache(maxsize=1)
def this_cpu_target() -> str | None:
    """The target engines are picked and made for here: the one ``EDGEVLM_CPU_TARGET`` names
    (to run the top engine where a variant would be picked, or where /proc/cpuinfo lies: an
    emulator), warned about once when it is not this CPU's; else ``detected_cpu_target``.
    Cached: read once per process."""
    told = os.environ.get(CPU_TARGET_ENV, "").strip()
    if not told:
        return detected_cpu_target()
    if told not in TARGETS:
        from edgevlm.errors import EdgeVLMError

        raise EdgeVLMError(f"{CPU_TARGET_ENV}={told!r} is not a CPU target; set one of {', '.join(TARGETS)}, "
                           "or unset it to detect this CPU's")
    detected = detected_cpu_target()
    why = None if detected is None else mismatch(told, detected)
    if why is not None:
        log.warning("%s=%s, but this CPU is %s: engines made for %s run here: %s", CPU_TARGET_ENV, told, detected,
                    told, why)
    return told


@functools.lru_cache(maxsize=1)
def detected_cpu_target() -> str | None:
    """This CPU's own target, from its flags (cached: the CPU does not change under a running
    process). Without /proc/cpuinfo, an ARM64 machine counts as arm-dotprod (every Apple
    silicon chip has it) and an x86 one is not told (None): VNNI cannot be seen without the
    flags."""
    text = read_cpuinfo()
    machine = platform.machine()
    if not text.strip():
        return "arm-dotprod" if machine.lower() in _ARM_MACHINES else None
    return target_from_cpuinfo(text, machine)


def same_layout(a: str, b: str) -> bool:
    return a == b or any(a in group and b in group for group in SAME_LAYOUT)


def mismatch(engine_target: str, cpu_target: str | None) -> str | None:
    """Why an engine made for ``engine_target`` is the wrong one for a ``cpu_target`` CPU, in
    a few words; None when it is the right one (or this CPU cannot be told)."""
    if cpu_target is None or same_layout(engine_target, cpu_target):
        return None
    if cpu_target in SATURATING and engine_target not in SATURATING:
        return ("its 8-bit weights can saturate this CPU's u8 x s8 kernels (vpmaddubsw adds pairs of "
                "products in int16), so captions and answers may be wrong")
    if engine_target == "arm-dotprod":
        return "its int8 activations have no fast int8 x int8 kernels on x86 (onnxruntime runs them slowly)"
    if engine_target in SATURATING:
        return ("it keeps 7-bit weights and early encoder blocks in float to dodge AVX2 saturation, "
                "which this CPU does not have: slower and less accurate than the engine made for it")
    return "its layout was chosen for other int8 kernels: likely slower here"
