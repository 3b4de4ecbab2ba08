"""Uploaded images -> (H,W,3) uint8 BGR, with the server's size and pixel limits.

The pixel count is read from the header (``preprocess.image_header_size``, the same reader as
for files: no pixels decoded) before OpenCV decodes,
so a small file that would decode to gigabytes (a PNG bomb) is refused as 413, not run.
"""

from __future__ import annotations

import base64
import binascii
import io

import cv2
import numpy as np

from edgevlm.runtime.preprocess import image_header_size
from edgevlm.runtime.serve.errors import HTTPProblem

NOT_AN_IMAGE = "cannot decode the image: not an image or corrupt; send a JPEG or PNG file"


def image_from_base64(text: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    """A base64 string or ``data:image/...;base64,`` URL -> BGR image."""
    if not isinstance(text, str) or not text:
        raise HTTPProblem(400, '"image" must be a base64 string or a data: URL of a JPEG/PNG image')
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if ";base64" not in header:
            raise HTTPProblem(400, "the image data: URL must be base64-encoded (data:image/jpeg;base64,...)")
    if len(text) * 3 // 4 > max_bytes:
        raise HTTPProblem(413, f"image too large: over {max_bytes // (1024 * 1024)} MB; send a smaller JPEG")
    try:
        data = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise HTTPProblem(400, '"image" is not valid base64; send the file\'s bytes base64-encoded') from None
    return image_from_bytes(data, max_bytes, max_pixels)


def image_from_bytes(data: bytes, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) -> BGR image; 400 when not an image, 413 when too big."""
    if not data:
        raise HTTPProblem(400, "the image is empty; send a JPEG or PNG file")
    if len(data) > max_bytes:
        raise HTTPProblem(413, f"image too large: {len(data) / 1e6:.1f} MB, over the "
                               f"{max_bytes // (1024 * 1024)} MB limit; send a smaller JPEG")
    size = image_header_size(io.BytesIO(data))
    if size is None:
        raise HTTPProblem(400, NOT_AN_IMAGE)
    width, height = size
    if width * height > max_pixels:
        raise HTTPProblem(413, f"image too large: {width}x{height} is over the {max_pixels / 1e6:g}-megapixel "
                               "limit; send a smaller image")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise HTTPProblem(400, NOT_AN_IMAGE)
    return image
