"""Pre-LN transformer text decoder: causal self-attention, cross-attention to visual tokens,
tied input/output embeddings, and an explicit key/value cache in the forward signature.

The self-attention cache is a fixed-capacity buffer (L, B, H, S, head_dim) that the caller
owns: ``forward`` only reads it (slots < ``position``), attends to it and to this call's
own tokens under one softmax, and returns only the new keys/values (L, B, H, T, head_dim)
for the caller to write at ``position``. No concatenation, no copy of the cache, fixed
shapes: the same code trains, decodes and exports.
Cross-attention keys/values come from ``cross_kv`` once per image and are passed in.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgevlm.config import DecoderConfig


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """q (B,H,Tq,hd), k/v (B,H,Tk,hd), mask (Tq,Tk) bool (True = may attend) -> (B,H,Tq,hd).

    Written out rather than F.scaled_dot_product_attention so that the exported ONNX graph
    is plain MatMul/Softmax with readable names on every opset and backend.
    """
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))  # (B,H,Tq,Tk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(scores.softmax(dim=-1), v)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, n_heads, d // n_heads).transpose(1, 2)  # (B, H, T, hd)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, t, hd = x.shape
    return x.transpose(1, 2).reshape(b, t, h * hd)  # (B, T, d)


class SelfAttention(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x, new_mask, cache_k=None, cache_v=None, cache_mask=None):
        """x (B,T,d); new_mask (T,T) causal; cache_k/v (B,H,S,hd) or None; cache_mask (1,S)
        True for the slots already filled (< position).

        Returns (out (B,T,d), k_new (B,H,T,hd), v_new (B,H,T,hd)).
        """
        q, k_new, v_new = (split_heads(part, self.n_heads) for part in self.qkv(x).chunk(3, dim=-1))
        if cache_k is None:
            return self.out(merge_heads(attend(q, k_new, v_new, new_mask))), k_new, v_new
        # Attend to the cache and to this call's tokens as two blocks under one softmax: the
        # cache is only read (never copied or blended), and the caller writes k_new/v_new.
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores_cache = (torch.matmul(q, cache_k.transpose(-1, -2)) * scale).masked_fill(~cache_mask, float("-inf"))
        scores_new = (torch.matmul(q, k_new.transpose(-1, -2)) * scale).masked_fill(~new_mask, float("-inf"))
        probs = torch.cat([scores_cache, scores_new], dim=-1).softmax(dim=-1)  # (B,H,T,S+T)
        capacity = cache_k.shape[-2]
        out = torch.matmul(probs[..., :capacity], cache_v) + torch.matmul(probs[..., capacity:], v_new)
        return self.out(merge_heads(out)), k_new, v_new


class KeyValueProjection(nn.Linear):
    """visual (B,N,d) -> k, v (B,H,N,hd). A module of its own (not a method) so that exported
    nodes carry its path: /layers.0/cross_attn/kv/MatMul."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__(d_model, 2 * d_model)
        self.n_heads = n_heads

    def forward(self, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = super().forward(visual).chunk(2, dim=-1)
        return split_heads(k, self.n_heads), split_heads(v, self.n_heads)


class CrossAttention(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv = KeyValueProjection(cfg.d_model, cfg.n_heads)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def keys_values(self, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """visual (B,N,d) -> k, v (B,H,N,hd): computed once per image."""
        return self.kv(visual)

    def forward(self, x, k, v):
        return self.out(merge_heads(attend(split_heads(self.q(x), self.n_heads), k, v, None)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.ln_self = nn.LayerNorm(cfg.d_model)
        self.self_attn = SelfAttention(cfg)
        self.ln_cross = nn.LayerNorm(cfg.d_model)
        self.cross_attn = CrossAttention(cfg)
        self.ln_mlp = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, new_mask, cross_k, cross_v, cache_k=None, cache_v=None, cache_mask=None):
        attn, k_new, v_new = self.self_attn(self.ln_self(x), new_mask, cache_k, cache_v, cache_mask)
        x = x + self.drop(attn)
        x = x + self.drop(self.cross_attn(self.ln_cross(x), cross_k, cross_v))
        x = x + self.drop(self.mlp(self.ln_mlp(x)))
        return x, k_new, v_new


class TextDecoder(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def cross_kv(self, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """visual tokens (B,N,d) -> every layer's cross-attention k, v, each (L,B,H,N,hd)."""
        pairs = [layer.cross_attn.keys_values(visual) for layer in self.layers]
        return torch.stack([k for k, _ in pairs]), torch.stack([v for _, v in pairs])

    def forward(self, input_ids, cross_k, cross_v, cache_k=None, cache_v=None, position=0, prefix_len=None):
        """One decoder pass.

        input_ids (B,T) int64; cross_k/v (L,B,H,N,hd); cache_k/v (L,B,H,S,hd) or None (then
        the T tokens attend only to each other, causally: the training path); position: the
        index of input_ids[:, 0] in the sequence (int or 0-d int64 tensor); prefix_len: None,
        a 0-d int64 (the same for every row: export and runtime; 0 = no prefix) or (B,) int64
        (per row: mixed training batches): the first prefix_len tokens of each sequence (a VQA question) attend to
        each other both ways (prefix LM); the rest stays causal.
        Returns logits (B,T,V), new_k (L,B,H,T,hd), new_v (L,B,H,T,hd).
        """
        t = input_ids.shape[1]
        positions = position + torch.arange(t, device=input_ids.device)  # (T,)
        x = self.drop(self.tok_emb(input_ids) + self.pos_emb(positions))  # (B,T,d)
        new_mask = positions.unsqueeze(0) <= positions.unsqueeze(1)  # causal (T,T): key j <= query i
        if prefix_len is not None and prefix_len.dim() == 0:  # one prefix for every row (export, runtime)
            new_mask = new_mask | (positions < prefix_len).unsqueeze(0)  # (T,T): prefix keys seen by all
        elif prefix_len is not None:  # keys inside each row's prefix are visible to every query
            in_prefix = positions.unsqueeze(0) < prefix_len.view(-1, 1)  # (B,T) over keys
            new_mask = (new_mask.unsqueeze(0) | in_prefix.unsqueeze(1)).unsqueeze(1)  # (B,1,T,T)
        cache_mask = None
        if cache_k is not None:
            cache_mask = (torch.arange(cache_k.shape[-2], device=x.device) < position).unsqueeze(0)  # (1,S)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            layer_cache_k = None if cache_k is None else cache_k[i]
            layer_cache_v = None if cache_v is None else cache_v[i]
            x, k, v = layer(x, new_mask, cross_k[i], cross_v[i], layer_cache_k, layer_cache_v, cache_mask)
            new_k.append(k)
            new_v.append(v)
        logits = F.linear(self.ln_f(x), self.tok_emb.weight)  # tied output layer (B,T,V)
        return logits, torch.stack(new_k), torch.stack(new_v)
