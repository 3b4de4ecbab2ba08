"""Photo -> encoder input, in numpy + OpenCV. Training uses this same code, so the runtime's
preprocessing is identical to training's by construction.

A file's width and height are read from its header (runtime/image_header.py: JPEG and PNG
by hand, other formats with Pillow; no pixels decoded) and checked against a pixel limit
before OpenCV decodes it: a 20000 x 20000 PNG is 1.2 MB on disk and 1.2 GB decoded (2.4 GB
peak RSS measured), enough to kill a 4 GB Jetson.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.area_shrink import area_shrink
from edgevlm.runtime.image_header import image_header_size
from edgevlm.runtime.pixel_layout import FLOAT_NCHW, UINT8_S2D2, lookup_table, space_to_depth

_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}

MAX_PIXELS_ENV = "EDGEVLM_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 50_000_000  # 50 MP: above any phone camera (~48 MP); 150 MB decoded as BGR
# The header is read first, not limited with OpenCV's OPENCV_IO_MAX_IMAGE_PIXELS. Measured (Pillow read it then),
# `edgevlm caption` of a 20000x20000 PNG (AMD EPYC, 2 cores): before, 2399 MB peak RSS and 9.0 s
# decoding it; with this check, 112 MB and 0.9 s (Pillow's header read alone: 45 MB, 0.07 s).
# OpenCV's variable gave the same saving but is read once when the library loads (setting it
# after `import cv2` changes nothing), is process-wide, and its error names neither file nor
# size. A file whose header neither reader can read is refused rather than decoded unchecked.


def max_image_pixels() -> int:
    """The pixel limit (width x height): ``$EDGEVLM_MAX_IMAGE_PIXELS``, else 50 million."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(float(value))  # "1e8" reads as well as "100000000"
    except (ValueError, OverflowError):  # "lots", "nan", "inf"
        limit = 0
    if limit <= 0:
        raise EdgeVLMError(f"{MAX_PIXELS_ENV}={value!r} is not a positive number of pixels; e.g. {MAX_PIXELS_ENV}=100000000")
    return limit


def check_image_pixels(path: str, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) of an image file, read from its header; an EdgeVLMError naming the
    file, its size and the limit when width x height > ``max_pixels`` (default
    ``max_image_pixels()``), or when the header is not one of a known image format."""
    limit = max_pixels or max_image_pixels()
    size = image_header_size(path)
    if size is None:
        detail = "an empty file" if os.path.getsize(path) == 0 else "not an image or corrupt"
        raise EdgeVLMError(f"cannot decode image {path}: {detail}; use a JPEG/PNG file")
    width, height = size
    if width * height > limit:
        raise EdgeVLMError(f"image {path} is {width}x{height} ({width * height / 1e6:.0f} megapixels), over the "
                           f"{limit / 1e6:g}-megapixel limit; shrink it, or raise the limit with "
                           f"{MAX_PIXELS_ENV}={width * height}")
    return width, height


def read_image_bgr(path: str, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file -> (H, W, 3) uint8 BGR, after checking its header's width x height
    against ``max_pixels`` (default ``max_image_pixels()``). Raises EdgeVLMError naming the file."""
    if not os.path.exists(path):
        raise EdgeVLMError(f"image not found: {path}; check the path")
    if os.path.isdir(path):
        raise EdgeVLMError(f"{path} is a folder, not an image file")
    check_image_pixels(path, max_pixels)
    data = np.fromfile(path, dtype=np.uint8)  # imdecode, unlike imread, handles any path encoding
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise EdgeVLMError(f"cannot decode image {path}: not an image or corrupt; use a JPEG/PNG file")
    return image


# An axis at least this many times its target is first halved (see area_resize).
HALVE_FROM = 4


def area_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, C) -> (height, width, C) by area averaging (cv2.INTER_AREA), for shrinking.

    OpenCV's INTER_AREA at a non-integer ratio is scalar code, ~3-4 ns per input pixel on a
    2-core EPYC (on uint8; its float path, which ``area_shrink`` takes for the same pixels,
    ~2.5 ns): 8.5 ms for a 1080p camera frame, 35 ms for a 12-megapixel photo, paid on
    every frame narration embeds. So an axis at least HALVE_FROM x its target is first halved
    (INTER_LINEAR at exactly half averages 2-pixel blocks exactly, at a twentieth of the
    cost; an odd last row or column is dropped: at most 1 / (2 x target) of the axis, 0.2% at
    224), until under that; INTER_AREA does the rest. The two box filters together are a
    little wider than one. Measured on the model (vtest.avi's frames upscaled,
    /work/runs/s38/resize_model2.py), the pooled embedding moves 0.003 / 0.005 / 0.0055 in
    cosine distance at 720p / 1080p / 4K, as far as a 1-pixel camera shift at 1080p moves it
    (0.005) and a third of what the scene gate sees between two frames of a fixed camera
    (0.014 median); halving from 2x instead moved it 4x as far at 1080p. Frames under
    HALVE_FROM x the target on both axes (a 640 x 480 camera, for 224) are resized exactly as
    before. (Training photos are 224 x 224 already: none is resized.)"""
    if width < 1 or height < 1:
        raise ValueError(f"area_resize: target {width}x{height} must be at least 1x1")
    h, w = image.shape[:2]
    while w >= HALVE_FROM * width or h >= HALVE_FROM * height:
        half_w = w // 2 if w >= HALVE_FROM * width else w
        half_h = h // 2 if h >= HALVE_FROM * height else h
        even = image[: 2 * half_h if half_h != h else h, : 2 * half_w if half_w != w else w]
        image = cv2.resize(even, (half_w, half_h), interpolation=cv2.INTER_LINEAR)
        h, w = half_h, half_w
    return area_shrink(image, width, height)  # INTER_AREA's pixels, faster (runtime/area_shrink.py)


def preprocess_bgr(
    image_bgr: np.ndarray,
    image_size: int = 224,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    interpolation: str = "area",
    color_order: str = "RGB",
    scale: float = 1.0 / 255.0,
    layout: str = FLOAT_NCHW,
    pad_value: int = 0,
    pixel_table=None,
) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (3, S, S) float32 in ``color_order``, squashed to S x S,
    (x * scale - mean) / std; with ``layout`` uint8-s2d2 the pixels in ``color_order``,
    looked up in ``pixel_table`` (3 x 256, per colour) if given, as (S/2 + 1, S/2 + 1, 12)
    uint8 blocks (runtime/pixel_layout.py: the graph normalises them)."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise EdgeVLMError(f"expected a colour image (H, W, 3), got shape {image_bgr.shape}")
    if image_bgr.shape[:2] != (image_size, image_size):
        image_bgr = (area_resize(image_bgr, image_size, image_size) if interpolation == "area" else
                     cv2.resize(image_bgr, (image_size, image_size), interpolation=_INTERPOLATION[interpolation]))
    if layout == UINT8_S2D2:
        ordered = np.ascontiguousarray(image_bgr[:, :, ::-1]) if color_order == "RGB" else image_bgr
        if pixel_table is not None:
            ordered = cv2.LUT(ordered, lookup_table(pixel_table))
        return space_to_depth(ordered, pad_value)
    if len(set(std)) == 1:
        # One C++ pass (swap, subtract, scale, HWC -> CHW) instead of five numpy passes over
        # the image: ~1 ms less per frame on a 2-core CPU. (x * scale - mean) / std is
        # computed as (x - mean / scale) * (scale / std): equal within 1.2e-7 (float32).
        # The image is already S x S, so blobFromImage does not resize.
        mean_pixels = tuple(float(m) / scale for m in mean)
        return cv2.dnn.blobFromImage(image_bgr, scale / float(std[0]), (image_size, image_size), mean_pixels,
                                     swapRB=color_order == "RGB", crop=False)[0]  # (3, S, S)
    ordered = image_bgr[:, :, ::-1] if color_order == "RGB" else image_bgr
    pixels = ordered.astype(np.float32) * np.float32(scale)  # (S, S, 3)
    pixels = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))  # (3, S, S)


def preprocess_with(image_bgr: np.ndarray, settings) -> np.ndarray:
    """``preprocess_bgr`` with the fields of a manifest's ``preprocess`` section or a model
    config's PreprocessConfig (fields a config lacks take the defaults)."""
    return preprocess_bgr(image_bgr, settings.image_size, settings.mean, settings.std, settings.interpolation,
                          getattr(settings, "color_order", "RGB"), getattr(settings, "scale", 1.0 / 255.0),
                          getattr(settings, "layout", FLOAT_NCHW), getattr(settings, "pad_value", None) or 0,
                          getattr(settings, "pixel_table", None))
