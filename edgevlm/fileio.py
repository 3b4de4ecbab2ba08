"""Atomic writes: a crash never leaves a half-written file or folder in place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str):
    """Yield a temp path beside ``path``; on success rename it over ``path`` (same filesystem)."""
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path), dir=parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_json(path: str, expected: str = ""):
    """Parse a JSON file; bad JSON is an EdgeVLMError naming the file (and what it should be)."""
    from edgevlm.errors import EdgeVLMError

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeVLMError(f"{path} is not valid JSON ({exc}){'; expected ' + expected if expected else ''}") from exc


def write_json(path: str, data) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")


def check_replaceable(path: str, marker: str, what: str, inputs: tuple[str, ...] = ()) -> None:
    """Refuse to replace a folder that is not an earlier output of the same kind (it has no
    ``marker`` file), or that holds one of the ``inputs``: ``--out runs`` must never delete
    runs/."""
    from edgevlm.errors import EdgeVLMError

    target = os.path.abspath(path)
    for source in inputs:
        source = os.path.abspath(source)
        if source == target or source.startswith(target + os.sep):
            raise EdgeVLMError(f"--out {path} contains the input {source}; write to another folder")
    if os.path.exists(path) and not os.path.isdir(path):
        raise EdgeVLMError(f"--out {path} exists and is not a folder; choose a folder name")
    if os.path.isdir(path) and os.listdir(path) and not os.path.isfile(os.path.join(path, marker)):
        raise EdgeVLMError(f"refusing to replace {path}: it is a non-empty folder but not {what}; "
                           "choose a new or empty folder")


@contextmanager
def atomic_dir(path: str):
    """Yield an empty temp folder beside ``path``; on success it replaces ``path`` whole
    (callers check with ``check_replaceable`` first)."""
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(path), dir=parent)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        for name in os.listdir(tmp):  # some writers (safetensors) create files 0600
            os.chmod(os.path.join(tmp, name), 0o666 & ~_umask())
        if os.path.isdir(path):
            old = tmp + ".old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
