"""The uint8 space-to-depth layout: blocks as a naive loop cuts them, mirrors as the mirror
image's, and the manifest rules around it."""

import re

import cv2
import numpy as np
import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.pixel_layout import (FLOAT_NCHW, UINT8_S2D2, mirror_pixels, pixel_dtype, pixels_shape,
                                          space_to_depth)
from edgevlm.runtime.preprocess import preprocess_bgr


def _naive(image, pad):
    size = image.shape[0]
    padded = np.full((size + 2, size + 2, 3), pad, np.uint8)
    padded[1:-1, 1:-1] = image
    cells = size // 2 + 1
    out = np.zeros((cells, cells, 12), np.uint8)
    for i in range(cells):
        for j in range(cells):
            for dy in range(2):
                for dx in range(2):
                    out[i, j, (dy * 2 + dx) * 3:(dy * 2 + dx) * 3 + 3] = padded[2 * i + dy, 2 * j + dx]
    return out


def test_blocks_are_cut_as_a_naive_loop_cuts_them():
    image = np.random.default_rng(0).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    np.testing.assert_array_equal(space_to_depth(image, 128), _naive(image, 128))
    assert pixels_shape(UINT8_S2D2, 10) == (6, 6, 12) and pixels_shape(FLOAT_NCHW, 10) == (3, 10, 10)
    assert pixel_dtype(UINT8_S2D2) == np.uint8 and pixel_dtype(FLOAT_NCHW) == np.float32


@pytest.mark.parametrize("layout", [FLOAT_NCHW, UINT8_S2D2])
def test_the_mirror_of_the_pixels_is_the_pixels_of_the_mirror_image(layout):
    image = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    def pixels(img):
        return preprocess_bgr(img, 16, color_order="BGR", layout=layout, pad_value=128)[None]
    np.testing.assert_array_equal(mirror_pixels(pixels(image), layout), pixels(cv2.flip(image, 1)))


def test_preprocess_gives_raw_pixels_in_the_colour_order_asked():
    image = np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    bgr = preprocess_bgr(image, 8, layout=UINT8_S2D2, color_order="BGR", pad_value=7)
    rgb = preprocess_bgr(image, 8, layout=UINT8_S2D2, color_order="RGB", pad_value=7)
    assert bgr.dtype == np.uint8 and bgr.shape == (5, 5, 12)
    np.testing.assert_array_equal(bgr, _naive(image, 7))
    np.testing.assert_array_equal(rgb, _naive(np.ascontiguousarray(image[:, :, ::-1]), 7))


def test_pixels_are_looked_up_in_the_table_before_the_blocks_are_cut():
    image = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    table = tuple(tuple((v * (c + 2)) % 256 for v in range(256)) for c in range(3))  # per colour, BGR
    looked_up = np.stack([np.asarray(table[c], np.uint8)[image[:, :, c]] for c in range(3)], axis=2)
    np.testing.assert_array_equal(
        preprocess_bgr(image, 8, layout=UINT8_S2D2, color_order="BGR", pad_value=9, pixel_table=table),
        _naive(looked_up, 9))


TABLE = [list(range(256))] * 3


@pytest.mark.parametrize("change, message", [
    ({"layout": UINT8_S2D2, "image_size": 63, "pad_value": 128, "pixel_table": TABLE},
     "preprocess.image_size is 63; layout uint8-s2d2 cuts 2 x 2 blocks: it must be even"),
    ({"layout": UINT8_S2D2, "pixel_table": TABLE}, "preprocess.pad_value is None; layout uint8-s2d2 needs a border"),
    ({"layout": UINT8_S2D2, "pad_value": 128}, "preprocess.pixel_table must be 3 rows of 256 values"),
    ({"layout": UINT8_S2D2, "pad_value": 128, "pixel_table": TABLE[:2]}, "preprocess.pixel_table must be 3 rows"),
    ({"layout": UINT8_S2D2, "pad_value": 128, "pixel_table": TABLE},
     "graphs.vision.inputs.pixels.dtype is 'float32', but layout 'uint8-s2d2' gives uint8"),
    ({"pad_value": 128}, "pad_value and pixel_table go with layout uint8-s2d2, not 'NCHW'"),
])
def test_the_manifest_refuses_what_the_layout_cannot_use(tiny_engine_dir, change, message):
    import json
    import os

    from edgevlm.runtime.manifest import load_manifest

    path = os.path.join(tiny_engine_dir, "edgevlm.json")
    data = json.load(open(path))
    data["preprocess"] |= change
    json.dump(data, open(path, "w"))
    with pytest.raises(EdgeVLMError, match=re.escape(message)):
        load_manifest(tiny_engine_dir)
