"""An image file's width and height from its header, never decoding pixels.

JPEG and PNG, the formats cameras and phones write, are read here by hand; anything else (and
any JPEG or PNG this reader does not find plain: garbage between markers, no size before the
scan, a zero side) goes to Pillow, as every file did before. Why by hand: Pillow's JPEG plugin
imports ``subprocess``, ``locale`` and TIFF support on first use, for two numbers at a fixed
place in the file. Without it a process that captions a photo peaks at 120.2 MB against
123.9 MB and starts in 0.319 s against 0.327 s (medians of 8 alternating process pairs,
bytecode cached, 2-core AVX2 EPYC; /work/runs/s30/cold_ab.py). The layouts read (ITU T.81 B.1.1-B.2.2 for JPEG's
marker segments and frame header; PNG's signature and IHDR chunk, RFC 2083 3.1 and 4.1.1)
are the ones libjpeg and libpng, which decode the file after this check, read first.
"""

from __future__ import annotations

import os
import struct
import warnings
from typing import BinaryIO

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers (SOF0-SOF15): all of 0xC0-0xCF but DHT (C4), JPG (C8) and DAC (CC)
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM: no length field
# The segments libjpeg reads by their length before a frame header (jdmarker.c read_markers):
# APP0-15, COM, DQT, DHT, DAC, DRI. Any other code (0x00 above all: to libjpeg "FF 00" is not a
# marker, so it scans on byte by byte and would find a frame header this reader skipped) is
# left to Pillow, which scans as libjpeg does.
_JPEG_SEGMENTS = frozenset(range(0xE0, 0xF0)) | {0xFE, 0xDB, 0xC4, 0xCC, 0xDD}
_MAX_SEGMENTS = 512  # a JPEG with more marker segments before its frame is left to Pillow


def image_header_size(source: str | os.PathLike | BinaryIO) -> tuple[int, int] | None:
    """(width, height) from the header of an image file (a path, or a binary file such as an
    upload in ``io.BytesIO``), or None when neither this reader nor Pillow knows the format
    or the header is broken. Reads a few KB."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) and not (hasattr(source, "seekable") and source.seekable()):
        return pillow_header_size(source)  # a stream read once: Pillow buffers it
    try:
        if isinstance(source, str):
            with open(source, "rb") as f:
                size = jpeg_or_png_size(f)
        else:
            size = jpeg_or_png_size(source)
            source.seek(0)
    except OSError:  # unreadable (no permission, an I/O error): None, as Pillow's reader answered
        return None
    return size if size is not None else pillow_header_size(source)


def jpeg_or_png_size(f: BinaryIO) -> tuple[int, int] | None:
    """(width, height) of a plain JPEG or PNG file from its start, else None."""
    f.seek(0)
    head = f.read(24)
    if head.startswith(_PNG_SIGNATURE):
        if len(head) < 24 or head[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", head[16:24])
        return (width, height) if width and height else None
    if head[:2] != b"\xff\xd8":  # SOI
        return None
    f.seek(2)
    for _ in range(_MAX_SEGMENTS):
        if f.read(1) != b"\xff":
            return None  # libjpeg skips such bytes with a warning; Pillow decides
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes before a marker code
            marker = f.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _JPEG_STANDALONE:
            continue
        if code not in _JPEG_FRAMES and code not in _JPEG_SEGMENTS:
            return None  # EOI or SOS before a frame, FF 00, a reserved code: Pillow decides
        segment = f.read(2)
        if len(segment) < 2:
            return None
        length = struct.unpack(">H", segment)[0]
        if code in _JPEG_FRAMES:
            frame = f.read(5)  # sample precision (1), number of lines (2), samples per line (2)
            if length < 8 or len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return (width, height) if width and height else None  # 0 lines: set later by DNL, Pillow decides
        if length < 2:
            return None
        f.seek(length - 2, 1)
    return None


def pillow_header_size(source: str | BinaryIO) -> tuple[int, int] | None:
    """(width, height) as Pillow reads the header of any format it knows, else None."""
    from PIL import Image, UnidentifiedImageError  # here: only files the reader above leaves

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: ours is the check
            with Image.open(source) as image:
                return image.size
    except Image.DecompressionBombError:
        # Pillow refuses past twice its own limit before it hands the size back: read the header
        # through the format's plugin, as Image.open does, without that check.
        if isinstance(source, str):
            with open(source, "rb") as f:
                return _plugin_header_size(f, source)
        return _plugin_header_size(source, "")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def _plugin_header_size(f: BinaryIO, filename: str) -> tuple[int, int] | None:
    from PIL import Image

    f.seek(0)
    prefix = f.read(16)
    for name in Image.ID:
        factory, accept = Image.OPEN[name]
        if accept and not accept(prefix):
            continue
        try:
            f.seek(0)
            return factory(f, filename).size
        except Exception:  # noqa: BLE001 - not this format: try the next, as Image.open does
            continue
    return None
