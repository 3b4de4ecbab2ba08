"""Hugging Face checkpoints exported to our graph contract: the runtime side (torch- and
transformers-free). Images are processed as the checkpoint's slow HF image processor does
(manifest ``image_processor``), text through its tokenizer.json, and ids are searched as
``generate()`` searches them (manifest ``hf_generation``)."""

from __future__ import annotations

from edgevlm.runtime.families.base import GraphIO, RuntimeFamily
from edgevlm.runtime.families.captioner import shapes_match_model
from edgevlm.runtime.hf_preprocess import hf_preprocess
from edgevlm.runtime.hf_text import HFTokenizer

VED_NAME = "vision-encoder-decoder"
GIT_NAME = "git"

_CAPTION_GRAPHS = {
    "vision": GraphIO(inputs=("pixels",), outputs=("visual_tokens", "pooled")),
    "cross_kv": GraphIO(inputs=("visual_tokens",), outputs=("cross_k", "cross_v")),
    "decoder": GraphIO(inputs=("input_ids", "position", "cache_k", "cache_v", "cross_k", "cross_v"),
                       outputs=("logits", "new_k", "new_v")),
}


def _has_hf_sections(manifest) -> str | None:
    missing = [name for name in ("image_processor", "hf_generation", "text") if getattr(manifest, name) is None]
    return f"Hugging Face engines need manifest sections {missing}" if missing else None


def _preprocess(image_bgr, manifest):
    """(H,W,3) uint8 BGR -> (3,S,S) float32 as the checkpoint's slow image processor makes it."""
    return hf_preprocess(image_bgr, manifest.image_processor)


def _tokenizer(manifest) -> HFTokenizer:
    return HFTokenizer.load(manifest.path("tokenizer"), manifest.special_tokens, manifest.text)


VED = RuntimeFamily(
    name=VED_NAME,
    graphs=_CAPTION_GRAPHS,
    tokenizer_kind="huggingface",
    preprocess=_preprocess,
    load_tokenizer=_tokenizer,
    consistency=(_has_hf_sections, shapes_match_model),
)

# GIT: the "cross" K/V are each layer's image-token K/V (one softmax with the text's own)
GIT = RuntimeFamily(
    name=GIT_NAME,
    graphs=_CAPTION_GRAPHS,
    tokenizer_kind="huggingface",
    preprocess=_preprocess,
    load_tokenizer=_tokenizer,
    consistency=(_has_hf_sections, shapes_match_model),
)

HF_FAMILIES = (VED, GIT)
