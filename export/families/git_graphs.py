"""Hugging Face ``GitForCausalLM`` (GIT) as the three graphs every family exports.

GIT puts the projected image tokens in front of the text in ONE self-attention stack. Its
mask (``GitModel.forward``: ``create_causal_mask`` with ``block_sequence_ids`` 0 for image
tokens, -1 for text) lets image tokens attend to each other both ways and never to text,
and text attend to every image token and causally to text. So each layer's image-token K/V
do not depend on the text and are computed once per image:

- vision:   pixels (B,3,S,S) -> visual_tokens (B,N,D): the CLIP encoder's last hidden state
            (post-LayerNorm) through ``visual_projection`` (Linear + LayerNorm), N = (S/P)^2 + 1;
            pooled (B,C): the encoder's class token after ``post_layernorm``, i.e. CLIP's
            ``pooler_output`` (C = vision width), GIT's global image embedding.
- cross_kv: visual_tokens -> every layer's image K/V, each (L,B,H,N,hd): the image tokens
            run through the text layers alone (bidirectional among themselves, as in HF).
- decoder:  T text tokens at ``position`` -> logits (B,T,V) and their own K/V; each text
            query attends, in one softmax, to [image K/V ; cache slots < position ; new
            tokens causally], exactly the rows of HF's mask for text queries.

What HF does that the graphs reproduce (transformers 5.x ``modeling_git.py``):
text positions start at 0 after the image prefix (``generate`` passes ``position_ids`` =
cumsum(attention_mask) - 1 over the text only), text embeddings are word + position ->
LayerNorm -> dropout while image tokens skip them, layers are post-LN (BERT style), the head
``output`` is a Linear with bias.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgevlm.errors import EdgeVLMError
from edgevlm.export.families.contract_specs import caption_specs
from edgevlm.runtime.manifest import TensorSpec


def _check_single_image(model) -> None:
    # Video checkpoints (num_image_with_embedding set: git-base-vatex) take (B,F,3,S,S) frames
    # with a temporal embedding each and size their cached-step mask for F images: a single
    # (B,3,S,S) image would not match what they were trained on.
    if model.config.num_image_with_embedding is not None:
        raise EdgeVLMError(f"GIT with num_image_with_embedding={model.config.num_image_with_embedding} is a "
                           "multi-frame (video) model; only single-image GIT checkpoints can be exported")


def git_dims(model) -> tuple[int, int, int, int, int, int, int, int]:
    """(S, N, D, C, L, H, hd, V) of a GitForCausalLM."""
    cfg, vision = model.config, model.config.vision_config
    s = vision.image_size
    n = (s // vision.patch_size) ** 2 + 1  # patches + class token
    heads = cfg.num_attention_heads
    return (s, n, cfg.hidden_size, vision.hidden_size, cfg.num_hidden_layers, heads, cfg.hidden_size // heads,
            cfg.vocab_size)


def git_graph_specs(model, capacity: int) -> dict[str, dict[str, list[TensorSpec]]]:
    """graph name -> {"inputs": [...], "outputs": [...]}; 'batch', 'tokens' are dynamic.
    capacity: text slots of the self-attention cache (image tokens are not in it)."""
    _check_single_image(model)
    s, n, d, c, layers, heads, hd, vocab = git_dims(model)
    if capacity > model.config.max_position_embeddings:  # text position p has embedding row p
        raise EdgeVLMError(f"cache capacity {capacity} exceeds GIT's {model.config.max_position_embeddings} "
                           "text positions")
    return caption_specs(s, n, d, c, layers, heads, hd, vocab, capacity)


def _heads(linear: nn.Linear, x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """x (B,T,D) -> linear(x) as (B,H,T,hd)."""
    b, t, _ = x.shape
    return linear(x).view(b, t, -1, head_dim).transpose(1, 2)


def _finish_layer(layer, context: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The rest of a GitLayer after attention. context (B,H,T,hd) attention output; x (B,T,D)
    the layer input (residual) -> (B,T,D). HF's own modules: dense + LayerNorm(+residual), FFN."""
    b, _, t, _ = context.shape
    merged = context.transpose(1, 2).reshape(b, t, -1)  # (B,T,D)
    return layer.feed_forward_chunk(layer.attention.output(merged, x))


class GitVisionGraph(nn.Module):
    """pixels (B,3,S,S) -> visual_tokens (B,N,D) (projected), pooled (B,C) (class token)."""

    def __init__(self, model):
        super().__init__()
        _check_single_image(model)
        self.encoder, self.projection = model.git.image_encoder, model.git.visual_projection

    def forward(self, pixels):
        features = self.encoder(pixels).last_hidden_state  # (B,N,C), post_layernorm applied to every token
        return self.projection(features), features[:, 0]


class GitImageKVGraph(nn.Module):
    """visual_tokens (B,N,D) -> cross_k, cross_v (L,B,H,N,hd): each text layer's K/V of the
    image tokens, which attend only to each other (no mask), so the text never changes them."""

    def __init__(self, model):
        super().__init__()
        _check_single_image(model)
        self.layers = model.git.encoder.layer
        self.head_dim = model.config.hidden_size // model.config.num_attention_heads

    def forward(self, visual_tokens):
        x, keys, values = visual_tokens, [], []
        for i, layer in enumerate(self.layers):
            attn = layer.attention.self
            k, v = _heads(attn.key, x, self.head_dim), _heads(attn.value, x, self.head_dim)
            keys.append(k)
            values.append(v)
            if i == len(self.layers) - 1:  # the last layer's image outputs feed nothing
                break
            q = _heads(attn.query, x, self.head_dim)
            probs = (torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)).softmax(dim=-1)  # (B,H,N,N)
            x = _finish_layer(layer, torch.matmul(probs, v), x)
        return torch.stack(keys), torch.stack(values)


class GitDecoderGraph(nn.Module):
    """T text tokens at ``position`` -> logits (B,T,V), new_k, new_v (L,B,H,T,hd).

    Reads cache_k/v (L,B,H,C,hd) slots < position and image K/V (L,B,H,N,hd); never writes
    or concatenates the cache: the caller stores new_k/new_v at ``position``.
    """

    def __init__(self, model):
        super().__init__()
        _check_single_image(model)
        self.embeddings, self.layers, self.output = model.git.embeddings, model.git.encoder.layer, model.output
        self.head_dim = model.config.hidden_size // model.config.num_attention_heads

    def forward(self, input_ids, position, cache_k, cache_v, cross_k, cross_v):
        t = input_ids.shape[1]
        positions = position + torch.arange(t, device=input_ids.device)  # (T,) text positions, 0 = first text token
        x = self.embeddings(input_ids=input_ids, position_ids=positions.unsqueeze(0))  # word+pos, LayerNorm (B,T,D)
        new_mask = positions.unsqueeze(0) <= positions.unsqueeze(1)  # (T,T) causal: key j <= query i
        capacity = cache_k.shape[-2]
        cache_mask = (torch.arange(capacity, device=input_ids.device) < position).unsqueeze(0)  # (1,C) filled slots
        n = cross_k.shape[-2]
        scale = 1.0 / math.sqrt(self.head_dim)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            attn = layer.attention.self
            q = _heads(attn.query, x, self.head_dim)
            k, v = _heads(attn.key, x, self.head_dim), _heads(attn.value, x, self.head_dim)
            new_k.append(k)
            new_v.append(v)
            # One softmax over [image ; cache ; new]: the cache is only read, never copied. Masked
            # scores are -inf (HF adds finfo.min): identical after softmax since the image keys are
            # always visible, so no row is fully masked.
            scores = torch.cat([
                torch.matmul(q, cross_k[i].transpose(-1, -2)) * scale,  # (B,H,T,N) always visible
                (torch.matmul(q, cache_k[i].transpose(-1, -2)) * scale).masked_fill(~cache_mask, float("-inf")),
                (torch.matmul(q, k.transpose(-1, -2)) * scale).masked_fill(~new_mask, float("-inf")),
            ], dim=-1).softmax(dim=-1)  # (B,H,T,N+C+T)
            context = (torch.matmul(scores[..., :n], cross_v[i])
                       + torch.matmul(scores[..., n:n + capacity], cache_v[i])
                       + torch.matmul(scores[..., n + capacity:], v))  # (B,H,T,hd)
            x = _finish_layer(layer, context, x)
        return self.output(x), torch.stack(new_k), torch.stack(new_v)


GIT_GRAPH_MODULES = {"vision": GitVisionGraph, "cross_kv": GitImageKVGraph, "decoder": GitDecoderGraph}


def tiny_git(seed: int = 0):
    """A tiny random-init GitForCausalLM (hidden 32, 2 layers, 4 heads, vocab 99, 32 px image,
    16 px patches: N = 5 image tokens), eval mode, eager attention. bos 1 ([CLS]), eos 2
    ([SEP]), pad 0, as GIT's 101/102/0 in a 99-word vocabulary."""
    from transformers import GitConfig, GitForCausalLM

    # initializer_range 0.3 (HF default 0.02) so the logits depend visibly on the image
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                  patch_size=16, initializer_range=0.3)
    config = GitConfig(vision_config=vision, vocab_size=99, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
                       initializer_range=0.3, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    model = GitForCausalLM._from_config(config, attn_implementation="eager")
    return model.eval()
