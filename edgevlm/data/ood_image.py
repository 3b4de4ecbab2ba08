"""One image of the out-of-domain set (``OODImage``) and what the modules that draw such
images share: the frame size, the licence line of generated images, pixel helpers.

The drawers are ``edgevlm.data.synthetic_scenes``, ``edgevlm.data.bad_frames`` and
``edgevlm.data.skimage_samples``; ``edgevlm.data.ood_images`` writes them all to a folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_H, FRAME_W = 480, 640  # drawn frames are VGA, like a camera's
# Written into ood.json: it names the module that built the set, which is still the entry point.
GENERATED = "generated (edgevlm.data.ood_images, fixed seed); no third-party rights"


@dataclass(frozen=True)
class OODImage:
    name: str  # file stem, unique in the set
    group: str  # "skimage", "synthetic" or "nothing"
    source: str
    licence: str
    image: np.ndarray  # (H, W, 3) uint8 BGR
    issue: str | None = None  # "nothing" group: what assess_frame must report


def gaussian_noise(rng: np.random.Generator, shape: tuple, sigma: float) -> np.ndarray:
    """Zero-mean noise of ``shape``, float32, standard deviation ``sigma`` grey levels."""
    return rng.normal(0.0, sigma, shape).astype(np.float32)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float pixels -> uint8, rounded and clipped to 0-255 (same shape)."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
