"""runtime/preprocess.area_resize: INTER_AREA as before for ordinary frames, and for big ones
(an axis at least HALVE_FROM x its target) exact 2-pixel box halvings first, close to it."""

import cv2
import numpy as np
import pytest

from edgevlm.runtime.preprocess import HALVE_FROM, area_resize, preprocess_bgr


def _frame(height, width, seed=0):
    """A camera-like frame: smooth shapes plus noise, uint8 BGR."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 128 + 60 * np.sin(x / 37.0)[..., None] * np.cos(y / 23.0)[..., None] * np.array([1.0, 0.6, -0.8])
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("height, width", [(480, 640), (576, 768), (300, 451), (895, 895)])
def test_frames_under_the_halving_size_are_resized_exactly_as_inter_area(height, width):
    frame = _frame(height, width)
    np.testing.assert_array_equal(area_resize(frame, 224, 224), cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA))


def test_an_exact_multiple_is_inter_area_within_the_halvings_rounding():
    frame = _frame(HALVE_FROM * 224, HALVE_FROM * 224)  # 896: halved once to 448, then INTER_AREA's own 2x
    direct = cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA)
    assert np.abs(area_resize(frame, 224, 224).astype(int) - direct.astype(int)).max() <= 1


@pytest.mark.parametrize("height, width", [(1080, 1920), (720, 1280), (3000, 4000), (1081, 1921), (2160, 240)])
def test_big_frames_stay_close_to_inter_area(height, width):
    frame = _frame(height, width, seed=1)
    ours = area_resize(frame, 224, 224)
    direct = cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA)
    assert ours.shape == direct.shape == (224, 224, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(float) - direct).mean() < 2.0  # grey levels; a 1-pixel shift moves this frame more
    shifted = cv2.resize(frame[1:, 1:], (224, 224), interpolation=cv2.INTER_AREA)
    assert np.abs(ours.astype(float) - direct).mean() <= np.abs(shifted.astype(float) - direct).mean() + 0.5


def test_preprocess_uses_it_for_area_only():
    frame = _frame(1080, 1920)
    pixels = preprocess_bgr(frame, 224)
    expected = preprocess_bgr(area_resize(frame, 224, 224), 224)  # already 224: not resized again
    np.testing.assert_array_equal(pixels, expected)
    linear = preprocess_bgr(frame, 224, interpolation="linear")
    np.testing.assert_array_equal(linear, preprocess_bgr(cv2.resize(frame, (224, 224), interpolation=cv2.INTER_LINEAR), 224))
