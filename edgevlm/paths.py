"""Where the shipped assets live inside the installed package (torch-free)."""

from __future__ import annotations

import os

ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")


def default_model_dir() -> str:
    """The shipped PyTorch model folder (config.json + model.safetensors + tokenizer.json)."""
    return os.path.join(ASSETS_DIR, "default_model")


def default_engine_dir() -> str | None:
    """The shipped exported engine, or None until one is exported into the package."""
    path = os.path.join(ASSETS_DIR, "default_engine")
    return path if os.path.isfile(os.path.join(path, "edgevlm.json")) else None


def sample_images_dir() -> str:
    return os.path.join(ASSETS_DIR, "samples")
