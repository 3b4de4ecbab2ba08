"""How a vision graph takes its image: the layouts a manifest's ``preprocess.layout`` names.

- ``NCHW``: float32 (3, S, S), normalised as the model was trained, (x * scale - mean) / std.
  Every FP32 engine, every TensorRT build, every Hugging Face family.
- ``uint8-s2d2``: uint8 pixels, each looked up in the manifest's ``pixel_table`` (the
  integer the graph's input quantization gives that pixel value), the image padded by one
  pixel of ``pad_value`` on every side and cut into 2 x 2 blocks, each block one cell of 12
  channels in (row, column, colour) order: (S/2 + 1, S/2 + 1, 12). The INT8 ``cpu`` variant
  of a graph whose stem is a 3 x 3, stride-2 convolution takes this
  (calibration/stem_space_to_depth.py): the stem becomes a 2 x 2, stride-1 convolution on 12
  channels, which onnxruntime's INT8 kernels run faster than 3 x 3 on 3 channels (145 vs
  219 us, profiled in our vision graph on an AVX-512 VNNI EPYC). Preparing it (table lookup, border, blocks: ~0.09 ms for
  224 x 224) costs what the float blob did.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

FLOAT_NCHW = "NCHW"
UINT8_S2D2 = "uint8-s2d2"
LAYOUTS = (FLOAT_NCHW, UINT8_S2D2)
BLOCK = 2  # the space-to-depth block: the stem's stride


def pixel_dtype(layout: str) -> type:
    """The numpy dtype a layout's pixels have."""
    return np.uint8 if layout == UINT8_S2D2 else np.float32


def pixel_dtype_name(layout: str) -> str:
    """The same as a manifest names it: "uint8" or "float32"."""
    return np.dtype(pixel_dtype(layout)).name


def pixels_shape(layout: str, image_size: int) -> tuple[int, int, int]:
    """One photo's pixels in ``layout``: (3, S, S) or (S/2 + 1, S/2 + 1, 12)."""
    return space_to_depth_shape(image_size) if layout == UINT8_S2D2 else (3, image_size, image_size)


def space_to_depth_shape(image_size: int) -> tuple[int, int, int]:
    """(S/2 + 1, S/2 + 1, 12) for an S x S image (S even)."""
    cells = image_size // BLOCK + 1
    return (cells, cells, BLOCK * BLOCK * 3)


def space_to_depth(image: np.ndarray, pad_value: int) -> np.ndarray:
    """(S, S, 3) uint8, S even -> (S/2 + 1, S/2 + 1, 12) uint8: padded by one pixel of
    ``pad_value``, each 2 x 2 block's pixels side by side in (row, column, colour) order."""
    size = image.shape[0]
    padded = cv2.copyMakeBorder(image, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    cells = size // BLOCK + 1
    # Each block row's two pixels (6 bytes) side by side for its top and bottom rows: one
    # cv2.merge of the even and odd rows, seen as (cells, cells, 6) images (45 us for 224 x 224
    # on a 2-core EPYC, against 125 us for numpy's transpose and copy).
    rows = padded.reshape(cells, BLOCK, cells, BLOCK * 3)
    return cv2.merge([rows[:, 0], rows[:, 1]])


@functools.lru_cache(maxsize=8)
def lookup_table(pixel_table: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """A manifest's (3, 256) per-colour table -> cv2.LUT's table (cached): (256,) where the
    colours share one (44 us for a 224 x 224 frame on a 2-core EPYC), else (1, 256, 3) (103 us)."""
    table = np.asarray(pixel_table, np.uint8)
    return table[0].copy() if (table == table[0]).all() else np.ascontiguousarray(table.T[None])


def mirror_pixels(pixels: np.ndarray, layout: str) -> np.ndarray:
    """pixels (B, ...) in ``layout`` -> the same photos mirrored left-right, same layout.
    For uint8-s2d2 the cells' columns reverse and so do the two columns inside each cell
    (the one-pixel padding is symmetric, so this is exactly the mirror image's layout)."""
    if layout == FLOAT_NCHW:
        return np.ascontiguousarray(pixels[..., ::-1])
    b, h, w, _ = pixels.shape
    cells = pixels.reshape(b, h, w, BLOCK, BLOCK, 3)[:, :, ::-1, :, ::-1, :]
    return np.ascontiguousarray(cells).reshape(pixels.shape)
