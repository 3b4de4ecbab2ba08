"""Hugging Face checkpoints exported to our graph contract: the runtime side (torch- and
transformers-free). Images are processed as the checkpoint's slow HF image processor does
(manifest ``image_processor``), text through its tokenizer.json, and ids are searched as
``generate()`` searches them (manifest ``hf_generation``)."""

from __future__ import annotations

import numpy as np

from edgevlm.runtime.families.base import STEP_GRAPH_IO, GraphIO, RuntimeFamily
from edgevlm.runtime.families.captioner import shapes_match_model
from edgevlm.runtime.hf_preprocess import hf_preprocess
from edgevlm.runtime.hf_text import HFTokenizer
from edgevlm.runtime.steppers import STEP_GRAPH
from edgevlm.runtime.token_embeddings import STEP_EMBEDS_INPUT, TOKEN_EMBEDDINGS

VED_NAME = "vision-encoder-decoder"
GIT_NAME = "git"
BLIP_NAME = "blip"
BLIP_VQA_NAME = "blip-vqa"

_CAPTION_GRAPHS = {
    "vision": GraphIO(inputs=("pixels",), outputs=("visual_tokens", "pooled")),
    "cross_kv": GraphIO(inputs=("visual_tokens",), outputs=("cross_k", "cross_v")),
    "decoder": GraphIO(inputs=("input_ids", "position", "cache_k", "cache_v", "cross_k", "cross_v"),
                       outputs=("logits", "new_k", "new_v")),
}


def _has_hf_sections(manifest) -> str | None:
    missing = [name for name in ("image_processor", "hf_generation", "text") if getattr(manifest, name) is None]
    return f"Hugging Face engines need manifest sections {missing}" if missing else None


def _generation_fits_cache(manifest) -> str | None:
    """generate()'s length (the start token included) must fit the fixed-capacity cache."""
    needed, capacity = manifest.hf_generation.max_total_length(1), manifest.model.cache_capacity
    if needed > capacity:
        return f"hf_generation needs {needed} decoder positions but model.cache_capacity is {capacity}"
    return None


def cache_shapes_match_model(manifest) -> str | None:
    """The decoder's cache and logits have the model section's shapes (BLIP's visual width may
    differ from its text width, so the image side is checked by the graphs' own I/O table)."""
    m = manifest.model
    cache = (m.n_layers, "batch", m.n_heads, m.cache_capacity, m.head_dim)
    spec = manifest.graph("decoder")
    expected = {"cache_k": cache, "cache_v": cache, "logits": ("batch", "tokens", m.vocab_size)}
    for tensor in spec.inputs + spec.outputs:
        if tensor.name in expected and tuple(tensor.shape) != expected[tensor.name]:
            return (f"decoder.{tensor.name} has shape {list(tensor.shape)}, but the model section implies "
                    f"{list(expected[tensor.name])}")
    if manifest.generation.max_new_tokens >= m.cache_capacity:
        return f"generation.max_new_tokens {manifest.generation.max_new_tokens} must be below model.cache_capacity"
    return None


def _preprocess(image_bgr, manifest):
    """(H,W,3) uint8 BGR -> (3,S,S) float32 as the checkpoint's slow image processor makes it."""
    return hf_preprocess(image_bgr, manifest.image_processor)


def _tokenizer(manifest) -> HFTokenizer:
    return HFTokenizer.load(manifest.path("tokenizer"), manifest.special_tokens, manifest.text)


def _hf_family(name: str, shapes=shapes_match_model, graphs=_CAPTION_GRAPHS, answer_context=None,
               optional_graphs=None, checks=()) -> RuntimeFamily:
    """A Hugging Face family: the checkpoint's image processor and tokenizer, its sections checked.
    ``shapes``: the shape rule (BLIP's visual width may differ from its text width); ``checks``:
    the family's own rules besides."""
    return RuntimeFamily(name=name, graphs=graphs, tokenizer_kind="huggingface", preprocess=_preprocess,
                         load_tokenizer=_tokenizer, consistency=(_has_hf_sections, _generation_fits_cache, shapes, *checks),
                         answer_context=answer_context, optional_graphs=optional_graphs or {})


# The single-token step graph (export/families/ved_step_graph.py) takes the token's embedding row
# (word_embeds, from the engine's token_embeddings file: runtime/token_embeddings.py); GPT-2
# engines exported before take its id (input_ids). One of the two, checked by _step_reads_one_token.
VED_STEP_IO = GraphIO(inputs=("position",), outputs=STEP_GRAPH_IO.outputs,
                      optional_inputs=("input_ids", STEP_EMBEDS_INPUT), layered_inputs=STEP_GRAPH_IO.layered_inputs)


def _step_reads_one_token(manifest) -> str | None:
    """A VED step graph takes the token as its id or as its row, not both or neither; rows need
    the engine's token_embeddings file."""
    if STEP_GRAPH not in manifest.graphs:
        return None
    spec = manifest.graph(STEP_GRAPH)
    token_inputs = [name for name in ("input_ids", STEP_EMBEDS_INPUT) if spec.takes(name)]
    if len(token_inputs) != 1:
        return f"{STEP_GRAPH} must take one of input_ids or {STEP_EMBEDS_INPUT}, it takes {token_inputs or 'neither'}"
    if token_inputs == [STEP_EMBEDS_INPUT] and TOKEN_EMBEDDINGS not in manifest.files:
        return f"{STEP_GRAPH} takes {STEP_EMBEDS_INPUT} but the engine lists no {TOKEN_EMBEDDINGS} file"
    return None


VED = _hf_family(VED_NAME, optional_graphs={STEP_GRAPH: VED_STEP_IO}, checks=(_step_reads_one_token,))
# GIT: the "cross" K/V are each layer's image-token K/V (one softmax with the text's own)
GIT = _hf_family(GIT_NAME)
BLIP = _hf_family(BLIP_NAME, shapes=cache_shapes_match_model)


def _blip_answer_context(engine, visual, question_ids: list[int]):
    """BLIP VQA: the question encoded against the image (1,Q,D), the answer decoder's cross K/V
    over it, and the answer's own prompt: [DEC] (bos)."""
    states = engine.backend.run("question", {"question_ids": np.array([question_ids], np.int64),
                                             "visual_tokens": np.ascontiguousarray(visual, np.float32)})
    cross = engine.backend.run("cross_kv", {"question_states": states["question_states"]})
    return cross["cross_k"], cross["cross_v"], [engine.manifest.special_tokens.bos]


BLIP_VQA = _hf_family(
    BLIP_VQA_NAME, shapes=cache_shapes_match_model, answer_context=_blip_answer_context,
    graphs={
        "vision": _CAPTION_GRAPHS["vision"],
        "question": GraphIO(inputs=("question_ids", "visual_tokens"), outputs=("question_states",)),
        "cross_kv": GraphIO(inputs=("question_states",), outputs=("cross_k", "cross_v")),
        "decoder": _CAPTION_GRAPHS["decoder"],
    },
)

HF_FAMILIES = (VED, GIT, BLIP, BLIP_VQA)
