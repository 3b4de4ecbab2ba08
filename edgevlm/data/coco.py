"""COCO-caption-format datasets: an images folder plus a captions JSON.

``{"images": [{"id", "file_name", ...}], "annotations": [{"id", "image_id", "caption"}]}``.
Every problem is one EdgeVLMError naming the file and the entry at fault.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import read_json

MAX_CAPTIONS_BYTES = 1024**3  # 1 GiB: COCO 2017's train captions are 90 MB


@dataclass(frozen=True)
class CaptionedImage:
    image_id: int
    path: str
    captions: tuple[str, ...]


def _load_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise EdgeVLMError(f"captions file not found: {path}")
    data = read_json(path, "COCO caption format", MAX_CAPTIONS_BYTES)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
        data.get("annotations"), list
    ):
        raise EdgeVLMError(
            f"{path} is not COCO caption format: it needs top-level 'images' and 'annotations' lists"
        )
    return data


def _is_id(value) -> bool:
    """COCO ids are numbers (some datasets use strings); anything else cannot key a dict."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def default_images_dir(captions_path: str) -> str:
    """COCO layout here: ``images/`` beside the captions file."""
    return os.path.join(os.path.dirname(os.path.abspath(captions_path)), "images")


def load_coco_captions(captions_path: str, images_dir: str | None = None, check_files: bool = True) -> list[CaptionedImage]:
    """Read a COCO caption file -> images in file order, each with its captions.

    Images without captions are kept (with none): evaluation may caption them anyway.
    """
    data = _load_json(captions_path)
    images_dir = images_dir or default_images_dir(captions_path)
    if check_files and not os.path.isdir(images_dir):
        raise EdgeVLMError(f"images folder not found: {images_dir} (expected beside {captions_path})")
    by_id: dict[int, str] = {}
    order: list[int] = []
    for index, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise EdgeVLMError(f"{captions_path}: images[{index}] needs 'id' and 'file_name'")
        if not _is_id(entry["id"]):
            raise EdgeVLMError(f"{captions_path}: images[{index}]: 'id' must be a number or string, not {entry['id']!r:.40}")
        if not isinstance(entry["file_name"], str) or not entry["file_name"].strip():
            raise EdgeVLMError(f"{captions_path}: images[{index}] (id {entry['id']}): 'file_name' must be a file name")
        if entry["id"] in by_id:
            raise EdgeVLMError(f"{captions_path}: images[{index}] repeats id {entry['id']}")
        path = os.path.join(images_dir, entry["file_name"])
        if check_files and not os.path.isfile(path):
            raise EdgeVLMError(f"{captions_path}: images[{index}] (id {entry['id']}): file not found: {path}")
        by_id[entry["id"]] = path
        order.append(entry["id"])
    captions: dict[int, list[str]] = {image_id: [] for image_id in order}
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise EdgeVLMError(f"{captions_path}: annotations[{index}] needs 'image_id' and a 'caption' string")
        if not _is_id(ann["image_id"]) or ann["image_id"] not in captions:
            raise EdgeVLMError(
                f"{captions_path}: annotations[{index}] (id {ann.get('id')}) points at image_id "
                f"{ann['image_id']!r:.40}, which is not in 'images'"
            )
        captions[ann["image_id"]].append(ann["caption"].strip())
    return [CaptionedImage(i, by_id[i], tuple(captions[i])) for i in order]


def resolve_split(data: str, split: str) -> str:
    """``--data`` may be a folder with captions_{split}.json or a captions file itself."""
    if os.path.isdir(data):
        path = os.path.join(data, f"captions_{split}.json")
        if not os.path.isfile(path):
            raise EdgeVLMError(f"{data} has no captions_{split}.json; pass a COCO caption file or a folder with one")
        return path
    return data
