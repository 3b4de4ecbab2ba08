"""Shared CLI plumbing for PyTorch-model commands: image lists and batched captioning."""

from __future__ import annotations

import os

import numpy as np

from edgevlm.runtime.preprocess import preprocess_bgr, read_image_bgr
from edgevlm.runtime.sources import images_in


def expand_image_paths(paths: tuple[str, ...]) -> list[str]:
    """Files as given; folders -> their image files, sorted."""
    out = []
    for path in paths:
        out.extend(images_in(path) if os.path.isdir(path) else [path])
    return out


def caption_files(model, tokenizer, paths: list[str], beam_size: int | None, batch_size: int = 32,
                  progress: bool = False) -> list[str]:
    """Image files -> captions with the PyTorch model, grounded by its concept head where it
    has one (as the engine's). Files are decoded batch by batch."""
    import torch

    from edgevlm.generate import concept_word_ids, generate_from_pixels, search_settings

    p = model.cfg.preprocess
    settings = search_settings(model.cfg, beam_size)
    concept_ids = concept_word_ids(model, tokenizer)
    captions: list[str] = []
    batches = range(0, len(paths), batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="captioning", unit="batch")
    for start in batches:
        pixels = np.stack([preprocess_bgr(read_image_bgr(f), p.image_size, p.mean, p.std, p.interpolation)
                           for f in paths[start : start + batch_size]])
        ids = generate_from_pixels(model, torch.from_numpy(pixels), settings, concept_ids)
        captions.extend(tokenizer.decode(t) for t in ids)
    return captions
