"""Shared CLI plumbing: image arguments -> image file lists."""

from __future__ import annotations

import os

from edgevlm.runtime.sources import images_in


def expand_image_paths(paths: tuple[str, ...]) -> list[str]:
    """Files as given; folders -> their image files, sorted."""
    out = []
    for path in paths:
        out.extend(images_in(path) if os.path.isdir(path) else [path])
    return out
