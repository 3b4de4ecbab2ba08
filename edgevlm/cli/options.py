"""Click options shared by several commands, declared once so they cannot drift apart, and
options generated from config dataclasses, so a new config field is a new flag."""

from __future__ import annotations

import dataclasses

import click

# The runtime commands' engine flags (caption, ask, narrate): same names, choices and help.
engine_option = click.option("--engine", "engine_dir", default=None, type=click.Path(),
                             help="Engine folder (default: the shipped engine).")
provider_option = click.option("--provider", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu",
                               show_default=True)
backend_option = click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt"]), default="onnxruntime",
                              show_default=True, help="onnxruntime (with --provider), or native TensorRT plans "
                              "from `edgevlm build` (--provider is then unused).")
rebuild_option = click.option("--rebuild", is_flag=True, help="With --backend tensorrt: build missing or stale plans "
                              "(about a minute) instead of refusing them.")
threads_option = click.option("--threads", type=click.IntRange(1), default=None, help="onnxruntime intra-op threads.")


def dataclass_options(cls, prefix: str = "", skip: tuple[str, ...] = ()):
    """Decorator adding ``--{prefix}{field}`` for each scalar field of ``cls`` (default None =
    keep the dataclass default). Values arrive as kwargs named ``{prefix}{field}`` with '-' -> '_'."""

    def decorate(func):
        for field in reversed(dataclasses.fields(cls)):
            type_name = field.type if isinstance(field.type, str) else field.type.__name__
            type_name = type_name.removesuffix(" | None")  # optional fields: unset stays None
            if field.name in skip or type_name not in ("int", "float", "str", "bool"):
                continue
            kind = {"int": int, "float": float, "str": str, "bool": bool}[type_name]
            flag = f"--{prefix}{field.name}".replace("_", "-")
            func = click.option(flag, type=kind, default=None, show_default=False,
                                help=f"default {field.default!r}")(func)
        return func

    return decorate


def pick(cls, kwargs: dict, prefix: str = "") -> dict:
    """The kwargs given for ``cls``'s fields (None = not given), keyed by field name."""
    out = {}
    for field in dataclasses.fields(cls):
        value = kwargs.get(f"{prefix}{field.name}")
        if value is not None:
            out[field.name] = value
    return out
