"""Caption generation with the PyTorch model, through the runtime's numpy search code."""

from __future__ import annotations

import numpy as np
import torch

from edgevlm.config import ModelConfig
from edgevlm.models.captioner import Captioner
from edgevlm.runtime.search import SearchSettings, answer_search, beam_search
from edgevlm.runtime.text import MAX_ANSWER_TOKENS


class TorchStepper:
    """Decoder steps on a fixed-capacity self-attention cache (L, R, H, S, hd), R = images x beams."""

    def __init__(self, model: Captioner, visual: torch.Tensor, beam_size: int, capacity: int):
        self.decoder = model.decoder
        cross_k, cross_v = self.decoder.cross_kv(visual)  # (L, B, H, N, hd), once per image
        # Beams never leave their image, so cross K/V rows are expanded once and never reordered.
        self.cross_k = cross_k.repeat_interleave(beam_size, dim=1)
        self.cross_v = cross_v.repeat_interleave(beam_size, dim=1)
        cfg = self.decoder.cfg
        shape = (cfg.n_layers, self.cross_k.shape[1], cfg.n_heads, capacity, cfg.head_dim)
        self.cache_k = torch.zeros(shape)
        self.cache_v = torch.zeros(shape)

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray:
        ids = torch.from_numpy(tokens).unsqueeze(1)  # (R, 1)
        logits, new_k, new_v = self.decoder(ids, self.cross_k, self.cross_v, self.cache_k, self.cache_v, position)
        self.cache_k[:, :, :, position] = new_k[:, :, :, 0]
        self.cache_v[:, :, :, position] = new_v[:, :, :, 0]
        return logits[:, 0].float().numpy()

    def prefill(self, prompts: np.ndarray) -> np.ndarray:
        ids = torch.from_numpy(prompts)  # (R, P)
        length = ids.shape[1]
        logits, new_k, new_v = self.decoder(ids, self.cross_k, self.cross_v, self.cache_k, self.cache_v, 0,
                                            prefix_len=torch.tensor(length))
        self.cache_k[:, :, :, :length] = new_k
        self.cache_v[:, :, :, :length] = new_v
        return logits[:, -1].float().numpy()

    def reorder(self, rows: np.ndarray) -> None:
        index = torch.from_numpy(rows)
        self.cache_k = self.cache_k.index_select(1, index)
        self.cache_v = self.cache_v.index_select(1, index)


def search_settings(cfg: ModelConfig, beam_size: int | None = None, **overrides) -> SearchSettings:
    gen = cfg.generation
    values = dict(
        beam_size=beam_size or gen.beam_size,
        max_new_tokens=min(gen.max_new_tokens, cfg.decoder.max_len - 1),
        no_repeat_ngram=gen.no_repeat_ngram,
        length_penalty=gen.length_penalty,
        banned_ids=(cfg.pad_id, cfg.unk_id, cfg.bos_id) + ((cfg.sep_id,) if cfg.sep_id is not None else ()),
    )
    values.update(overrides)
    return SearchSettings(**values)


@torch.no_grad()
def generate_from_visual(model: Captioner, visual: torch.Tensor, settings: SearchSettings) -> list[list[int]]:
    """visual tokens (B, N, d) -> token ids per image (no bos/eos)."""
    stepper = TorchStepper(model, visual, settings.beam_size, settings.max_new_tokens)
    return beam_search(stepper, visual.shape[0], model.cfg.bos_id, model.cfg.eos_id, settings)


@torch.no_grad()
def generate_from_features(model: Captioner, features: np.ndarray, settings: SearchSettings,
                           batch_size: int = 250) -> list[list[int]]:
    """Cached feature maps (N, C, h, w) -> token ids per image, in batches."""
    out: list[list[int]] = []
    for start in range(0, len(features), batch_size):
        feats = torch.from_numpy(features[start : start + batch_size].astype(np.float32))
        out.extend(generate_from_visual(model, model.projector(feats), settings))
    return out


@torch.no_grad()
def generate_from_pixels(model: Captioner, pixels: torch.Tensor, settings: SearchSettings) -> list[list[int]]:
    visual, _ = model.encode(pixels)
    return generate_from_visual(model, visual, settings)


@torch.no_grad()
def answer_from_visual(model: Captioner, visual: torch.Tensor, prompts: np.ndarray, banned_ids: tuple[int, ...]):
    """visual tokens (R,N,d), one row per question; prompts (R,P) of one length -> Answers."""
    capacity = min(model.cfg.decoder.max_len, prompts.shape[1] + MAX_ANSWER_TOKENS)
    stepper = TorchStepper(model, visual, 1, capacity)
    return answer_search(stepper, prompts, model.cfg.eos_id, capacity - prompts.shape[1], banned_ids)
