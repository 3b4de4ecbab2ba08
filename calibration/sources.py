"""Calibration images from an image folder, a COCO caption file, or a video.

Videos are sampled at evenly spaced positions across their whole length, skipping frames
that are near-duplicates of the last one kept (a still camera would otherwise calibrate on
one scene many times). Every problem is an EdgeVLMError: quantizing with ranges that did
not come from real data is never an option.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import cv2
import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.preprocess import read_image_bgr
from edgevlm.runtime.sources import image_files

MIN_IMAGES = 16


@dataclass
class CalibrationSet:
    images: list[np.ndarray]  # (H, W, 3) uint8 BGR
    captions: list[list[str]]  # human captions per image ([] when the source has none)
    names: list[str]
    digest: str  # sha256 over the decoded pixels: identifies the data for the range cache


def _digest(images: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for image in images:
        h.update(str(image.shape).encode())
        h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise EdgeVLMError(f"calibration image {name}: expected 8-bit colour (H, W, 3), got {image.dtype} {image.shape}")
    if min(image.shape[:2]) < 16:
        raise EdgeVLMError(f"calibration image {name}: {image.shape[1]}x{image.shape[0]} is too small to calibrate on")
    return image


def _near_duplicate(a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
    small = [cv2.resize(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
             for x in (a, b)]
    return float(np.abs(small[0] - small[1]).mean()) < threshold


def _from_video(path: str, limit: int, duplicate_threshold: float) -> tuple[list[np.ndarray], list[str]]:
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise EdgeVLMError(f"cannot open calibration video {path}: is it a video file OpenCV's FFmpeg can decode?")
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if total <= 0:
            raise EdgeVLMError(f"calibration video {path} reports no frames")
        images, names = [], []
        # Oversample positions 4x: near-duplicates are skipped, and we still want `limit` frames.
        for index in np.linspace(0, total - 1, num=min(total, limit * 4)).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if not ok:
                continue
            if images and _near_duplicate(frame, images[-1], duplicate_threshold):
                continue
            images.append(frame)
            names.append(f"{path}#frame{index}")
        # Evenly thin to the limit, keeping the spread across the video.
        if len(images) > limit:
            keep = np.linspace(0, len(images) - 1, num=limit).astype(int)
            images, names = [images[i] for i in keep], [names[i] for i in keep]
        return images, names
    finally:
        capture.release()


def load_calibration_set(source: str, limit: int = 200, min_images: int = MIN_IMAGES,
                         exclude: set[str] | None = None, duplicate_threshold: float = 4.0) -> CalibrationSet:
    """``source``: an image folder, a COCO caption JSON (images/ beside it) or a video file.

    ``exclude``: image paths never to use (the accuracy gate's evaluation images).
    """
    if not os.path.exists(source):
        raise EdgeVLMError(f"calibration source not found: {source}; give an image folder, a COCO caption file or a video")
    captions: list[list[str]] = []
    if os.path.isdir(source):
        names = [n for n in image_files(source) if not exclude or os.path.abspath(n) not in exclude][:limit]
        images = [read_image_bgr(n) for n in names]
        captions = [[] for _ in names]
    elif source.lower().endswith(".json"):
        from edgevlm.data.coco import load_coco_captions

        items = [i for i in load_coco_captions(source) if not exclude or os.path.abspath(i.path) not in exclude]
        # Evenly spaced through the file, so the set is not just its first photos.
        items = [items[i] for i in np.linspace(0, len(items) - 1, num=min(limit, len(items))).astype(int)] if items else []
        names, captions = [i.path for i in items], [list(i.captions) for i in items]
        images = [read_image_bgr(n) for n in names]
    else:
        images, names = _from_video(source, limit, duplicate_threshold)
        captions = [[] for _ in names]
    if not images:
        raise EdgeVLMError(f"calibration source {source} is empty: it gave no usable images")
    if len(images) < min_images:
        raise EdgeVLMError(
            f"calibration source {source} gave {len(images)} images; at least {min_images} are needed for "
            "ranges that represent real data (add images, or use a longer or less static video)"
        )
    images = [_check_image(image, name) for image, name in zip(images, names)]
    return CalibrationSet(images, captions, names, _digest(images))
