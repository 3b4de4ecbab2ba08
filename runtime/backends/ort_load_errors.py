"""One line for onnxruntime's refusal to load a graph, naming the fix where we know it.

onnxruntime's own message is a C++ source location and a constructor signature. The case we
name: a graph stamped with a newer ONNX IR version than this onnxruntime reads. ``edgevlm
export`` writes IR 8, which every onnxruntime we accept (>= 1.17) reads, so this is a graph
made by other tools (onnx.helper stamps its package's newest IR, 14 for onnx 1.23) or an old
onnxruntime (a Jetson's wheel lags PyPI by months): re-exporting with edgevlm, or a newer
onnxruntime, fixes it.
"""

from __future__ import annotations

import re

import onnxruntime as ort

_IR_TOO_NEW = re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)")


def load_error_line(path: str, exc: BaseException) -> str:
    """``exc`` (raised by ``onnxruntime.InferenceSession(path)``) as one line for an EdgeVLMError."""
    text = str(exc)
    too_new = _IR_TOO_NEW.search(text)
    if too_new:
        return (f"onnxruntime {ort.__version__} cannot load {path}: it is ONNX IR version {too_new[1]} and this "
                f"onnxruntime reads up to {too_new[2]}; export the engine again with `edgevlm export` (IR 8), or "
                "upgrade onnxruntime (onnxruntime-gpu where that is the one installed)")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"onnxruntime cannot load {path}: {first}"
