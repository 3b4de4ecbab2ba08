"""The "skimage" group of the out-of-domain set: sample photos and scans that ship inside
scikit-image (a dev dependency; the group is empty, with a warning, where it is not
installed). Nothing is downloaded: only images whose files are inside the package are used.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from edgevlm.data.ood_image import OODImage, to_uint8

log = logging.getLogger(__name__)

MAX_SIDE = 640  # larger skimage photos are shrunk to this longest side
SKIMAGE_NO_TERMS = "scikit-image sample data (BSD-3-Clause package); its docstring states no other terms"

# skimage.data loaders -> terms, as each loader's docstring states them (scikit-image 0.26).
# Left out: camera and astronaut (people), lfw_subset (faces), retina and skin (human
# tissue), stereo_motorcycle (no terms stated for Middlebury data), and all that need a download.
SKIMAGE_IMAGES = {
    "coffee": "CC0 (Rachel Michetti)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "rocket": "public domain (SpaceX)",
    "moon": SKIMAGE_NO_TERMS,
    "coins": "no known copyright restrictions (Brooklyn Museum)",
    "page": SKIMAGE_NO_TERMS,
    "horse": "CC0 (Andreas Preuss, openclipart)",
    "hubble_deep_field": "public domain (NASA)",
    "immunohistochemistry": "no known copyright restrictions (CMMI)",
    "brick": "CC0 (CC0Textures)",
    "grass": "CC0 (linolafett, DeviantArt)",
    "gravel": "CC0 (CC0Textures)",
    "checkerboard": SKIMAGE_NO_TERMS,
    "clock": "public domain (Stefan van der Walt)",
    "logo": SKIMAGE_NO_TERMS,
    "text": "public domain (Wikipedia)",
    "colorwheel": SKIMAGE_NO_TERMS,
    "cell": "CC0 (Paul Mueller et al.)",
    "microaneurysms": "CC0 (Andreas Maier)",
}


def _to_bgr(pixels: np.ndarray) -> np.ndarray:
    """skimage's bool / grey / RGB / RGBA array -> (H, W, 3) uint8 BGR, longest side <= MAX_SIDE."""
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    if pixels.shape[2] == 4:  # composite over white paper
        alpha = pixels[..., 3:].astype(np.float32) / 255.0
        pixels = to_uint8(pixels[..., :3] * alpha + 255.0 * (1.0 - alpha))
    image = np.ascontiguousarray(pixels[..., ::-1])  # RGB -> BGR
    scale = MAX_SIDE / max(image.shape[:2])
    if scale < 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def skimage_images() -> list[OODImage]:
    """One OODImage per SKIMAGE_IMAGES entry, in its order; [] without scikit-image."""
    try:
        import skimage
        from skimage import data
    except ImportError:
        log.warning("scikit-image is not installed: the skimage group is empty (pip install scikit-image)")
        return []
    return [OODImage(f"skimage_{name}", "skimage", f"skimage.data.{name}() (scikit-image {skimage.__version__})",
                     licence, _to_bgr(getattr(data, name)())) for name, licence in SKIMAGE_IMAGES.items()]
