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
    assert np.abs(ours.astype(float) - direct).mean() < 2.0  # grey levels (INTER_LINEAR all the way: ~10)
    # about as far as the same frame shifted by one pixel (0.6-1.4 grey levels on these)
    shifted = cv2.resize(frame[1:, 1:], (224, 224), interpolation=cv2.INTER_AREA)
    assert np.abs(ours.astype(float) - direct).mean() <= np.abs(shifted.astype(float) - direct).mean() + 0.5


def _halvings_in_numpy(image, width, height):
    """The rule written out: while an axis is at least HALVE_FROM x its target, halve it (odd
    end dropped) into means of 2 (or 2 x 2) pixels rounded half up, as OpenCV's fixed-point
    INTER_LINEAR at exactly half computes them; both axes in one step round once."""
    image = image.astype(np.int64)
    while image.shape[1] >= HALVE_FROM * width or image.shape[0] >= HALVE_FROM * height:
        rows = image.shape[0] >= HALVE_FROM * height
        columns = image.shape[1] >= HALVE_FROM * width
        if rows:
            image = image[: image.shape[0] // 2 * 2]
            image = image[0::2] + image[1::2]
        if columns:
            image = image[:, : image.shape[1] // 2 * 2]
            image = image[:, 0::2] + image[:, 1::2]
        blocks = (2 if rows else 1) * (2 if columns else 1)
        image = (image + blocks // 2) // blocks
    return image.astype(np.uint8)


@pytest.mark.parametrize("height, width, target", [(1081, 1921, (224, 224)), (1080, 1920, (320, 180)),
                                                   (2000, 901, (100, 400)), (4001, 3001, (224, 224))])
def test_big_frames_are_two_pixel_box_halvings_then_inter_area_bit_for_bit(height, width, target):
    frame = _frame(height, width, seed=2)
    expected = cv2.resize(_halvings_in_numpy(frame, *target), target, interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(area_resize(frame, *target), expected)


def test_a_target_under_one_pixel_is_refused():
    with pytest.raises(ValueError, match="at least 1x1"):
        area_resize(_frame(10, 10), 0, 5)


def test_preprocess_uses_it_for_area_only():
    frame = _frame(1080, 1920)
    pixels = preprocess_bgr(frame, 224)
    expected = preprocess_bgr(area_resize(frame, 224, 224), 224)  # already 224: not resized again
    np.testing.assert_array_equal(pixels, expected)
    linear = preprocess_bgr(frame, 224, interpolation="linear")
    np.testing.assert_array_equal(linear, preprocess_bgr(cv2.resize(frame, (224, 224), interpolation=cv2.INTER_LINEAR), 224))
