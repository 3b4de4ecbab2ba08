"""Model families the runtime can run, keyed by the manifest's ``model.family``.

A family declares its graphs and their I/O table, how a photo becomes its input, and its
tokenizer; the engine dispatches on the manifest's family and refuses an engine whose
graphs do not match the table. Add one: write a ``RuntimeFamily`` (see captioner.py) and
``register_family`` it; its export side registers in ``edgevlm.export.families``.
"""

from __future__ import annotations

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.families.base import RuntimeFamily
from edgevlm.runtime.families.captioner import CAPTIONER
from edgevlm.runtime.families.hf import HF_FAMILIES

FAMILIES: dict[str, RuntimeFamily] = {}


def register_family(family: RuntimeFamily) -> None:
    FAMILIES[family.name] = family


def runtime_family(name: str) -> RuntimeFamily:
    if name not in FAMILIES:
        raise EdgeVLMError(f"this edgevlm cannot run model family {name!r} (model.family in edgevlm.json); "
                           f"it runs: {', '.join(sorted(FAMILIES))}. Upgrade edgevlm or re-export the engine")
    return FAMILIES[name]


register_family(CAPTIONER)
for _family in HF_FAMILIES:
    register_family(_family)

__all__ = ["FAMILIES", "RuntimeFamily", "register_family", "runtime_family"]
