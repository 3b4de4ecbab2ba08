"""Caption generation with the PyTorch model, through the runtime's numpy search code.

A model with a concept head grounds its captions as the engine does: words of concepts the
head is sure are absent from an image are banned for that image (``concept_word_ids`` gives
the token ids; without them captions are what the decoder alone says).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from edgevlm.config import ModelConfig
from edgevlm.errors import EdgeVLMError
from edgevlm.models.captioner import Captioner
from edgevlm.runtime.grounding import caption_bias, concept_token_ids
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
    """The search an engine exported from this model runs (its manifest's generation section)."""
    return cfg.search_defaults().settings(beam_size, **overrides)


def concept_word_ids(model: Captioner, tokenizer) -> list[list[int]] | None:
    """Token ids naming each concept, as the engine builds them from its manifest (words
    outside the vocabulary cannot be generated anyway); None for a model without a head."""
    return None if model.concepts is None else concept_token_ids(tokenizer, model.cfg.concepts.words)


@torch.no_grad()
def concept_probs(model: Captioner, features: torch.Tensor) -> np.ndarray | None:
    """feature map (B,C,h,w) -> P(concept present) (B,K) float32, the vision graph's
    ``concept_probs``; None for a model without a head."""
    if model.concepts is None:
        return None
    return torch.sigmoid(model.concepts(features)).float().numpy()


def _caption_bias(model: Captioner, features: torch.Tensor, concept_ids: list[list[int]] | None) -> np.ndarray | None:
    """(B,V) -inf on the words of concepts below the model's ban_below per image, or None."""
    if concept_ids is None or model.concepts is None:
        return None
    probs = concept_probs(model, features)
    return caption_bias(probs, float(model.cfg.concepts.ban_below), concept_ids, model.cfg.decoder.vocab_size)


@torch.no_grad()
def generate_from_visual(model: Captioner, visual: torch.Tensor, settings: SearchSettings,
                         bias: np.ndarray | None = None) -> list[list[int]]:
    """visual tokens (B, N, d) -> token ids per image (no bos/eos); ``bias`` (B, V) is added
    to every step's log-probabilities (-inf: a word banned for that image)."""
    stepper = TorchStepper(model, visual, settings.beam_size, settings.max_new_tokens)
    return beam_search(stepper, visual.shape[0], model.cfg.bos_id, model.cfg.eos_id, settings, bias)


@torch.no_grad()
def generate_from_features(model: Captioner, features: np.ndarray, settings: SearchSettings,
                           batch_size: int = 250, concept_ids: list[list[int]] | None = None) -> list[list[int]]:
    """Cached feature maps (N, C, h, w) -> token ids per image, in batches; with
    ``concept_ids`` (``concept_word_ids``) grounded by the concept head."""
    out: list[list[int]] = []
    for start in range(0, len(features), batch_size):
        feats = torch.from_numpy(features[start : start + batch_size].astype(np.float32))
        bias = _caption_bias(model, feats, concept_ids)
        out.extend(generate_from_visual(model, model.projector(feats), settings, bias))
    return out


@torch.no_grad()
def generate_from_pixels(model: Captioner, pixels: torch.Tensor, settings: SearchSettings,
                         concept_ids: list[list[int]] | None = None) -> list[list[int]]:
    """pixels (B, 3, S, S) -> token ids per image; with ``concept_ids``
    (``concept_word_ids``) grounded by the concept head, as the engine's captions."""
    features = model.encoder_features(pixels)  # once: the projector and the concept head both read it
    return generate_from_visual(model, model.projector(features), settings, _caption_bias(model, features, concept_ids))


@torch.no_grad()
def answer_from_visual(model: Captioner, visual: torch.Tensor, prompts: np.ndarray, banned_ids: tuple[int, ...]):
    """visual tokens (R,N,d), one row per question; prompts (R,P) of one length -> Answers."""
    capacity = min(model.cfg.decoder.max_len, prompts.shape[1] + MAX_ANSWER_TOKENS)
    stepper = TorchStepper(model, visual, 1, capacity)
    return answer_search(stepper, prompts, model.cfg.eos_id, capacity - prompts.shape[1], banned_ids)


def iter_file_captions(model, tokenizer, paths: list[str], beam_size: int | None, batch_size: int = 32,
                       progress: bool = False, keep_going: bool = False) -> Iterator[tuple[str, str | EdgeVLMError]]:
    """(path, caption) per image file, in order, batch by batch, with the PyTorch model,
    grounded by its concept head where it has one (as the engine's). Each file is decoded on
    its own; with ``keep_going`` a bad one gives (path, EdgeVLMError) and its batch-mates are
    still captioned, else its error is raised."""
    from edgevlm.features import load_pixels

    settings = search_settings(model.cfg, beam_size)
    concept_ids = concept_word_ids(model, tokenizer)
    batches = range(0, len(paths), batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="captioning", unit="batch")
    for start in batches:
        batch = paths[start : start + batch_size]
        results: dict[str, object] = {}  # path -> pixels (3,S,S), then its caption; or its error
        for path in batch:
            try:
                results[path] = load_pixels(path, model.cfg)
            except EdgeVLMError as exc:
                if not keep_going:
                    raise
                results[path] = exc
        good = [path for path in batch if not isinstance(results[path], EdgeVLMError)]
        if good:
            pixels = torch.from_numpy(np.stack([results[path] for path in good]))
            ids = generate_from_pixels(model, pixels, settings, concept_ids)
            results.update((path, tokenizer.decode(row)) for path, row in zip(good, ids))
        yield from ((path, results[path]) for path in batch)


def caption_files(model, tokenizer, paths: list[str], beam_size: int | None, batch_size: int = 32,
                  progress: bool = False) -> list[str]:
    """Image files -> captions (``iter_file_captions``; the first bad file raises)."""
    return [caption for _, caption in iter_file_captions(model, tokenizer, paths, beam_size, batch_size, progress)]
