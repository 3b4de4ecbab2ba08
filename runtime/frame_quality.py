"""Is there anything to see? A cheap check that runs before the captioner, so a black, blown
out, blurred, covered or blank frame is reported as such instead of captioned: the model,
trained only on real photos, otherwise invents "a black and white dog" in the dark.

    quality = assess_frame(frame_bgr)
    if not quality.usable:
        say(quality.message)  # "It is too dark to see."

All measures are taken on a copy whose longest side is ``WORK_SIDE`` pixels, so they
do not depend on the camera's resolution and cost well under a millisecond per VGA frame.
The checks run in a fixed order and the first that fires names the issue:

1. dark:    almost every pixel is near black.
2. bright:  half the frame or more is clipped white.
Otherwise a frame with fine detail is usable. One without is:
3. covered: flat and dim, or a smooth red glow (a finger over the lens);
4. blank:   flat (one colour, little spread): a wall, a sheet of paper;
5. blurred: not flat, so something is there, but out of focus.

Thresholds were chosen by measurement (``python -m edgevlm.scripts.ood_images --check-quality``):
on the 1,000 Flickr8k dev photos and 100 frames of two real videos none fires, while the
synthetic bad frames of ``edgevlm.data.bad_frames`` are flagged. Low-light or low-contrast
scenes with real content pass: only frames with next to nothing in them are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.area_shrink import area_shrink

# Longest side of the working copy, in pixels. Sharpness is measured at this scale, so a
# 224 px photo and a 1080p frame blurred by the same fraction of their width score alike.
WORK_SIDE = 160

# Every threshold below was read off ``python -m edgevlm.scripts.ood_images --check-quality``:
# "dev" is the 1,000 Flickr8k dev photos (none may fire); the other figures are for the
# synthetic bad frames of edgevlm.data.bad_frames (all must fire).

# dark: at least DARK_MIN_FRACTION of the pixels are at or below DARK_LEVEL (grey 0-255).
# Dev: at most 92.9% (fireworks at night); photo * 0.15 and darker: 100%.
DARK_LEVEL = 40
DARK_MIN_FRACTION = 0.98

# bright: at least BRIGHT_MIN_FRACTION of the pixels are at or above BRIGHT_LEVEL.
# Dev: at most 31% (a child in snow); photo * 4: median 64%. A photo * 4 with less than
# half clipped is still plainly recognisable, so it should be captioned.
BRIGHT_LEVEL = 250
BRIGHT_MIN_FRACTION = 0.5

# Nothing in view: sharpness below BLUR_MAX_SHARPNESS. Sharpness is the variance of the
# Laplacian of the working copy smoothed by a Gaussian of SHARPNESS_SIGMA px; the smoothing
# makes it deaf to sensor noise (noisy black frames and walls score under 0.25). Dev: at
# least 5.7 (a diver in open blue water), 0.5th percentile 17; blurred with sigma = 3% of
# the longest side: at most 2.2 (at 2%, 60% are caught; at 1%, 0.4%).
SHARPNESS_SIGMA = 1.0
BLUR_MAX_SHARPNESS = 2.5

# Which kind of nothing. Flat: spread (largest channel std, grey levels) below
# FLAT_MAX_SPREAD: lit walls with vignetting and noise score 2.4-13.1, blurred photos 16.5 and up.
FLAT_MAX_SPREAD = 15.0
# covered: flat and dim (mean grey below COVERED_MAX_MEAN), or the red glow of a finger over
# the lens: red the largest mean channel, saturation of the mean colour at least
# COVERED_MIN_SATURATION and spread below COVERED_MAX_SPREAD (the glow is brighter in the
# middle). Grey and beige walls: saturation 0.01-0.20; finger glows: 0.55-0.80, spread 3-23.
# Below COVERED_MAX_MEAN is a judgement, not a measurement: a lit wall is brighter than that
# (the synthetic walls: 92-221); a palm, a pocket or a lens cap is darker.
COVERED_MAX_MEAN = 80.0
COVERED_MIN_SATURATION = 0.5
COVERED_MAX_SPREAD = 30.0

ISSUES = ("dark", "bright", "covered", "blurred", "blank")

# What to say for each issue, for speech and for a UI to reuse.
DESCRIPTIONS = {
    "dark": "It is too dark to see.",
    "bright": "The image is washed out; there is too much light.",
    "covered": "The camera seems covered.",
    "blurred": "The image is too blurred to see.",
    "blank": "I only see a blank surface.",
}


@dataclass(frozen=True)
class FrameQuality:
    usable: bool
    issue: str | None  # one of ISSUES, None when usable
    message: str | None  # DESCRIPTIONS[issue], None when usable
    stats: dict = field(default_factory=dict)  # the measured numbers, see measure_frame


def _working_copy(image: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 -> (h, w, C) uint8 averaged down to max(h, w) <= WORK_SIDE."""
    # Halving with INTER_LINEAR averages exact 2x2 blocks, like INTER_AREA, at a quarter of
    # its cost on three channels; INTER_AREA then takes the last step (a factor under 2).
    while max(image.shape[:2]) >= 2 * WORK_SIDE:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    h, w = image.shape[:2]
    scale = WORK_SIDE / max(h, w)
    if scale >= 1.0:
        return image
    return area_shrink(image, max(1, round(w * scale)), max(1, round(h * scale)))  # INTER_AREA's pixels, faster


def measure_frame(image_bgr: np.ndarray) -> dict:
    """(H, W, 3) uint8 BGR (or (H, W) / (H, W, 1) grey) -> the numbers the checks read, plain floats:

    mean_luma: grey level 0-255; dark_fraction, bright_fraction: share of pixels at or below
    DARK_LEVEL and at or above BRIGHT_LEVEL; spread: the largest standard deviation of the
    B, G and R channels (grey levels; colour-blind luminance would call a red disc on a
    green field of the same brightness flat); sharpness: the largest variance over B, G, R
    of the Laplacian of Gaussian (grey levels^2 per px^2 at WORK_SIDE); saturation:
    (max - min) / max of the mean colour, 0-1; red_dominant: 1.0 when red is its largest.
    """
    image = np.ascontiguousarray(image_bgr)  # OpenCV refuses views with negative strides
    if image.dtype != np.uint8:
        raise EdgeVLMError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2 and image.size:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise EdgeVLMError(f"expected an (H, W, 3) BGR image, got shape {image.shape}")
    small = _working_copy(image)  # (h, w, 3) uint8
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)  # (h, w) uint8
    histogram = np.bincount(grey.ravel(), minlength=256) / grey.size  # (256,) share per grey level
    mean_bgr, std_bgr = (v.ravel() for v in cv2.meanStdDev(small))  # (3,), (3,)
    smoothed = cv2.GaussianBlur(small.astype(np.float32), (0, 0), SHARPNESS_SIGMA)  # (h, w, 3)
    _, log_std = cv2.meanStdDev(cv2.Laplacian(smoothed, cv2.CV_32F))  # (3, 1)
    brightest, dullest = float(mean_bgr.max()), float(mean_bgr.min())
    return {
        "mean_luma": float(grey.mean()),
        "dark_fraction": float(histogram[: DARK_LEVEL + 1].sum()),
        "bright_fraction": float(histogram[BRIGHT_LEVEL:].sum()),
        "spread": float(std_bgr.max()),
        "sharpness": float(log_std.max()) ** 2,
        "saturation": (brightest - dullest) / brightest if brightest > 0 else 0.0,
        "red_dominant": 1.0 if mean_bgr[2] >= brightest and brightest > dullest else 0.0,
    }


def classify(stats: dict) -> str | None:
    """The measures of ``measure_frame`` -> the first issue that applies, or None."""
    if stats["dark_fraction"] >= DARK_MIN_FRACTION:
        return "dark"
    if stats["bright_fraction"] >= BRIGHT_MIN_FRACTION:
        return "bright"
    if stats["sharpness"] >= BLUR_MAX_SHARPNESS:
        return None
    flat = stats["spread"] < FLAT_MAX_SPREAD
    glow = (stats["red_dominant"] and stats["saturation"] >= COVERED_MIN_SATURATION
            and stats["spread"] < COVERED_MAX_SPREAD)
    if glow or (flat and stats["mean_luma"] < COVERED_MAX_MEAN):
        return "covered"
    return "blank" if flat else "blurred"


def assess_frame(image_bgr: np.ndarray) -> FrameQuality:
    """(H, W, 3) uint8 BGR camera frame -> FrameQuality; usable=False with the sentence to
    say when there is nothing to caption. Raises EdgeVLMError on a non-image array."""
    stats = measure_frame(image_bgr)
    issue = classify(stats)
    if issue is None:
        return FrameQuality(True, None, None, stats)
    return FrameQuality(False, issue, DESCRIPTIONS[issue], stats)
