"""Our own captioner: EfficientNet-Lite vision graph, once-per-image cross K/V, and a
decoder on a fixed-capacity self-attention cache (see DESIGN.md)."""

from __future__ import annotations

from edgevlm.runtime.families.base import GraphIO, RuntimeFamily
from edgevlm.runtime.preprocess import preprocess_with
from edgevlm.runtime.text import CaptionTokenizer

NAME = "edgevlm-captioner"


def _cache_matches_model(manifest) -> str | None:
    m = manifest.model
    want = (m.n_layers, "batch", m.n_heads, m.cache_capacity, m.head_dim)
    for spec in manifest.graph("decoder").inputs:
        if spec.name in ("cache_k", "cache_v") and tuple(spec.shape) != want:
            return f"decoder.{spec.name} has shape {list(spec.shape)}, but model says {list(want)}"
    logits = next(s for s in manifest.graph("decoder").outputs if s.name == "logits")
    if logits.shape[-1] != m.vocab_size:
        return f"decoder.logits has {logits.shape[-1]} classes, but model.vocab_size is {m.vocab_size}"
    pixels = manifest.graph("vision").inputs[0]
    size = manifest.preprocess.image_size
    if tuple(pixels.shape[1:]) != (3, size, size):
        return f"vision.pixels has shape {list(pixels.shape)}, but preprocess.image_size is {size}"
    return None


def _vqa_needs_prefill(manifest) -> str | None:
    if "vqa" in manifest.tasks and not manifest.graph("decoder").takes("prefix_len"):
        return "tasks lists 'vqa' but the decoder graph has no prefix_len input"
    if "vqa" in manifest.tasks and manifest.special_tokens.sep is None:
        return "tasks lists 'vqa' but special_tokens has no sep"
    return None


CAPTIONER = RuntimeFamily(
    name=NAME,
    graphs={
        "vision": GraphIO(inputs=("pixels",), outputs=("visual_tokens", "pooled"),
                          optional_outputs=("concept_probs", "novelty")),
        "cross_kv": GraphIO(inputs=("visual_tokens",), outputs=("cross_k", "cross_v")),
        "decoder": GraphIO(inputs=("input_ids", "position", "cache_k", "cache_v", "cross_k", "cross_v"),
                           outputs=("logits", "new_k", "new_v"), optional_inputs=("prefix_len",)),
    },
    tokenizer_kind="wordlevel",
    preprocess=preprocess_with,
    load_tokenizer=CaptionTokenizer.load,
    consistency=(_cache_matches_model, _vqa_needs_prefill),
)
