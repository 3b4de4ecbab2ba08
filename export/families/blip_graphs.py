"""Hugging Face BLIP (``BlipForConditionalGeneration`` captioning, ``BlipForQuestionAnswering``
VQA) on the edge graph contract: I/O tables, nn.Module wrappers, tiny random-init builders.

Captioning runs vision -> cross_kv -> decoder. VQA runs vision -> question -> cross_kv ->
decoder: the answer decoder cross-attends to the *question* states (the text encoder's output,
itself cross-attending to the image), so its cross_kv input is question_states with a dynamic
"context" axis (the question length), not the image tokens.

What HF's generate() feeds, and so what the runtime must feed (transformers 5.24):
- captions: the decoder starts at position 0 from ``[text_config.bos_token_id]`` ("[DEC]",
  30522 in Salesforce's checkpoints). A text prompt is the processor's ids ``[CLS] w.. [SEP]``
  with [CLS] overwritten by bos and the final [SEP] dropped: ``[bos, w..]``
  (``blip_caption_start_ids``). Stops on ``sep_token_id`` (102, [SEP]); ``eos_token_id`` (2)
  is never used to stop. Finished rows are padded with ``pad_token_id`` (0).
- VQA: the question is fed as the processor tokenizes it, ``[CLS] question [SEP]``, unchanged
  (HF does not swap [CLS] for [ENC] as Salesforce's original code did), attention mask all
  ones; the answer starts from ``[bos]`` at position 0, stops on sep, pads with pad.
"""

from __future__ import annotations

import torch
from torch import nn

from edgevlm.export.families.blip_text_layers import CachedTextDecoder, CrossKV, QuestionEncoder
from edgevlm.export.families.contract_specs import caption_specs, cross_kv_spec, decoder_spec, vision_spec
from edgevlm.runtime.manifest import TensorSpec


def blip_dims(model) -> tuple[int, int, int, int, int, int]:
    """(N visual tokens, vision width, text layers, heads, head_dim, text width) of a BLIP model."""
    text, vision = model.config.text_config, model.config.vision_config
    n = (vision.image_size // vision.patch_size) ** 2 + 1  # patches + [CLS]
    heads = text.num_attention_heads
    return n, vision.hidden_size, text.num_hidden_layers, heads, text.hidden_size // heads, text.hidden_size


def _check_capacity(text_config, capacity: int) -> None:
    # Positions index a learned table: a cache slot past it would have no position embedding.
    if not 0 < capacity <= text_config.max_position_embeddings:
        raise ValueError(f"cache capacity {capacity} must be in 1..{text_config.max_position_embeddings} "
                         "(the text decoder's max_position_embeddings)")


def blip_caption_graph_specs(model, capacity: int) -> dict[str, dict[str, list[TensorSpec]]]:
    """graph -> {"inputs", "outputs"} for a BlipForConditionalGeneration; 'batch' and 'tokens' are dynamic.
    pooled is the vision width: BLIP's pooler_output."""
    text = model.config.text_config
    _check_capacity(text, capacity)
    n, dv, layers, heads, hd, _ = blip_dims(model)
    return caption_specs(model.config.vision_config.image_size, n, dv, dv, layers, heads, hd, text.vocab_size, capacity)


def blip_vqa_graph_specs(model, capacity: int) -> dict[str, dict[str, list[TensorSpec]]]:
    """graph -> {"inputs", "outputs"} for a BlipForQuestionAnswering; 'batch', 'tokens',
    'question' (question length) and 'context' (= question length, as the answer decoder sees it) are dynamic."""
    text = model.config.text_config
    _check_capacity(text, capacity)
    n, dv, layers, heads, hd, dt = blip_dims(model)
    return {
        "vision": vision_spec(model.config.vision_config.image_size, n, dv, dv),
        "question": {  # one question per call: HF's mask is all ones, so rows cannot be padded
            "inputs": [TensorSpec("question_ids", "int64", (1, "question")),
                       TensorSpec("visual_tokens", "float32", (1, n, dv))],
            "outputs": [TensorSpec("question_states", "float32", (1, "question", dt))],
        },
        "cross_kv": cross_kv_spec(layers, heads, hd, "context", dt, source="question_states"),
        "decoder": decoder_spec(layers, heads, hd, text.vocab_size, capacity, "context"),
    }


class BlipVisionGraph(nn.Module):
    """pixels (B,3,S,S) -> visual_tokens (B,N,D): BlipVisionModel's last_hidden_state ([CLS] +
    patches, after post_layernorm: exactly what generate() cross-attends to); pooled (B,D): its
    pooler_output, the [CLS] token with post_layernorm applied a second time (HF does so)."""

    def __init__(self, model):
        super().__init__()
        self.vision_model = model.vision_model

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # HF's own forward traces cleanly (no position interpolation: fixed image_size)
        out = self.vision_model(pixel_values=pixels)
        return out.last_hidden_state, out.pooler_output


class BlipQuestionGraph(nn.Module):
    """question_ids (1,Q) int64, visual_tokens (1,N,Dv) -> question_states (1,Q,D) (VQA only)."""

    def __init__(self, model):
        super().__init__()
        self.text_encoder = QuestionEncoder(model.text_encoder)

    def forward(self, question_ids: torch.Tensor, visual_tokens: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(question_ids, visual_tokens)


class BlipCrossKVGraph(nn.Module):
    """context (B,N,Dc) -> cross_k, cross_v (L,B,H,N,hd): the text decoder's cross-attention
    keys/values, once per image (captions: visual_tokens) or per question (VQA: question_states)."""

    def __init__(self, model):
        super().__init__()
        self.text_decoder = CrossKV(model.text_decoder)

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.text_decoder(context)


class BlipDecoderGraph(nn.Module):
    """(input_ids (B,T), position (), cache_k, cache_v (L,B,H,C,hd), cross_k, cross_v (L,B,H,N,hd))
    -> logits (B,T,V), new_k, new_v (L,B,H,T,hd); the caller writes new_k/v at ``position``."""

    def __init__(self, model):
        super().__init__()
        self.text_decoder = CachedTextDecoder(model.text_decoder)

    def forward(self, input_ids, position, cache_k, cache_v, cross_k, cross_v):
        return self.text_decoder(input_ids, position, cache_k, cache_v, cross_k, cross_v)


BLIP_CAPTION_GRAPH_MODULES = {"vision": BlipVisionGraph, "cross_kv": BlipCrossKVGraph, "decoder": BlipDecoderGraph}
BLIP_VQA_GRAPH_MODULES = {"vision": BlipVisionGraph, "question": BlipQuestionGraph, "cross_kv": BlipCrossKVGraph,
                          "decoder": BlipDecoderGraph}


def blip_caption_start_ids(text_config, prompt_ids: list[int] | None = None) -> list[int]:
    """The ids the caption decoder starts from at position 0, as generate() builds them.

    prompt_ids: the processor's tokenization of a text prompt ([CLS] w.. [SEP]) or None.
    generate() overwrites its first id with bos and drops its last: [bos, w..]; no prompt: [bos]."""
    if prompt_ids is None:
        return [text_config.bos_token_id]
    if len(prompt_ids) < 2:
        raise ValueError("a BLIP prompt is the processor's [CLS] ... [SEP] ids: at least 2")
    return [text_config.bos_token_id, *prompt_ids[1:-1]]


def blip_stop_ids(text_config) -> dict[str, int]:
    """generate()'s stop and pad ids for both heads: eos is sep_token_id (not eos_token_id)."""
    return {"eos": text_config.sep_token_id, "pad": text_config.pad_token_id}


# Tiny models: transformers' own test sizes; vocabulary ids laid out like the real checkpoint's
# roles (pad 0, [CLS] 1 by convention of the tests, eos 2 unused for stopping, [SEP] 3, [DEC] bos 97).
TINY_TEXT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=32, pad_token_id=0, eos_token_id=2, sep_token_id=3, bos_token_id=97)
TINY_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                   image_size=32, patch_size=16)
TINY_INIT = 0.3  # HF's 0.02 (and 1e-10 for the vision embeddings) leaves outputs nearly image-independent


def _tiny(model_cls, seed: int):
    from transformers import BlipConfig

    config = BlipConfig(text_config=dict(TINY_TEXT, initializer_range=TINY_INIT),
                        vision_config=dict(TINY_VISION, initializer_range=TINY_INIT), initializer_range=TINY_INIT)
    with torch.random.fork_rng():  # HF initialises from the global generator: leave the caller's untouched
        torch.manual_seed(seed)
        model = model_cls._from_config(config, attn_implementation="eager")
    # HF initialises biases to 0 and LayerNorms to (1, 0): randomise them so that a bias or
    # LayerNorm the graphs dropped or misplaced shows up in the parity tests.
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return model.eval()


def tiny_blip_caption(seed: int = 0):
    """A random-init BlipForConditionalGeneration (32 wide, 2+2 layers, 32 px images: N = 5)."""
    from transformers import BlipForConditionalGeneration

    return _tiny(BlipForConditionalGeneration, seed)


def tiny_blip_vqa(seed: int = 0):
    """A random-init BlipForQuestionAnswering (same sizes as tiny_blip_caption)."""
    from transformers import BlipForQuestionAnswering

    return _tiny(BlipForQuestionAnswering, seed)
