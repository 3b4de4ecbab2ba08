"""Shared fixtures: tiny random-init configs, a small generated COCO dataset, a model folder."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

CAPTIONS = [
    "a black dog runs on the grass",
    "a dog plays with a red ball",
    "two children play in the water",
    "a man rides a bike down the street",
    "a woman in a red shirt sits on a bench",
    "a brown dog jumps over a log",
]


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


@pytest.fixture()
def tiny_model_dir(tmp_path, tiny_config):
    """A random-init model folder with a tokenizer trained on CAPTIONS."""
    import dataclasses

    import torch

    from edgevlm.model_io import save_model
    from edgevlm.models.captioner import Captioner
    from edgevlm.tokenizer_training import train_tokenizer

    tokenizer = train_tokenizer(CAPTIONS, min_frequency=1)
    cfg = dataclasses.replace(tiny_config, decoder=dataclasses.replace(tiny_config.decoder, vocab_size=tokenizer.vocab_size))
    torch.manual_seed(0)
    path = str(tmp_path / "model")
    save_model(Captioner(cfg), tokenizer, path)
    return path


SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "edgevlm", "assets", "samples")
