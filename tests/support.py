"""What tests share that is not a fixture: paths, data and video generators, and the fakes
more than one test file uses. Fixtures live in conftest.py (which imports from here); no test
file imports from another test file or from conftest."""

from __future__ import annotations

import json
import os
import time

import cv2
import numpy as np

from edgevlm.export.families.captioner_tiny import CAPTIONS  # noqa: F401  (the tiny model's own captions)
from edgevlm.runtime.engine import Description, Sight

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(REPO_ROOT, "edgevlm", "assets", "samples")
# The four shipped sample photos (astronaut, chelsea, coffee, rocket), in name order.
SAMPLE_PHOTOS = sorted(os.path.join(SAMPLES, name) for name in os.listdir(SAMPLES) if name.endswith(".jpg"))


# --------------------------------------------------------------------------- hand-made ONNX
def onnx_model(graph, opset: int = 17):
    """``onnx.helper.make_model`` stamped IR version 8, as our exported engines are: the helper
    stamps its own newest IR (14 for onnx 1.23), which an onnxruntime older than the onnx
    package refuses to load (1.30 reads up to 13)."""
    from onnx import helper

    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


# --------------------------------------------------------------------------- file timestamps
def after_a_clock_tick(folder) -> None:
    """Wait until a file written now gets a later ctime than files written before: kernels
    before 6.13 move file timestamps once per tick (1-10 ms), so a change within the tick of
    the recording could keep its ctime (production code never records such young files)."""
    probe = os.path.join(str(folder), "tick-probe")
    open(probe, "wb").close()
    start = os.stat(probe).st_ctime_ns
    while os.stat(probe).st_ctime_ns == start:
        time.sleep(0.002)
        with open(probe, "wb") as f:
            f.write(b"x")


# --------------------------------------------------------------------------- generated data
def make_coco_dataset(root: str, split: str, count: int, seed: int = 0) -> str:
    """Write ``count`` random 64x48 JPEGs under root/images and root/captions_{split}.json."""
    rng = np.random.default_rng(seed)
    images_dir = os.path.join(root, "images")
    os.makedirs(images_dir, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        name = f"{split}_{i}.jpg"
        colour = rng.integers(0, 255, size=3)
        pixels = (rng.integers(0, 60, size=(48, 64, 3)) + colour).clip(0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(images_dir, name), pixels)
        images.append({"id": i + 1, "file_name": name, "width": 64, "height": 48})
        for j in range(2):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "caption": CAPTIONS[(i + j) % len(CAPTIONS)]})
    path = os.path.join(root, f"captions_{split}.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations}, f)
    return path


def edit_manifest(engine_dir: str, change) -> None:
    """Apply ``change(dict)`` to ENGINE_DIR/edgevlm.json in place (tests of refused manifests)."""
    path = os.path.join(engine_dir, "edgevlm.json")
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, "w") as f:
        json.dump(data, f)


def write_calibration_crops(folder: str, size: int) -> str:
    """16 distinct photos (the calibration minimum) in FOLDER: four size x size crops of each
    shipped sample."""
    os.makedirs(folder, exist_ok=True)
    for i, path in enumerate(SAMPLE_PHOTOS):
        image = cv2.imread(path)
        h, w = image.shape[:2]
        for j, (y, x) in enumerate([(0, 0), (0, w // 3), (h // 3, 0), (h // 3, w // 3)]):
            crop = cv2.resize(image[y : y + 2 * h // 3, x : x + 2 * w // 3], (size, size))
            cv2.imwrite(os.path.join(folder, f"{i}{j}.jpg"), crop)
    return folder


def make_video(path: str, seconds: float = 2.0, fps: int = 10, size=(64, 48), still: bool = False) -> str:
    """A small MJPG .avi: a moving colour block (or one still frame repeated)."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(int(seconds * fps)):
        frame = np.full((size[1], size[0], 3), 40, np.uint8)
        x = 0 if still else (i * 3) % (size[0] - 16)
        frame[10:30, x : x + 16] = (0, 0, 220)
        writer.write(frame)
    writer.release()
    return path


# Prepended to a subprocess's code: importing torch then raises, as on a machine without it.
# As on a machine without torch: `import torch` raises ModuleNotFoundError and
# importlib.util.find_spec("torch") returns None (libraries such as onnxruntime.tools probe
# with find_spec; a finder that raised there would fail where a real machine passes).
BLOCK_TORCH = "import sys\nsys.modules['torch'] = None\n"


# --------------------------------------------------------------------------- narration fakes
# A fake clock, engine and speech engine for the narration pipeline (runtime/narration tests).
class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class FakeTokenizer:
    def decode(self, ids):
        return ids


class FakeEngine:
    """pooled = mean colour (so a still video is one scene); one caption per dominant colour."""

    tokenizer = FakeTokenizer()
    answers_questions = False  # captions only (test_narrate_questions.py has one that answers)
    reranks = False  # no caption memory: narration searches greedily

    def __init__(self):
        self.decoder_runs = 0

    def preprocess(self, image):
        return image.astype(np.float32)

    def encode(self, pixels):
        return pixels, pixels.mean(axis=(1, 2))

    def see(self, pixels):
        visual, pooled = self.encode(pixels)
        return Sight(visual, pooled)

    def question_sight(self, pixels, questions, sight=None):
        """No concept head: the Sight as captions see it (CaptionEngine's, without one)."""
        return sight if sight is not None else self.see(pixels)

    def settings(self, beam):
        return beam

    def generate(self, visual, settings):
        self.decoder_runs += 1
        scene = ["the sky over the sea", "a dog on grass", "a man in a red shirt"]
        return [scene[int(np.argmax(visual[0].mean(axis=(0, 1))))]]

    def describe_sight(self, sight, beam_size=None, settings=None):
        caption = self.tokenizer.decode(self.generate(sight.visual, settings)[0])
        return [Description(caption, caption, False)]


class FakeSpeech:
    available, player = True, None

    def __init__(self):
        self.said = []

    def synthesize(self, text, wav_path):
        self.said.append(text)
        return False  # no WAV written: text-only narration path

    def stop(self):
        return False


def scene_image(colour: int) -> np.ndarray:
    """An 8x8 frame dominated by one colour channel, textured in 2-pixel blocks so that the
    frame-quality check sees something to caption (a flat colour is "blank" or "covered")."""
    blocks = (np.indices((8, 8)) // 2).sum(0) % 2
    image = (40 + 60 * blocks[..., None]).repeat(3, axis=2).astype(np.uint8)
    image[..., colour] = 140 + 100 * blocks
    return image


# --------------------------------------------------------------------------- hostile files
def write_png_bomb(path: str, width: int = 20000, height: int = 20000) -> str:
    """A valid all-black RGB PNG of width x height (20000 x 20000: 1.2 GB decoded, ~1.2 MB on
    disk), written in ~0.5 s: after a full flush zlib restarts, so one compressed block of
    rows is repeated instead of compressing 1.2 GB."""
    import struct
    import zlib

    rows = 100
    block = (b"\x00" + bytes(width * 3)) * rows  # filter byte 0 + a row of black pixels, 100 times
    compressor = zlib.compressobj(9)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)  # zlib header + block
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)  # the same block, no header
    adler = 1
    for _ in range(height // rows):
        adler = zlib.adler32(block, adler)
    idat = first + again * (height // rows - 1) + b"\x03\x00" + struct.pack(">I", adler)  # empty final block

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


class PickledCode:
    """Unpickling this runs ``touch MARKER``: what a hostile checkpoint carries."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def peak_rss_mb(args: list[str], env: dict | None = None):
    """Run ``args`` under a fresh Python that waits for it; -> (its peak RSS in MB, a
    subprocess.CompletedProcess). getrusage(RUSAGE_CHILDREN) in a fresh process sees only
    that one child."""
    import subprocess
    import sys

    code = ("import json, resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,"
            " r.returncode, r.stdout, r.stderr]))\n")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    peak, returncode, stdout, stderr = json.loads(result.stdout)
    return peak, subprocess.CompletedProcess(args, returncode, stdout, stderr)
