"""Strict JSON <-> frozen dataclass conversion for the manifest, driven by the type hints.

Written here rather than taken from pydantic or dacite: the runtime installs on a Jetson
with numpy, onnxruntime and OpenCV only, and what we need is small: refuse unknown,
missing and wrongly typed fields with the field's dotted path in the message.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

from edgevlm.errors import EdgeVLMError


# A manifest parses ~50 sections per engine (a TensorSpec per graph input and output), and
# resolving a class's string annotations each time took ~10 of an engine open's 60 ms.
_type_hints = functools.lru_cache(maxsize=None)(typing.get_type_hints)


def _fail(where: str, path: str, problem: str) -> None:
    raise EdgeVLMError(f"{where}: {path} {problem}; re-export the engine with this edgevlm")


def _parse(kind, value, where: str, path: str):
    """``value`` (parsed JSON) as type ``kind``; EdgeVLMError naming ``path`` otherwise."""
    if kind is Any:
        return value
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: X's own message names the bad field
            return _parse(options[0], value, where, path)
        for option in options:
            try:
                return _parse(option, value, where, path)
            except EdgeVLMError:
                continue
        _fail(where, path, f"is {value!r}, expected {' or '.join(getattr(o, '__name__', str(o)) for o in options)}")
    if dataclasses.is_dataclass(kind):
        return parse_section(kind, value, where, path)
    if origin is tuple:
        if not isinstance(value, list):
            _fail(where, path, f"is {type(value).__name__}, expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(args[0], item, where, f"{path}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            _fail(where, path, f"has {len(value)} items, expected {len(args)}")
        return tuple(_parse(a, item, where, f"{path}[{i}]") for i, (a, item) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            _fail(where, path, f"is {type(value).__name__}, expected an object")
        return {key: _parse(args[1], item, where, f"{path}.{key}") for key, item in value.items()}
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (str, bool) and isinstance(value, kind):
        return value
    _fail(where, path, f"is {value!r}, expected {getattr(kind, '__name__', kind)}")


def parse_section(cls, data, where: str, path: str = "", skip: tuple[str, ...] = ()):
    """A JSON object -> dataclass ``cls``: every key known, every required key present."""
    label = path or "the manifest"
    if not isinstance(data, dict):
        _fail(where, label, f"is {type(data).__name__}, expected an object")
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise EdgeVLMError(f"{where}: unknown field {(path + '.' if path else '') + unknown[0]!r}: this edgevlm "
                           "would ignore it; upgrade edgevlm, or re-export the engine with this one")
    values = {}
    for name, f in fields.items():
        dotted = f"{path}.{name}" if path else name
        if name in data:
            values[name] = _parse(hints[name], data[name], where, dotted)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            _fail(where, dotted, "is missing")
    try:
        return cls(**values)
    except ValueError as exc:  # a section's own checks (HFImageSpec, HFGeneration)
        _fail(where, label, f"is invalid: {exc}")


def _to_json(value):
    if dataclasses.is_dataclass(value):
        return section_json(value)
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def section_json(obj, skip: tuple[str, ...] = ()) -> dict:
    """Dataclass -> JSON object in field order; optional fields left at None are omitted."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in skip or (value is None and f.default is None):
            continue
        out[f.name] = _to_json(value)
    return out
