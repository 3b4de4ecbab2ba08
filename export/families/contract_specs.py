"""The I/O tables of the three-graph contract (vision -> cross_kv -> decoder on a fixed-capacity
cache), built once for every Hugging Face family: they differ only in their dimensions.
'batch', 'tokens' (and a family's own names, e.g. BLIP VQA's 'context') are dynamic axes."""

from __future__ import annotations

from edgevlm.runtime.manifest import TensorSpec


def vision_spec(image_size: int, tokens: int, width: int, pooled_dim: int) -> dict[str, list[TensorSpec]]:
    """pixels (B,3,S,S) -> visual_tokens (B,N,width), pooled (B,pooled_dim)."""
    return {
        "inputs": [TensorSpec("pixels", "float32", ("batch", 3, image_size, image_size))],
        "outputs": [TensorSpec("visual_tokens", "float32", ("batch", tokens, width)),
                    TensorSpec("pooled", "float32", ("batch", pooled_dim))],
    }


def cross_kv_spec(layers: int, heads: int, head_dim: int, context, width: int,
                  source: str = "visual_tokens") -> dict[str, list[TensorSpec]]:
    """``source`` (B,context,width) -> cross_k, cross_v (L,B,H,context,hd)."""
    cross = (layers, "batch", heads, context, head_dim)
    return {
        "inputs": [TensorSpec(source, "float32", ("batch", context, width))],
        "outputs": [TensorSpec("cross_k", "float32", cross), TensorSpec("cross_v", "float32", cross)],
    }


def decoder_spec(layers: int, heads: int, head_dim: int, vocab: int, capacity: int,
                 context) -> dict[str, list[TensorSpec]]:
    """input_ids (B,T), position (), cache_k/v (L,B,H,C,hd), cross_k/v (L,B,H,context,hd) ->
    logits (B,T,V), new_k/v (L,B,H,T,hd)."""
    cross = (layers, "batch", heads, context, head_dim)
    cache = (layers, "batch", heads, capacity, head_dim)
    new = (layers, "batch", heads, "tokens", head_dim)
    return {
        "inputs": [TensorSpec("input_ids", "int64", ("batch", "tokens")), TensorSpec("position", "int64", ()),
                   TensorSpec("cache_k", "float32", cache), TensorSpec("cache_v", "float32", cache),
                   TensorSpec("cross_k", "float32", cross), TensorSpec("cross_v", "float32", cross)],
        "outputs": [TensorSpec("logits", "float32", ("batch", "tokens", vocab)),
                    TensorSpec("new_k", "float32", new), TensorSpec("new_v", "float32", new)],
    }


def caption_specs(image_size: int, tokens: int, width: int, pooled_dim: int, layers: int, heads: int,
                  head_dim: int, vocab: int, capacity: int) -> dict[str, dict[str, list[TensorSpec]]]:
    """The three graphs of a family whose decoder cross-attends to the N visual tokens."""
    return {
        "vision": vision_spec(image_size, tokens, width, pooled_dim),
        "cross_kv": cross_kv_spec(layers, heads, head_dim, tokens, width),
        "decoder": decoder_spec(layers, heads, head_dim, vocab, capacity, tokens),
    }
