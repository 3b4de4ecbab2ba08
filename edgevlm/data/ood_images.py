"""A small, deterministic out-of-domain image set: nothing like Flickr8k (people and dogs
outdoors) and with NO person and NO dog in any image, so every "man" or "dog" a captioner
says about it is invented.

    python -m edgevlm.scripts.ood_images OUT_DIR                       # JPEGs + OUT_DIR/ood.json
    python -m edgevlm.scripts.ood_images --check-quality [--data DIR]  # measure frame_quality

Groups:
- skimage:   sample photos and scans that ship inside scikit-image (a dev dependency; the
             group is empty, with a warning, where it is not installed). Nothing is
             downloaded: only images whose files are inside the package are used.
- synthetic: scenes drawn with OpenCV from fixed seeds: shapes, gradients, stripes, noise
             textures, text on paper, a simple room with a table and objects.
- nothing:   frames with nothing to see (black, dark, blown out, blank wall, covered lens,
             blurred), each with the issue ``edgevlm.runtime.frame_quality`` must report.

``OUT_DIR/ood.json`` lists {"file", "group", "source", "licence"} per image, plus "issue"
in the "nothing" group. The folder is written whole or not at all.
"""
# The docstring above is also the script's --help text. Each group is drawn by its own module
# (skimage_samples, synthetic_scenes, bad_frames); this one writes them to a folder; the
# script's --check-quality runs edgevlm.evaluation.frame_quality_check.

from __future__ import annotations

import json
import logging
import os
from collections import Counter

import cv2
import numpy as np

from edgevlm.data.bad_frames import nothing_frames
from edgevlm.data.ood_image import OODImage
from edgevlm.data.skimage_samples import skimage_images
from edgevlm.data.synthetic_scenes import synthetic_scenes
from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import atomic_dir, check_replaceable

log = logging.getLogger(__name__)

JPEG_QUALITY = 90
GROUPS = ("skimage", "synthetic", "nothing")


def ood_images() -> list[OODImage]:
    """Every image of the set, in a fixed order (the skimage group empty without skimage)."""
    return skimage_images() + synthetic_scenes() + nothing_frames()


def encode_jpeg(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 BGR -> JPEG bytes at JPEG_QUALITY (the same pixels give the same bytes)."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise EdgeVLMError(f"cannot encode a {image.shape} image as JPEG")
    return data.tobytes()


def write_ood_set(out_dir: str) -> list[dict]:
    """Write every image as OUT_DIR/<name>.jpg and the listing as OUT_DIR/ood.json; the
    folder appears whole or not at all. -> the listing."""
    check_replaceable(out_dir, "ood.json", "an OOD image set")
    entries = []
    with atomic_dir(out_dir) as tmp:
        for item in ood_images():
            entry = {"file": item.name + ".jpg", "group": item.group, "source": item.source, "licence": item.licence}
            if item.issue is not None:
                entry["issue"] = item.issue
            with open(os.path.join(tmp, entry["file"]), "wb") as f:
                f.write(encode_jpeg(item.image))
            entries.append(entry)
        with open(os.path.join(tmp, "ood.json"), "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=1)
            f.write("\n")
    log.info("wrote %d images to %s: %s", len(entries), out_dir, dict(Counter(e["group"] for e in entries)))
    return entries
