"""The "nothing" group of the out-of-domain set: frames with nothing to see (black, dark,
blown out, blank wall, covered lens, blurred), each with the issue
``edgevlm.runtime.frame_quality`` must report for it.

Some are made from the shipped sample photos (``photo_frame``), the rest drawn from a seed
(``uniform_frame``). ``edgevlm.evaluation.frame_quality_check`` makes many more of both
kinds to measure how often frame_quality catches them.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from edgevlm.data.ood_image import FRAME_H, FRAME_W, GENERATED, OODImage, gaussian_noise, to_uint8
from edgevlm.data.skimage_samples import SKIMAGE_IMAGES
from edgevlm.errors import EdgeVLMError
from edgevlm.paths import sample_images_dir

# The shipped sample photos the "nothing" frames are made from (astronaut shows a person).
BASE_PHOTOS = ("coffee.jpg", "chelsea.jpg", "rocket.jpg")

# Kind of bad frame -> the issue assess_frame must report for it.
BAD_FRAME_ISSUES = {
    "black": "dark", "black_noise": "dark", "dark_photo": "dark",
    "white": "bright", "blown_out": "bright",
    "blank_wall": "blank", "covered": "covered", "blurred_photo": "blurred",
}
DARK_GAIN = 0.05  # photo * 0.05: a room with the light off
# photo * 8, clipped: the sun into the lens. At * 4 a third of the dev photos keep over half
# the frame unclipped and plainly recognisable (so they are rightly captioned); the check
# reports * 2 to * 16 as a sweep.
BLOWN_GAIN = 8.0
BLUR_FRACTION = 0.04  # Gaussian sigma as a share of the longest side: a lens far out of focus


def scale_photo(photo: np.ndarray, gain: float) -> np.ndarray:
    """(H, W, 3) uint8 -> the same photo with every pixel times ``gain``, clipped to 0-255."""
    return to_uint8(photo.astype(np.float32) * gain)


def blur_photo(photo: np.ndarray, fraction: float = BLUR_FRACTION) -> np.ndarray:
    """Gaussian blur with sigma = ``fraction`` of the longest side (kernel ~6 sigma wide)."""
    return cv2.GaussianBlur(photo, (0, 0), fraction * max(photo.shape[:2]))


def _shading(rng: np.random.Generator, strength: float) -> np.ndarray:
    """(H, W, 1) float32 gain around 1: a tilted light plus vignetting, as a lit wall has."""
    y, x = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    x, y = x / FRAME_W - 0.5, y / FRAME_H - 0.5
    tilt = rng.uniform(-1, 1, 2).astype(np.float32)
    gain = 1.0 + strength * (tilt[0] * x + tilt[1] * y) - strength * (x * x + y * y)
    return gain[..., None]


def uniform_frame(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A bad frame not made from a photo: "black", "black_noise", "white", "blank_wall" or
    "covered" -> (FRAME_H, FRAME_W, 3) uint8 BGR."""
    shape = (FRAME_H, FRAME_W, 3)
    if kind == "black":
        return np.zeros(shape, np.uint8)
    if kind == "white":
        return np.full(shape, 255, np.uint8)
    if kind == "black_noise":  # sensor noise at high gain in the dark
        return to_uint8(rng.uniform(2, 10) + gaussian_noise(rng, shape, rng.uniform(2, 6)))
    if kind == "blank_wall":  # grey, white or beige paint, evenly lit, mild noise
        level = rng.uniform(100, 235)
        bgr = level * np.array([rng.uniform(0.8, 1.0), rng.uniform(0.92, 1.0), 1.0], np.float32)
        return to_uint8(bgr * _shading(rng, 0.16) + gaussian_noise(rng, shape, rng.uniform(1, 4)))
    if kind == "covered":  # a finger over the lens: dim, red-orange, brightest in the middle
        red = rng.uniform(90, 190)
        bgr = red * np.array([rng.uniform(0.2, 0.45), rng.uniform(0.35, 0.6), 1.0], np.float32)
        return to_uint8(bgr * _shading(rng, 0.3) + gaussian_noise(rng, shape, rng.uniform(1, 4)))
    raise ValueError(f"unknown uniform frame kind {kind!r}")


def photo_frame(kind: str, photo: np.ndarray) -> np.ndarray:
    """A bad frame made from a real photo: "dark_photo", "blown_out" or "blurred_photo"."""
    if kind == "dark_photo":
        return scale_photo(photo, DARK_GAIN)
    if kind == "blown_out":
        return scale_photo(photo, BLOWN_GAIN)
    if kind == "blurred_photo":
        return blur_photo(photo)
    raise ValueError(f"unknown photo frame kind {kind!r}")


PHOTO_KINDS = ("dark_photo", "blown_out", "blurred_photo")
UNIFORM_KINDS = tuple(k for k in BAD_FRAME_ISSUES if k not in PHOTO_KINDS)


def uniform_rng(kind: str, seed: int) -> np.random.Generator:
    """The generator that draws uniform frame ``kind`` number ``seed``: one stream per (kind, seed)."""
    return np.random.default_rng([UNIFORM_KINDS.index(kind), seed])


def base_photos() -> dict[str, np.ndarray]:
    """The shipped sample photos (name -> (H, W, 3) uint8 BGR); no network, no skimage."""
    photos = {}
    for name in BASE_PHOTOS:
        image = cv2.imread(os.path.join(sample_images_dir(), name), cv2.IMREAD_COLOR)
        if image is None:
            raise EdgeVLMError(f"sample photo {name} is missing from {sample_images_dir()}; reinstall edgevlm")
        photos[os.path.splitext(name)[0]] = image
    return photos


def nothing_frames() -> list[OODImage]:
    """The "nothing to see" group: each photo kind from every base photo, and 1-4 seeds of
    each uniform kind."""
    out = []
    for stem, photo in base_photos().items():
        for kind in PHOTO_KINDS:
            licence = f"derived from a {SKIMAGE_IMAGES[stem]} photo (edgevlm/assets/samples/LICENSE.md)"
            out.append(OODImage(f"nothing_{kind}_{stem}", "nothing", f"edgevlm/assets/samples/{stem}.jpg, {kind}",
                                licence, photo_frame(kind, photo), BAD_FRAME_ISSUES[kind]))
    for kind, seeds in (("black", 1), ("black_noise", 2), ("white", 1), ("blank_wall", 4), ("covered", 4)):
        for seed in range(seeds):
            out.append(OODImage(f"nothing_{kind}_{seed}", "nothing", f"synthetic {kind}", GENERATED,
                                uniform_frame(kind, uniform_rng(kind, seed)), BAD_FRAME_ISSUES[kind]))
    return out
