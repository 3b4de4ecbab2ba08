"""Shared fixtures: tiny random-init configs, a small generated COCO dataset, a model folder."""

from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from edgevlm.export.families.captioner_tiny import CAPTIONS  # the tiny model's own captions


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


@pytest.fixture()
def tiny_dataset(tmp_path):
    root = str(tmp_path / "data")
    make_coco_dataset(root, "train", 6, seed=0)
    make_coco_dataset(root, "dev", 3, seed=1)
    return root


@pytest.fixture()
def tiny_config():
    from edgevlm.config import DecoderConfig, ModelConfig, PreprocessConfig

    return ModelConfig(
        decoder=DecoderConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=12, dropout=0.0),
        preprocess=PreprocessConfig(image_size=64),
    )


@pytest.fixture(scope="session")
def tiny_model_master(tmp_path_factory):
    """A random-init model folder with a tokenizer trained on CAPTIONS (built once)."""
    from edgevlm.export.families.captioner_tiny import write_tiny_captioner

    return write_tiny_captioner(str(tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture()
def tiny_model_dir(tmp_path, tiny_model_master):
    """A private copy of the tiny model folder (tests may damage it)."""
    path = str(tmp_path / "model")
    shutil.copytree(tiny_model_master, path)
    return path


@pytest.fixture(scope="session")
def tiny_engine_master(tmp_path_factory, tiny_model_master):
    from edgevlm.export.onnx_export import export_engine

    path = str(tmp_path_factory.mktemp("engines") / "tiny")
    export_engine(tiny_model_master, path)
    return path


@pytest.fixture()
def tiny_engine_dir(tmp_path, tiny_engine_master):
    path = str(tmp_path / "engine")
    shutil.copytree(tiny_engine_master, path)
    return path


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
BLOCK_TORCH = (
    "import sys\n"
    "class Blocker:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ImportError('torch is blocked in this test')\n"
    "sys.meta_path.insert(0, Blocker())\n"
)

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "edgevlm", "assets", "samples")
