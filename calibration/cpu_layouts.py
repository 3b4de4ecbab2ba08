"""The INT8 layout ``edgevlm quantize --variant cpu`` builds for each CPU target.

Every target keeps the ``cpu`` variant's shape (calibration/quantize.py): a convolutional
vision graph (ours) static QDQ with Conv/MatMul/Gemm/Clip/Add quantized and per-channel int8
weights; a transformer vision graph (the HF families' ViTs), the cross-K/V and decoder graphs
dynamic int8 MatMuls (DynamicQuantizeLinear gives them uint8 activations on every target).
What changes per target is what the int8 kernels need:

| target | static activations | weights | encoder blocks kept float | why |
|---|---|---|---|---|
| avx2 | uint8 asymmetric | 7-bit (reduce_range) | stem, blocks 0-3 | vpmaddubsw saturates |
| avx512-vnni | uint8 asymmetric | 8-bit | none | vpdpbusd: int32, no saturation |
| amx | uint8 asymmetric | 8-bit | none | AMX u8s8 tiles: int32, no saturation |
| arm-dotprod | int8 symmetric | 8-bit | none | sdot/udot: no saturation; S8S8 QDQ |

Sources followed (onnxruntime 1.32, the version this project pins):
- avx2: measured here (MODEL_CARD.md, the shipped engine's manifest): 8-bit weights gave the
  vision graph pooled cosine 0.88 on this AVX2 EPYC, 7-bit 0.98; the fully quantized encoder
  still failed the gate (cosine 0.976, CIDEr -4.85%), and with the stem and blocks 0-3 in
  float it passed (-1.45%). onnxruntime's quantize_static docstring, "Choosing parameters for
  CPU inference": "x86/x64 CPU without VNNI: QUInt8 activations, QInt8 weights,
  reduce_range=True"; its guide (docs/performance/model-optimizations/quantization.md):
  "Reduce-range will quantize the weights to 7-bits. It is designed for the U8S8 format on
  AVX2 and AVX512 (non-VNNI) machines to mitigate saturation issues."
- avx512-vnni, amx: the same docstring: "x86/x64 CPU with VNNI: QUInt8 activations, QInt8
  weights with reduce_range=False"; the guide: "This is not needed on machines supporting
  VNNI" and "There is no such issue on other CPU architectures (x64 with VNNI and ARM)".
  Activations stay uint8: on x86 MLAS has no S8S8 convolution kernel and its S8S8 GEMM is
  the portable one except on AVX-VNNI-INT8, and ORT fuses int8-activation QDQ only on ARM
  (QDQIsInt8Allowed() in qdq_selector_action_transformer.h). With AMX, MLAS sends u8s8
  GEMMs to MlasGemmU8S8DispatchAmx (platform.cpp): the layout is the VNNI one.
- arm-dotprod: the docstring: "ARM CPU: QInt8 activations and QInt8 weights with
  reduce_range=False ... symmetric is often preferred by ARM-optimized kernels"; the guide:
  "S8S8 with QDQ is the default setting and balances performance and accuracy. It should be
  the first choice" (QDQ, not QOperator). MLAS on ARM64 with dot product:
  MlasGemmS8S8DispatchSdot and MlasConvSymS8DispatchDot.

Only the avx2 row is measured on this machine; the others are built as ORT's guidance says
and must pass the gate on a CPU of their own target, or on their emulation elsewhere (their
kernels do not exist on AVX2, where an 8-bit engine saturates and the gate would judge the
wrong arithmetic; int8_emulation.py computes theirs exactly: every layout here sums in int32
without saturating, AVX2's by its 7-bit weights).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.cpu_isa import TARGETS, this_cpu_target

# The early EfficientNet blocks of the default model: the widest activation ranges, the
# ones AVX2 saturation hurt most (patterns match no node of other families: harmless there).
AVX2_FLOAT_PATTERNS = ("/encoder/_conv_stem/*", "/encoder/_blocks.[0-3]/*")


@dataclass(frozen=True)
class CpuLayout:
    """What the ``cpu`` variant quantizes, and how, for one target."""

    activations: str  # static graphs' activation type: "uint8" (asymmetric) or "int8" (symmetric)
    reduce_range: bool  # 7-bit weights (static and dynamic graphs)
    float_patterns: tuple[str, ...]  # node globs kept float on top of --exclude
    why: str

    @property
    def symmetric(self) -> bool:
        return self.activations == "int8"

    def record(self) -> dict:
        """For the manifest's quantization section."""
        return asdict(self) | {"float_patterns": list(self.float_patterns)}


_X86_8BIT = CpuLayout("uint8", False, (), "VNNI/AMX accumulate u8 x s8 in int32: 8-bit weights, whole encoder int8")
LAYOUTS: dict[str, CpuLayout] = {
    "avx2": CpuLayout("uint8", True, AVX2_FLOAT_PATTERNS,
                      "vpmaddubsw saturates u8 x s8 pair sums in int16: 7-bit weights, stem and blocks 0-3 float "
                      "(measured on an AVX2 EPYC)"),
    "avx512-vnni": _X86_8BIT,
    "amx": _X86_8BIT,
    "arm-dotprod": CpuLayout("int8", False, (), "sdot/udot do not saturate; S8S8 QDQ is onnxruntime's ARM choice"),
}
assert set(LAYOUTS) == set(TARGETS)


def resolve_target(target: str | None) -> str:
    """``--target`` (None or "auto": this CPU's) -> a known target, or a one-line refusal."""
    if target in (None, "auto"):
        detected = this_cpu_target()
        if detected is None:
            raise EdgeVLMError("cannot tell this CPU's instruction set (no /proc/cpuinfo); "
                               f"pass --target {'|'.join(TARGETS)}")
        return detected
    layout_for(target)  # refuses an unknown one
    return target


def layout_for(target: str) -> CpuLayout:
    if target not in LAYOUTS:
        raise EdgeVLMError(f"unknown --target {target!r}; choose auto, {', '.join(TARGETS)}")
    return LAYOUTS[target]
