"""Encoder inputs and features for training, evaluation and tuning alike (here, not under
training/, so evaluation reads photos as training did without importing training).

The frozen encoder's feature maps are cached once, so training the decoder on a 2-core CPU
costs minutes per epoch instead of hours (the encoder is ~80% of a training step's FLOPs).
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

from edgevlm.config import ModelConfig
from edgevlm.fileio import atomic_path
from edgevlm.models.efficientnet_lite import EfficientNetLite0
from edgevlm.runtime.preprocess import preprocess_with, read_image_bgr

log = logging.getLogger(__name__)


def load_pixels(path: str, cfg: ModelConfig, flip: bool = False) -> np.ndarray:
    """Image file -> (3,S,S) float32, exactly as the runtime preprocesses it; ``flip``:
    mirrored left-right (a training view: the resize is symmetric, so mirroring after it
    equals mirroring the photo)."""
    pixels = preprocess_with(read_image_bgr(path), cfg.preprocess)
    return np.ascontiguousarray(pixels[:, :, ::-1]) if flip else pixels


def _feeds_tap(param_name: str, tap: str) -> bool:
    """Does this encoder weight influence the features at ``tap`` ("head" or "blockN")?"""
    if param_name.startswith(("_conv_stem.", "_bn0.")):
        return True
    if param_name.startswith("_blocks."):
        return tap == "head" or int(param_name.split(".")[1]) <= int(tap.removeprefix("block"))
    return tap == "head"  # _conv_head, _bn1


def _cache_key(paths: list[str], cfg: ModelConfig, encoder: EfficientNetLite0, tap: str, flip: bool = False) -> str:
    h = hashlib.sha256()
    h.update(repr(cfg.preprocess).encode())
    h.update(tap.encode())  # the tap, not cfg.vision: a tap's features serve every config that reads it
    if flip:  # only then: the keys of existing (unflipped) caches stay as they were
        h.update(b"flip")
    for path in paths:
        h.update(path.encode())
        h.update(str(os.path.getsize(path)).encode())
    for name, tensor in encoder.state_dict().items():
        if _feeds_tap(name, tap):  # exactly the weights the tap depends on: a fine-tuned top must not collide
            h.update(name.encode())
            h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def extract_features(paths: list[str], encoder: EfficientNetLite0, cfg: ModelConfig, batch_size: int = 32,
                     desc: str = "features", tap: str | None = None, flip: bool = False) -> np.ndarray:
    """Image files -> feature maps (N, C, h, w) float16 at ``tap`` (default: the configured
    one); ``flip``: of the mirrored photos."""
    tap = tap or cfg.vision.feature
    encoder.eval()
    out = None
    # Decoding JPEGs in a thread overlaps with the convolution (OpenCV releases the GIL).
    with ThreadPoolExecutor(max_workers=1) as pool:
        batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]

        def load_batch(batch: list[str]) -> np.ndarray:
            return np.stack([load_pixels(p, cfg, flip) for p in batch])

        pending = pool.submit(load_batch, batches[0]) if batches else None
        start = 0
        for i in tqdm(range(len(batches)), desc=desc, unit="batch"):
            pixels = pending.result()
            if i + 1 < len(batches):
                pending = pool.submit(load_batch, batches[i + 1])
            feats = encoder.features(torch.from_numpy(pixels), tap).numpy().astype(np.float16)
            if out is None:
                out = np.empty((len(paths),) + feats.shape[1:], dtype=np.float16)
            out[start : start + len(feats)] = feats
            start += len(feats)
    return out


def cached_features(paths: list[str], encoder: EfficientNetLite0, cfg: ModelConfig, cache_dir: str,
                    name: str, tap: str | None = None, flip: bool = False) -> np.ndarray:
    """Feature maps for ``paths`` at ``tap`` (default: the configured one), of the mirrored
    photos when ``flip``, computed once and reused while images, config and encoder weights
    are unchanged."""
    tap = tap or cfg.vision.feature
    path = os.path.join(cache_dir, f"features-{name}-{_cache_key(paths, cfg, encoder, tap, flip)}.npy")
    if os.path.isfile(path):
        log.info("reusing cached features %s", path)
        return np.load(path)
    feats = extract_features(paths, encoder, cfg, desc=f"encoding {name} images", tap=tap, flip=flip)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, feats)
    return feats
