"""Where the shipped assets live inside the installed package (torch-free)."""

from __future__ import annotations

import os

from edgevlm.errors import EdgeVLMError

ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")


def default_model_dir() -> str:
    """The shipped PyTorch model folder (config.json + model.safetensors + tokenizer.json)."""
    return os.path.join(ASSETS_DIR, "default_model")


def default_engine_dir() -> str | None:
    """The shipped exported engine, or None until one is exported into the package."""
    from edgevlm.runtime.manifest import is_engine_dir

    path = os.path.join(ASSETS_DIR, "default_engine")
    return path if is_engine_dir(path) else None


def resolve_engine(engine_dir: str | None) -> str:
    """``--engine DIR`` as given, else the shipped engine; an install without one is an error."""
    engine_dir = engine_dir or default_engine_dir()
    if engine_dir is None:
        raise EdgeVLMError("no engine: this install ships none; make one with `edgevlm export MODEL_DIR --out DIR` and pass --engine DIR")
    return engine_dir


def sample_images_dir() -> str:
    return os.path.join(ASSETS_DIR, "samples")
