"""Model families the exporter knows, detected from a model folder.

Add one: write an ``ExportFamily`` (see captioner.py: its graphs as nn.Module wrappers with
their I/O table, the manifest sections, parity validation, a tiny model for the round-trip
test) and list it in ``EXPORT_FAMILIES``; register its runtime side in
``edgevlm.runtime.families``.
"""

from __future__ import annotations

import os

from edgevlm.errors import EdgeVLMError
from edgevlm.export.families.base import ExportFamily
from edgevlm.export.families.blip import BLIP_EXPORT, BLIP_VQA_EXPORT
from edgevlm.export.families.captioner import CAPTIONER_EXPORT
from edgevlm.export.families.git import GIT_EXPORT
from edgevlm.export.families.vision_encoder_decoder import VED_EXPORT
from edgevlm.fileio import read_json

EXPORT_FAMILIES: dict[str, ExportFamily] = {family.name: family for family in (CAPTIONER_EXPORT, VED_EXPORT, GIT_EXPORT, BLIP_EXPORT, BLIP_VQA_EXPORT)}


def export_family(name: str) -> ExportFamily:
    if name not in EXPORT_FAMILIES:
        raise EdgeVLMError(f"no exporter for model family {name!r}; known: {', '.join(sorted(EXPORT_FAMILIES))}")
    return EXPORT_FAMILIES[name]


def detect_family(model_dir: str) -> ExportFamily:
    """The family whose exporter recognises MODEL_DIR/config.json."""
    config_path = os.path.join(model_dir, "config.json")
    if not os.path.isdir(model_dir):
        raise EdgeVLMError(f"model folder not found: {model_dir}")
    if not os.path.isfile(config_path):
        raise EdgeVLMError(f"{model_dir} is not a model folder: config.json is missing")
    config = read_json(config_path, "a model config")
    for family in EXPORT_FAMILIES.values():
        if family.recognise(model_dir, config):
            return family
    architectures = config.get("architectures") if isinstance(config, dict) else None
    what = f"architecture {', '.join(architectures)}" if architectures else "this model folder"
    raise EdgeVLMError(f"{model_dir}: cannot export {what}; supported families: {', '.join(sorted(EXPORT_FAMILIES))}")


__all__ = ["EXPORT_FAMILIES", "ExportFamily", "detect_family", "export_family"]
