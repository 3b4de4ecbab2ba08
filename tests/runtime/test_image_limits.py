"""Hostile image files (issue 16): the pixel limit is checked from the header before any
decoding, so a 20000 x 20000 PNG (1.2 MB on disk, 1.2 GB decoded) costs no memory."""

import os
import sys

import cv2
import numpy as np
import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.preprocess import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, check_image_pixels, max_image_pixels, read_image_bgr
from tests.support import SAMPLE_PHOTOS, peak_rss_mb, write_png_bomb


@pytest.fixture(scope="module")
def png_bomb(tmp_path_factory):
    return write_png_bomb(str(tmp_path_factory.mktemp("bomb") / "bomb.png"))


def test_the_bomb_is_small_on_disk_and_huge_in_its_header(png_bomb):
    assert os.path.getsize(png_bomb) < 2_000_000
    assert check_image_pixels(png_bomb, max_pixels=10**9) == (20000, 20000)


def test_a_20000x20000_png_is_refused_naming_file_size_limit_and_fix(png_bomb):
    with pytest.raises(EdgeVLMError) as caught:
        read_image_bgr(png_bomb)
    assert str(caught.value) == (f"image {png_bomb} is 20000x20000 (400 megapixels), over the 50-megapixel limit; "
                                 f"shrink it, or raise the limit with {MAX_PIXELS_ENV}=400000000")


def test_caption_refuses_the_bomb_before_decoding_it(png_bomb, tiny_engine_master):
    """Decoding it peaks at ~2.4 GB (measured); refused from the header, the whole command
    stays near its usual size."""
    peak, result = peak_rss_mb([sys.executable, "-m", "edgevlm.cli.main", "caption", png_bomb, SAMPLE_PHOTOS[0],
                                "--engine", tiny_engine_master])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: image {png_bomb} is 20000x20000 (400 megapixels), over the 50-megapixel limit; "
        f"shrink it, or raise the limit with {MAX_PIXELS_ENV}=400000000"]
    assert result.stdout.startswith(f"{SAMPLE_PHOTOS[0]}: ")  # the next file is still captioned
    assert peak < 500, f"peak RSS {peak:.0f} MB: the image was decoded"


def test_the_limit_is_an_argument_or_an_environment_variable(tmp_path, monkeypatch):
    path = str(tmp_path / "wide.png")
    cv2.imwrite(path, np.zeros((10, 300, 3), np.uint8))
    assert read_image_bgr(path).shape == (10, 300, 3)
    with pytest.raises(EdgeVLMError, match=r"is 300x10 .* over the 0.002-megapixel limit"):
        read_image_bgr(path, max_pixels=2000)
    monkeypatch.setenv(MAX_PIXELS_ENV, "2999")
    assert max_image_pixels() == 2999
    with pytest.raises(EdgeVLMError, match="raise the limit with EDGEVLM_MAX_IMAGE_PIXELS=3000"):
        read_image_bgr(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "3000")
    assert read_image_bgr(path).shape == (10, 300, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(EdgeVLMError, match="EDGEVLM_MAX_IMAGE_PIXELS='lots' is not a positive number"):
        read_image_bgr(path)
    monkeypatch.delenv(MAX_PIXELS_ENV)
    assert max_image_pixels() == DEFAULT_MAX_PIXELS == 50_000_000


@pytest.mark.parametrize("content, detail", [
    (b"", "an empty file"),
    (b"hello, not an image", "not an image or corrupt"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 10, "not an image or corrupt"),  # a PNG signature, then nothing
])
def test_empty_and_broken_files_are_one_line(tmp_path, content, detail):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(EdgeVLMError) as caught:
        read_image_bgr(str(path))
    assert str(caught.value) == f"cannot decode image {path}: {detail}; use a JPEG/PNG file"


def test_a_truncated_jpeg_with_a_good_header_is_refused_by_the_decoder(tmp_path):
    data = open(SAMPLE_PHOTOS[0], "rb").read()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:2000])  # the header (and so the size) is there, the pixels are not
    assert check_image_pixels(str(path)) == (512, 512)
    with pytest.raises(EdgeVLMError) as caught:
        read_image_bgr(str(path))
    assert str(caught.value) == f"cannot decode image {path}: not an image or corrupt; use a JPEG/PNG file"


def test_a_video_whose_frames_are_over_the_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    """Frames are checked from the container's header too: FFmpeg would allocate each one."""
    from edgevlm.runtime.sources import FrameSource
    from tests.support import make_video

    video = make_video(str(tmp_path / "clip.avi"), seconds=0.5, size=(64, 48))
    monkeypatch.setenv("EDGEVLM_MAX_IMAGE_PIXELS", "3000")  # 64x48 = 3072 pixels
    with pytest.raises(EdgeVLMError, match=r"video .*clip.avi has 64x48 frames .* EDGEVLM_MAX_IMAGE_PIXELS=3072"):
        with FrameSource(video) as source:
            next(iter(source.frames()))
    monkeypatch.setenv("EDGEVLM_MAX_IMAGE_PIXELS", "3072")
    with FrameSource(video) as source:
        assert next(iter(source.frames())).image.shape == (48, 64, 3)
