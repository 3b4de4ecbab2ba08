"""The engine manifest ``edgevlm.json``: everything the runtime needs, and all it reads.

Loading checks the schema version and every listed file's sha256, so a tampered or
truncated engine is refused before onnxruntime ever sees it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import read_json

MANIFEST_FILE = "edgevlm.json"
SCHEMA_VERSION = 1


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Manifest:
    root: str
    data: dict

    def path(self, file_key: str) -> str:
        return os.path.join(self.root, self.data["files"][file_key]["path"])

    def graph(self, name: str) -> dict:
        return self.data["graphs"][name]

    @property
    def model(self) -> dict:
        return self.data["model"]

    @property
    def preprocess(self) -> dict:
        return self.data["preprocess"]

    @property
    def tokens(self) -> dict:
        return self.data["special_tokens"]

    @property
    def generation(self) -> dict:
        return self.data["generation"]


def load_manifest(engine_dir: str, verify: bool = True) -> Manifest:
    """Read ENGINE_DIR/edgevlm.json; with ``verify`` check every file's sha256."""
    path = os.path.join(engine_dir, MANIFEST_FILE)
    if not os.path.isdir(engine_dir):
        raise EdgeVLMError(f"engine folder not found: {engine_dir}; make one with `edgevlm export MODEL_DIR --out DIR`")
    if not os.path.isfile(path):
        raise EdgeVLMError(f"{engine_dir} is not an engine: {MANIFEST_FILE} is missing (re-run `edgevlm export`)")
    data = read_json(path, "an edgevlm engine manifest")
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise EdgeVLMError(
            f"{path}: unknown schema_version {version!r}; this edgevlm reads version {SCHEMA_VERSION} "
            "(re-export the engine with this version, or upgrade edgevlm)"
        )
    manifest = Manifest(os.path.abspath(engine_dir), data)
    if verify:
        for key, entry in data["files"].items():
            file_path = manifest.path(key)
            if not os.path.isfile(file_path):
                raise EdgeVLMError(f"engine file missing: {file_path} (listed in {MANIFEST_FILE}); re-export the engine")
            if sha256_file(file_path) != entry["sha256"]:
                raise EdgeVLMError(
                    f"engine file {file_path} does not match the sha256 in {MANIFEST_FILE}: "
                    "it was modified or truncated; re-export the engine"
                )
    return manifest
