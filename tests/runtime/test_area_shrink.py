"""area_shrink gives exactly the bytes cv2.resize(INTER_AREA) gives, on every path it takes."""

import cv2
import numpy as np
import pytest

from edgevlm.runtime.area_shrink import area_shrink


def _photo_like(rng, height: int, width: int) -> np.ndarray:
    """Smooth content with edges (random noise alone never lands a box sum on a rounding tie)."""
    small = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    image[height // 3 : height // 2] = 255  # a flat bright band: many equal sums
    image[:, width // 4] = 0
    return image


SIZES = [(375, 500), (300, 451), (480, 640), (270, 480), (225, 225), (224, 300), (300, 224), (672, 896),
         (448, 448), (449, 447), (1000, 333)]


@pytest.mark.parametrize("height,width", SIZES)
@pytest.mark.parametrize("target", [(224, 224), (160, 107), (37, 53)])
def test_same_bytes_as_opencv_inter_area(height, width, target):
    rng = np.random.default_rng(height * 7 + width)
    for image in (_photo_like(rng, height, width), rng.integers(0, 256, (height, width, 3), dtype=np.uint8)):
        expected = cv2.resize(image, target, interpolation=cv2.INTER_AREA)
        shrunk = area_shrink(image, *target)
        assert shrunk.dtype == np.uint8 and shrunk.shape == expected.shape
        np.testing.assert_array_equal(shrunk, expected)


def test_grey_and_growing_and_float_inputs_match_opencv():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (301, 377), dtype=np.uint8)
    np.testing.assert_array_equal(area_shrink(grey, 224, 224), cv2.resize(grey, (224, 224), interpolation=cv2.INTER_AREA))
    small = rng.integers(0, 256, (100, 300, 3), dtype=np.uint8)  # one axis grows: OpenCV interpolates
    np.testing.assert_array_equal(area_shrink(small, 224, 224), cv2.resize(small, (224, 224), interpolation=cv2.INTER_AREA))
    floats = rng.random((301, 377, 3), dtype=np.float32)
    np.testing.assert_array_equal(area_shrink(floats, 224, 224), cv2.resize(floats, (224, 224), interpolation=cv2.INTER_AREA))
