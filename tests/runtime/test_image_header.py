"""Image sizes from headers (runtime/image_header.py): JPEG and PNG read by hand agree with
Pillow, anything else or anything odd is Pillow's, and captioning a photo never loads Pillow."""

import io
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.image_header import image_header_size, jpeg_or_png_size, pillow_header_size
from edgevlm.runtime.preprocess import read_image_bgr
from tests.support import SAMPLE_PHOTOS


def _encoded(extension: str, shape=(37, 53, 3), params=()) -> bytes:
    image = np.random.default_rng(0).integers(0, 255, shape, np.uint8)
    ok, data = cv2.imencode(extension, image, list(params))
    assert ok
    return data.tobytes()


def _pillow_jpeg(**options) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (61, 29), (200, 10, 10)).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotated; the header's size is the stored one, as Pillow says
    exif[0x010E] = "x" * 3000  # a long description: the frame header sits past a big APP1 segment
    return exif


PLAIN = {
    "baseline jpeg": _encoded(".jpg"),
    "progressive jpeg": _encoded(".jpg", params=(cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
    "grey jpeg": _encoded(".jpg", shape=(40, 7)),
    "jpeg with exif": _pillow_jpeg(exif=_exif()),
    "jpeg with an icc profile and a comment": _pillow_jpeg(icc_profile=b"\0" * 5000, comment=b"hello"),
    "rgb png": _encoded(".png"),
    "rgba png": _encoded(".png", shape=(9, 300, 4)),
    "16-bit grey png": cv2.imencode(".png", np.zeros((5, 6), np.uint16))[1].tobytes(),
}


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_jpegs_and_pngs_are_read_by_hand_as_pillow_reads_them(name):
    data = PLAIN[name]
    assert jpeg_or_png_size(io.BytesIO(data)) is not None
    assert image_header_size(io.BytesIO(data)) == pillow_header_size(io.BytesIO(data)) == Image.open(io.BytesIO(data)).size


def test_the_shipped_photos_read_by_hand_as_pillow_reads_them():
    for path in SAMPLE_PHOTOS:
        with open(path, "rb") as f:
            assert jpeg_or_png_size(f) == Image.open(path).size == image_header_size(path)


def test_fill_bytes_before_a_marker_are_skipped_and_the_file_still_decodes():
    data = PLAIN["baseline jpeg"]
    filled = data[:2] + b"\xff\xff\xff" + data[2:]  # SOI, fill bytes, then the first marker
    assert jpeg_or_png_size(io.BytesIO(filled)) == (53, 37)
    assert cv2.imdecode(np.frombuffer(filled, np.uint8), cv2.IMREAD_COLOR).shape == (37, 53, 3)


@pytest.mark.parametrize("name, data", [
    ("garbage between segments", PLAIN["baseline jpeg"][:2] + b"\x00\x00" + PLAIN["baseline jpeg"][2:]),
    ("cut before the frame header", PLAIN["jpeg with exif"][:200]),
    ("a png without IHDR first", PLAIN["rgb png"][:12] + b"IDAT" + PLAIN["rgb png"][16:]),
    ("bmp", _encoded(".bmp")),
    ("webp", _encoded(".webp")),
    ("not an image", b"hello, world" * 10),
    ("empty", b""),
])
def test_anything_else_is_left_to_pillow(name, data):
    assert jpeg_or_png_size(io.BytesIO(data)) is None
    assert image_header_size(io.BytesIO(data)) == pillow_header_size(io.BytesIO(data))


def test_a_jpeg_whose_header_claims_60000x60000_is_refused_before_decoding(tmp_path):
    data = bytearray(PLAIN["baseline jpeg"])
    frame = data.index(b"\xff\xc0")  # SOF0: length (2), precision (1), then lines and samples per line
    data[frame + 5 : frame + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bytes(data))
    assert image_header_size(str(path)) == (60000, 60000) == pillow_header_size(str(path))
    with pytest.raises(EdgeVLMError, match=r"is 60000x60000 \(3600 megapixels\), over the 50-megapixel limit"):
        read_image_bgr(str(path))


def test_captioning_a_jpeg_and_a_png_never_imports_pillow(tmp_path, tiny_engine_master):
    png = tmp_path / "photo.png"
    png.write_bytes(PLAIN["rgb png"])
    script = ("import sys\nfrom edgevlm.runtime.engine import CaptionEngine\n"
              "from edgevlm.runtime.preprocess import read_image_bgr\n"
              f"engine = CaptionEngine({tiny_engine_master!r})\n"
              f"for path in ({SAMPLE_PHOTOS[0]!r}, {str(png)!r}):\n    engine.caption_images([read_image_bgr(path)], 1)\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PIL', 'subprocess', 'locale')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_file_that_cannot_be_opened_is_no_image_for_the_header_reader(tmp_path):
    """None, as Pillow's reader answered: the caller's one-line error names the file."""
    assert image_header_size(str(tmp_path / "gone.jpg")) is None
    assert image_header_size(str(tmp_path)) is None  # a folder: IsADirectoryError


def test_ff00_is_not_a_marker_so_a_fake_small_frame_header_cannot_hide_the_real_one():
    """libjpeg scans past "FF 00" byte by byte: the bytes this reader would skip as a segment
    are, to libjpeg, stray bytes and an APP1 holding a fake 8x8 frame header; it decodes the
    real 9000x6000 frame behind them. The reader must not answer 8x8 (found in review)."""
    real = cv2.imencode(".jpg", np.zeros((600, 900, 3), np.uint8))[1].tobytes()
    fake_frame = b"\xff\xc0\x00\x0b\x08\x00\x08\x00\x08\x01\x01\x11\x00"
    content = b"\0" * 10 + fake_frame + b"\0" * 4
    crafted = (b"\xff\xd8\xff\x00\x00\x10" + b"\xff\xe1" + (2 + len(content)).to_bytes(2, "big") + content
               + real[2:])
    assert cv2.imdecode(np.frombuffer(crafted, np.uint8), cv2.IMREAD_COLOR).shape == (600, 900, 3)
    assert jpeg_or_png_size(io.BytesIO(crafted)) is None
    assert image_header_size(io.BytesIO(crafted)) == (900, 600)


def test_a_png_cut_inside_its_header_is_no_image():
    assert image_header_size(io.BytesIO(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00")) is None


def test_path_objects_and_unseekable_streams_are_read(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(PLAIN["baseline jpeg"])
    assert image_header_size(path) == (53, 37)

    class OnePass(io.RawIOBase):
        def __init__(self, data):
            self.data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = self.data.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    assert image_header_size(io.BufferedReader(OnePass(PLAIN["rgb png"]))) == (53, 37)
