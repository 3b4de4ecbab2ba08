"""The captioning engine: manifest + backend + tokenizer + numpy KV cache + search.

Per image: the vision graph once, the cross-K/V graph once, then one decoder-graph run per
generated token on a cache that was allocated once and is written in place.
"""

from __future__ import annotations

import numpy as np

from edgevlm.runtime.backends import create_backend
from edgevlm.runtime.kv_cache import KVCache
from edgevlm.runtime.manifest import load_manifest
from edgevlm.runtime.preprocess import preprocess_bgr
from edgevlm.runtime.search import SearchSettings, beam_search
from edgevlm.runtime.text import CaptionTokenizer


class GraphStepper:
    """Stepper over the decoder graph; rows = images x beams, image-major."""

    def __init__(self, backend, cache: KVCache, cross_k: np.ndarray, cross_v: np.ndarray):
        self.backend, self.cache = backend, cache
        self.cross_k, self.cross_v = cross_k, cross_v
        self._position = np.zeros((), np.int64)  # reused 0-d feed

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray:
        self._position[()] = position
        out = self.backend.run("decoder", {
            "input_ids": tokens.reshape(-1, 1), "position": self._position,
            "cache_k": self.cache.k, "cache_v": self.cache.v, "cross_k": self.cross_k, "cross_v": self.cross_v,
        })
        self.cache.write(position, out["new_k"], out["new_v"])
        return out["logits"][:, 0]

    def reorder(self, rows: np.ndarray) -> None:
        self.cache.reorder(rows)


class CaptionEngine:
    def __init__(self, engine_dir: str, provider: str = "cpu", threads: int | None = None, verify: bool = True,
                 spinning: bool = False):
        self.manifest = load_manifest(engine_dir, verify=verify)
        self.backend = create_backend(self.manifest, provider, threads, spinning)
        self.tokenizer = CaptionTokenizer.load(self.manifest.path("tokenizer"))
        self._caches: dict[int, KVCache] = {}  # rows -> cache, reused across captions

    # --- stages -----------------------------------------------------------------------
    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """(H,W,3) uint8 BGR -> (3,S,S) float32, as in training."""
        p = self.manifest.preprocess
        return preprocess_bgr(image_bgr, p["image_size"], p["mean"], p["std"], p["interpolation"])

    def encode(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pixels (B,3,S,S) -> visual tokens (B,N,d), pooled embedding (B,C)."""
        out = self.backend.run("vision", {"pixels": np.ascontiguousarray(pixels, np.float32)})
        return out["visual_tokens"], out["pooled"]

    def cross_kv(self, visual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """visual tokens (B,N,d) -> cross_k, cross_v (L,B,H,N,hd)."""
        out = self.backend.run("cross_kv", {"visual_tokens": visual})
        return out["cross_k"], out["cross_v"]

    def settings(self, beam_size: int | None = None, **overrides) -> SearchSettings:
        g = self.manifest.generation
        values = dict(beam_size=beam_size or g["beam_size"], max_new_tokens=g["max_new_tokens"],
                      no_repeat_ngram=g["no_repeat_ngram"], length_penalty=g["length_penalty"],
                      banned_ids=tuple(g["banned_ids"]))
        values.update(overrides)
        return SearchSettings(**values)

    def cache_for(self, rows: int) -> KVCache:
        if rows not in self._caches:
            m = self.manifest.model
            self._caches[rows] = KVCache(m["n_layers"], rows, m["n_heads"], m["cache_capacity"], m["head_dim"])
        return self._caches[rows]

    def generate(self, visual: np.ndarray, settings: SearchSettings) -> list[list[int]]:
        """visual tokens (B,N,d) -> token ids per image (no bos/eos)."""
        cross_k, cross_v = self.cross_kv(visual)
        if settings.beam_size > 1:  # beams never leave their image: expand once, never reorder
            cross_k = np.repeat(cross_k, settings.beam_size, axis=1)
            cross_v = np.repeat(cross_v, settings.beam_size, axis=1)
        stepper = GraphStepper(self.backend, self.cache_for(cross_k.shape[1]), cross_k, cross_v)
        tokens = self.manifest.tokens
        return beam_search(stepper, visual.shape[0], tokens["bos"], tokens["eos"], settings)

    # --- whole captions ---------------------------------------------------------------
    def caption_pixels(self, pixels: np.ndarray, beam_size: int | None = None) -> list[str]:
        visual, _ = self.encode(pixels)
        return [self.tokenizer.decode(ids) for ids in self.generate(visual, self.settings(beam_size))]

    def caption_images(self, images_bgr: list[np.ndarray], beam_size: int | None = None) -> list[str]:
        return self.caption_pixels(np.stack([self.preprocess(image) for image in images_bgr]), beam_size)
