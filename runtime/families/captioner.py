"""Our own captioner: EfficientNet-Lite vision graph, once-per-image cross K/V, and a
decoder on a fixed-capacity self-attention cache (see DESIGN.md)."""

from __future__ import annotations

from edgevlm.runtime.families.base import STEP_GRAPH_IO, GraphIO, RuntimeFamily
from edgevlm.runtime.pixel_layout import pixels_shape
from edgevlm.runtime.preprocess import preprocess_with
from edgevlm.runtime.text import CaptionTokenizer

NAME = "edgevlm-captioner"


def shapes_match_model(manifest) -> str | None:
    """Every graph tensor whose shape the model section implies has that shape."""
    m, size = manifest.model, manifest.preprocess.image_size
    cross = (m.n_layers, "batch", m.n_heads, m.num_visual_tokens, m.head_dim)
    cache = (m.n_layers, "batch", m.n_heads, m.cache_capacity, m.head_dim)
    expected = {
        ("vision", "pixels"): ("batch", *pixels_shape(manifest.preprocess.layout, size)),
        ("vision", "visual_tokens"): ("batch", m.num_visual_tokens, m.d_model),
        ("vision", "pooled"): ("batch", m.pooled_dim),
        ("cross_kv", "visual_tokens"): ("batch", m.num_visual_tokens, m.d_model),
        ("cross_kv", "cross_k"): cross, ("cross_kv", "cross_v"): cross,
        ("decoder", "cache_k"): cache, ("decoder", "cache_v"): cache,
        ("decoder", "cross_k"): cross, ("decoder", "cross_v"): cross,
        ("decoder", "logits"): ("batch", "tokens", m.vocab_size),
        # the optional single-token step graph: the decoder's tensors at tokens = 1
        ("decoder_step", "input_ids"): ("batch", 1),
        ("decoder_step", "cache_k"): cache, ("decoder_step", "cache_v"): cache,
        ("decoder_step", "cross_k"): cross, ("decoder_step", "cross_v"): cross,
        ("decoder_step", "logits"): ("batch", 1, m.vocab_size),
        ("decoder_step", "new_k"): (m.n_layers, "batch", m.n_heads, 1, m.head_dim),
        ("decoder_step", "new_v"): (m.n_layers, "batch", m.n_heads, 1, m.head_dim),
    }
    for (graph, name), want in expected.items():
        if graph not in manifest.graphs:
            continue  # decoder_step is optional
        spec = manifest.graph(graph)
        found = [s for s in spec.inputs + spec.outputs if s.name == name]
        if found and tuple(found[0].shape) != want:
            return f"{graph}.{name} has shape {list(found[0].shape)}, but the model section implies {list(want)}"
    if manifest.generation.max_new_tokens >= m.cache_capacity or m.cache_capacity > m.max_len:
        return (f"generation.max_new_tokens {manifest.generation.max_new_tokens} must be below model.cache_capacity "
                f"{m.cache_capacity}, itself at most model.max_len {m.max_len}")
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
    optional_graphs={
        # one token per row, static shapes but the batch: the CPU step (export/step_graph.py)
        "decoder_step": STEP_GRAPH_IO,
    },
    tokenizer_kind="wordlevel",
    preprocess=lambda image_bgr, manifest: preprocess_with(image_bgr, manifest.preprocess),
    load_tokenizer=lambda manifest: CaptionTokenizer.load(manifest.path("tokenizer")),
    consistency=(shapes_match_model, _vqa_needs_prefill),
)
