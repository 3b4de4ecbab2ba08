"""One line for onnxruntime's refusal to load a graph, naming the fix where we know it.

onnxruntime's own message is a C++ source location and a constructor signature; the one case
users meet in the field is an engine written by a newer onnx than their onnxruntime reads (a
Jetson's onnxruntime wheel lags PyPI's onnx by months), which only an upgrade or a re-export fixes.
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
                f"onnxruntime reads up to {too_new[2]}; upgrade onnxruntime (pip install -U onnxruntime), or export "
                "the engine again with an onnx package no newer than this onnxruntime")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"onnxruntime cannot load {path}: {first}"
