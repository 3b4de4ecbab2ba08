"""Photo -> encoder input, in numpy + OpenCV. Training uses this same code, so the runtime's
preprocessing is identical to training's by construction.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from edgevlm.errors import EdgeVLMError

_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


def read_image_bgr(path: str) -> np.ndarray:
    """Decode an image file -> (H, W, 3) uint8 BGR. Raises EdgeVLMError naming the file."""
    if not os.path.exists(path):
        raise EdgeVLMError(f"image not found: {path}; check the path")
    if os.path.isdir(path):
        raise EdgeVLMError(f"{path} is a folder, not an image file")
    data = np.fromfile(path, dtype=np.uint8)  # imdecode, unlike imread, handles any path encoding
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise EdgeVLMError(f"cannot decode image {path}: not an image or corrupt; use a JPEG/PNG file")
    return image


def preprocess_bgr(
    image_bgr: np.ndarray,
    image_size: int = 224,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    interpolation: str = "area",
    color_order: str = "RGB",
    scale: float = 1.0 / 255.0,
) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (3, S, S) float32 in ``color_order``, squashed to S x S,
    (x * scale - mean) / std."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise EdgeVLMError(f"expected a colour image (H, W, 3), got shape {image_bgr.shape}")
    if image_bgr.shape[:2] != (image_size, image_size):
        image_bgr = cv2.resize(image_bgr, (image_size, image_size), interpolation=_INTERPOLATION[interpolation])
    ordered = image_bgr[:, :, ::-1] if color_order == "RGB" else image_bgr
    pixels = ordered.astype(np.float32) * np.float32(scale)  # (S, S, 3)
    pixels = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))  # (3, S, S)


def preprocess_with(image_bgr: np.ndarray, settings) -> np.ndarray:
    """``preprocess_bgr`` with the fields of a manifest's ``preprocess`` section or a model
    config's PreprocessConfig (fields a config lacks take the defaults)."""
    return preprocess_bgr(image_bgr, settings.image_size, settings.mean, settings.std, settings.interpolation,
                          getattr(settings, "color_order", "RGB"), getattr(settings, "scale", 1.0 / 255.0))
