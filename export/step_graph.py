"""The decoder's single-token step as a graph of its own (``decoder_step``): T = 1, every
shape but the batch a constant.

Why a second graph: the general ``decoder`` graph (prefill and step alike) takes T new
tokens, so the exporter writes its head splits, masks and position ranges as Shape/Gather/
Unsqueeze/Concat plumbing that onnxruntime cannot fold (~360 nodes after ORT_ENABLE_ALL,
most of a step's time spent in per-node overhead, not arithmetic). With one token per row:
- heads split and merge by a constant Reshape, no Transpose: (B,1,d) and (B,H,1,hd) hold
  the same elements in the same order;
- the token attends to itself unmasked (causal and prefix masks are all-true at T = 1),
  so the graph needs no ``prefix_len`` and no (T,T) mask;
- the token's own K/V join the cache as slot S, so self-attention is one MatMul pair over
  [cache; self] under one (S+1,) additive mask built once for every layer (the model sums
  two blocks: the same softmax, different float rounding only).
The modules and weights are the model's own (``edgevlm/models/decoder.py``); ``edgevlm
validate`` checks the logits and proves the ids identical to PyTorch. Measured on the
shared 2-core AVX2 EPYC, one thread (edgevlm/scripts/decoder_step_bench.py): 166 nodes after
ORT_ENABLE_ALL against 358; INT8 step 0.64 against 0.99 ms, FP32 2.0 against 2.6 ms.
Inputs and outputs are the decoder graph's, less ``prefix_len``, with ``tokens`` = 1, and the
cache and cross K/V one input per layer (the stacked inputs were copied whole at every step
by the Split that indexed them; runtime/steppers.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgevlm.models.decoder import TextDecoder
from edgevlm.runtime.steppers import LAYERED_STEP_INPUTS, layer_input


# Sizes below are Python ints, never ``x.shape``: the tracer records a read shape as
# Shape/Gather nodes, and dropping those is this graph's reason to exist.
def step_heads(x: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """(B,1,d) -> (B,H,1,hd): one token, so a constant Reshape, no Transpose."""
    return x.reshape(-1, heads, 1, head_dim)


def step_cache_bias(capacity: int, position: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(S+1,) additive mask, built once for every layer: 0 for the filled slots (< position)
    and for the last, the token itself (always seen), -inf for the rest. The same softmax as
    masked_fill(-inf), since exp(-inf) = 0. ``like``: its dtype and device."""
    slots = torch.arange(capacity, device=like.device)
    bias = torch.zeros(slots.shape, dtype=like.dtype).masked_fill(slots >= position, float("-inf"))
    return torch.cat([bias, torch.zeros(1, dtype=like.dtype)])


def _merge(x: torch.Tensor, d_model: int) -> torch.Tensor:
    """(B,H,1,hd) -> (B,1,d)."""
    return x.reshape(-1, 1, d_model)


def step_attend(q, keys, values, scale: float, d_model: int, bias=None) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v, heads merged: q (B,H,1,hd); keys/values (B,H,N,hd);
    bias broadcast over (B,H,1,N) or None -> (B,1,d), before the output projection. Our step
    and the VisionEncoderDecoder steps (export/families/ved_step_graph.py) all attend here."""
    scores = torch.matmul(q, keys.transpose(-1, -2)) * scale  # (B,H,1,N)
    if bias is not None:
        scores = scores + bias
    return _merge(torch.matmul(scores.softmax(dim=-1), values), d_model)


def step_self_attend(q, k_new, v_new, cache_k, cache_v, scale: float, d_model: int, cache_bias) -> torch.Tensor:
    """Self-attention of one token: its own K/V (B,H,1,hd) join the cache (B,H,S,hd) as slot S
    (``cache_bias`` (S+1,) 0 there: itself, always seen), one Concat per tensor instead of two
    score blocks, a concatenated softmax and two Slices -> (B,1,d), before the output projection."""
    return step_attend(q, torch.cat([cache_k, k_new], dim=2), torch.cat([cache_v, v_new], dim=2), scale, d_model,
                       cache_bias)


# The step modules hold the model's own submodules under the model's attribute names, so
# exported nodes carry the same paths as the decoder graph's (/decoder/layers.0/self_attn/
# qkv/MatMul) and a quantization --exclude pattern means the same nodes in both graphs.
class _StepAttention(nn.Module):
    """What self- and cross-attention share at T = 1: head sizes, the 1/sqrt(hd) scale and the
    output projection (the attention itself: step_attend)."""

    def __init__(self, attn):
        super().__init__()
        self.n_heads, self.out = attn.n_heads, attn.out
        self.d_model = attn.out.in_features
        self.head_dim = self.d_model // self.n_heads

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.head_dim)


class _StepSelfAttention(_StepAttention):
    def __init__(self, attn):
        super().__init__(attn)
        self.qkv = attn.qkv

    def forward(self, x, cache_k, cache_v, cache_bias):
        """x (B,1,d); cache_k/v (B,H,S,hd); cache_bias (S+1,): 0 for filled slots and the token
        itself, -inf for the rest -> (out (B,1,d), k_new, v_new (B,H,1,hd))."""
        # (B,1,3d) -> (B,3H,1,hd) -> q, k, v (B,H,1,hd): one Reshape and one Split
        q, k_new, v_new = self.qkv(x).reshape(-1, 3 * self.n_heads, 1, self.head_dim).split(self.n_heads, dim=1)
        attended = step_self_attend(q, k_new, v_new, cache_k, cache_v, self.scale, self.d_model, cache_bias)
        return self.out(attended), k_new, v_new


class _StepCrossAttention(_StepAttention):
    def __init__(self, attn):
        super().__init__(attn)
        self.q = attn.q

    def forward(self, x, k, v):
        """x (B,1,d); k/v (B,H,N,hd) -> (B,1,d)."""
        return self.out(step_attend(step_heads(self.q(x), self.n_heads, self.head_dim), k, v, self.scale, self.d_model))


class _StepLayer(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.ln_self, self.ln_cross, self.ln_mlp, self.mlp = layer.ln_self, layer.ln_cross, layer.ln_mlp, layer.mlp
        self.self_attn = _StepSelfAttention(layer.self_attn)
        self.cross_attn = _StepCrossAttention(layer.cross_attn)

    def forward(self, x, cross_k, cross_v, cache_k, cache_v, cache_bias):
        attn, k_new, v_new = self.self_attn(self.ln_self(x), cache_k, cache_v, cache_bias)
        x = x + attn  # dropout: identity in eval, left out
        x = x + self.cross_attn(self.ln_cross(x), cross_k, cross_v)
        x = x + self.mlp(self.ln_mlp(x))
        return x, k_new, v_new


class _StepDecoder(nn.Module):
    def __init__(self, decoder: TextDecoder, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.tok_emb, self.pos_emb, self.ln_f = decoder.tok_emb, decoder.pos_emb, decoder.ln_f
        self.layers = nn.ModuleList(_StepLayer(layer) for layer in decoder.layers)

    def forward(self, input_ids, cross_k, cross_v, cache_k, cache_v, position):
        x = self.tok_emb(input_ids) + self.pos_emb(position)  # (B,1,d) + (d,)
        cache_bias = step_cache_bias(self.capacity, position, x)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, cross_k[i], cross_v[i], cache_k[i], cache_v[i], cache_bias)
            new_k.append(k)
            new_v.append(v)
        logits = F.linear(self.ln_f(x), self.tok_emb.weight)  # tied output layer (B,1,V)
        return logits, torch.stack(new_k), torch.stack(new_v)


def split_layers(layered: tuple, layers: int) -> tuple[tuple, tuple, tuple, tuple]:
    """The step graph's per-layer inputs, in spec order (cache_k_0..L-1, cache_v_*, cross_k_*,
    cross_v_*), as four tuples of L tensors each: what ``cache_k[i]`` indexes in the modules."""
    return tuple(tuple(layered[j * layers:(j + 1) * layers]) for j in range(len(LAYERED_STEP_INPUTS)))


class DecoderStepGraph(nn.Module):
    """input_ids (B,1) int64, position () int64, then per layer i cache_k_i/cache_v_i (B,H,S,hd)
    and cross_k_i/cross_v_i (B,H,N,hd) -> logits (B,1,V), new_k/v (L,B,H,1,hd): the decoder
    graph at T = 1, prefix_len 0."""

    def __init__(self, model):
        super().__init__()
        # the exporter's capacity for this family (export/families/captioner.py): max_len slots
        self.decoder = _StepDecoder(model.decoder, model.cfg.decoder.max_len)

    def forward(self, input_ids, position, *layered):
        cache_k, cache_v, cross_k, cross_v = split_layers(layered, len(self.decoder.layers))
        return self.decoder(input_ids, cross_k, cross_v, cache_k, cache_v, position)


def step_graph_specs(decoder_specs: dict) -> dict:
    """The decoder graph's specs at T = 1 without ``prefix_len``, its stacked (L,...) cache and
    cross K/V given one input per layer (runtime/steppers.py says why): {"inputs", "outputs"}."""
    def fix(spec):
        return type(spec)(spec.name, spec.dtype, tuple(1 if dim == "tokens" else dim for dim in spec.shape))

    specs = {spec.name: spec for spec in decoder_specs["inputs"]}
    inputs = [fix(specs["input_ids"]), fix(specs["position"])]
    for name in LAYERED_STEP_INPUTS:  # (L,B,H,S,hd) -> L inputs of (B,H,S,hd), in split_layers' order
        stacked = specs[name]
        inputs += [type(stacked)(layer_input(name, i), stacked.dtype, tuple(stacked.shape[1:]))
                   for i in range(stacked.shape[0])]
    return {"inputs": inputs, "outputs": [fix(s) for s in decoder_specs["outputs"]]}
