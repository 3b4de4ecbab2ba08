"""BLIP's BERT-style text stack (``BlipTextModel`` / ``BlipTextLMHeadModel``) re-expressed on
the edge graph contract, reusing the Hugging Face modules' weights.

HF runs attention on a growing ``EncoderDecoderCache``; here the attention math is written
out so the decoder reads a fixed-capacity cache (only slots below ``position``) and returns
just the new tokens' keys/values, and so the cross-attention keys/values come from a separate
once-per-context graph. Everything else (embedding LayerNorm, post-LN residuals, FFN, LM head)
calls HF's own modules. BLIP text layers are post-LN (BERT):
x = LN(x + SelfAttn(x)); x = LN(x + CrossAttn(x)); x = LN(x + FFN(x)).

The module tree mirrors HF's attribute names (layer.0/attention/self/query, .../crossattention/
output, cls/predictions) and every level is entered through its own ``forward``, so exported
node names carry the full path (/text_decoder/layer.0/crossattention/self/key/MatMul) for
quantization exclusions.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgevlm.export.families.tied_embedding import embed_from_table


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B,T,D) -> (B,H,T,hd)."""
    b, t, d = x.shape
    return x.view(b, t, n_heads, d // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B,H,T,hd) -> (B,T,D)."""
    b, h, t, hd = x.shape
    return x.transpose(1, 2).reshape(b, t, h * hd)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unmasked: q (B,H,Tq,hd), k/v (B,H,Tk,hd) -> (B,H,Tq,hd). Plain MatMul/Softmax, no SDPA,
    so the ONNX graph is the same on every backend."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    return torch.matmul(scores.softmax(dim=-1), v)


class KeyValue(nn.Module):
    """HF's cross-attention key/value Linears: context (B,N,Dc) -> k, v (B,H,N,hd). Dc is the
    encoder width (vision hidden for captions, text hidden for VQA answers: 768 both in BLIP)."""

    def __init__(self, hf_self: nn.Module):  # a BlipTextSelfAttention
        super().__init__()
        self.n_heads = hf_self.num_attention_heads
        self.key, self.value = hf_self.key, hf_self.value

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return split_heads(self.key(context), self.n_heads), split_heads(self.value(context), self.n_heads)


class SelfAttention(KeyValue):
    """In place of BlipTextSelfAttention (same query/key/value Linears), for self-attention."""

    def __init__(self, hf_self: nn.Module):
        super().__init__(hf_self)
        self.query = hf_self.query

    def forward(self, x, cache_k=None, cache_v=None, cache_mask=None, new_mask=None):
        """x (B,T,D). With cache_k/v (B,H,C,hd), cache_mask (1,C) True for filled slots and
        new_mask (T,T) causal: a decoder step; without: bidirectional (the question encoder).
        Returns (context (B,T,D), k_new (B,H,T,hd), v_new (B,H,T,hd))."""
        q = split_heads(self.query(x), self.n_heads)
        k_new, v_new = super().forward(x)
        if cache_k is None:
            return merge_heads(attend(q, k_new, v_new)), k_new, v_new
        # Cache block and new block under one softmax: the cache is only read, never
        # concatenated or copied; its slots >= position may hold garbage.
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores_cache = (torch.matmul(q, cache_k.transpose(-1, -2)) * scale).masked_fill(~cache_mask, float("-inf"))
        scores_new = (torch.matmul(q, k_new.transpose(-1, -2)) * scale).masked_fill(~new_mask, float("-inf"))
        probs = torch.cat([scores_cache, scores_new], dim=-1).softmax(dim=-1)  # (B,H,T,C+T)
        capacity = cache_k.shape[-2]
        out = torch.matmul(probs[..., :capacity], cache_v) + torch.matmul(probs[..., capacity:], v_new)
        return merge_heads(out), k_new, v_new


class CrossAttention(KeyValue):
    """In place of BlipTextSelfAttention as cross-attention. No mask: both of HF's generate()
    paths pass an all-ones encoder mask."""

    def __init__(self, hf_self: nn.Module):
        super().__init__(hf_self)
        self.query = hf_self.query

    def forward(self, x, k, v=None):
        """x (B,T,D); k, v (B,H,N,hd) precomputed (decoder), or k = the context (B,N,Dc) and
        v None: project it here (question encoder). Returns (context (B,T,D),)."""
        if v is None:
            k, v = super().forward(k)
        return (merge_heads(attend(split_heads(self.query(x), self.n_heads), k, v)),)


class Attention(nn.Module):
    """In place of BlipTextAttention: ``self`` (ours) then HF's ``output``: LN(x + dense(ctx))."""

    def __init__(self, attention: nn.Module, hf_attention: nn.Module):
        super().__init__()
        self.self, self.output = attention, hf_attention.output

    def forward(self, x, *args):
        """x (B,T,D) -> (x (B,T,D), *what ``self`` returns after its context)."""
        context, *rest = self.self(x, *args)
        return (self.output(context, x), *rest)


class TextLayer(nn.Module):
    """One BlipTextLayer: self-attention, cross-attention, FFN, each post-LN."""

    def __init__(self, layer: nn.Module):  # a BlipTextLayer with crossattention
        super().__init__()
        self.attention = Attention(SelfAttention(layer.attention.self), layer.attention)
        self.crossattention = Attention(CrossAttention(layer.crossattention.self), layer.crossattention)
        self.intermediate, self.output = layer.intermediate, layer.output

    def forward(self, x, cross, self_args=()):
        """x (B,T,D); cross: (k, v) (B,H,N,hd) each, or (context (B,N,Dc),); self_args: the
        cache arguments of SelfAttention. Returns (x (B,T,D), k_new, v_new (B,H,T,hd))."""
        x, k_new, v_new = self.attention(x, *self_args)
        (x,) = self.crossattention(x, *cross)
        return self.output(self.intermediate(x), x), k_new, v_new  # LN(x + FFN(x))


class TextEmbeddings(nn.Module):
    """ids (B,T) int64, positions (T,) int64 -> LayerNorm(word + position) (B,T,D). Positions
    are explicit: HF derives them from its cache length, the graphs from ``position``."""

    def __init__(self, embeddings: nn.Module):  # a BlipTextEmbeddings
        super().__init__()
        self.word_embeddings = embeddings.word_embeddings
        self.position_embeddings = embeddings.position_embeddings
        self.LayerNorm = embeddings.LayerNorm

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """``table``: the (d,V) transpose of the word embedding, when the LM head shares it."""
        words = self.word_embeddings(ids) if table is None else embed_from_table(table, ids, table.shape[0])
        return self.LayerNorm(words + self.position_embeddings(positions))


class CachedTextDecoder(nn.Module):
    """BlipTextLMHeadModel on the fixed-capacity cache: one pass over T new tokens."""

    def __init__(self, text_decoder: nn.Module):  # a BlipTextLMHeadModel
        super().__init__()
        self.embeddings = TextEmbeddings(text_decoder.bert.embeddings)
        self.layer = nn.ModuleList(TextLayer(layer) for layer in text_decoder.bert.encoder.layer)
        self.cls = text_decoder.cls  # transform (dense, GELU, LN) then the tied vocab Linear with its bias
        # The head is tied to the word embedding in BLIP's checkpoints: read both from one (d,V)
        # table so the exporter stores it once (+94 MB for BLIP-base otherwise), as ved_graphs does.
        self.tied = (text_decoder.cls.predictions.decoder.weight.data_ptr()
                     == text_decoder.bert.embeddings.word_embeddings.weight.data_ptr())

    def forward(self, input_ids, position, cache_k, cache_v, cross_k, cross_v):
        """input_ids (B,T) int64; position () int64 (index of input_ids[:, 0]); cache_k/v
        (L,B,H,C,hd), slots < position filled; cross_k/v (L,B,H,N,hd).
        Returns logits (B,T,V), new_k, new_v (L,B,H,T,hd)."""
        positions = position + torch.arange(input_ids.shape[1], device=input_ids.device)  # (T,)
        table = self.embeddings.word_embeddings.weight.t() if self.tied else None  # (d,V)
        x = self.embeddings(input_ids, positions, table)
        new_mask = positions.unsqueeze(0) <= positions.unsqueeze(1)  # (T,T) key j <= query i
        cache_mask = (torch.arange(cache_k.shape[-2], device=x.device) < position).unsqueeze(0)  # (1,C)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layer):
            x, k, v = layer(x, (cross_k[i], cross_v[i]), (cache_k[i], cache_v[i], cache_mask, new_mask))
            new_k.append(k)
            new_v.append(v)
        if table is None:
            return self.cls(x), torch.stack(new_k), torch.stack(new_v)
        head = self.cls.predictions
        logits = torch.matmul(head.transform(x), table) + head.decoder.bias
        return logits, torch.stack(new_k), torch.stack(new_v)


class _CrossAttentionKV(nn.Module):
    """Path crossattention/self/{key,value} of one layer, for the cross_kv graph's node names."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.self = KeyValue(layer.crossattention.self)

    def forward(self, context):
        return self.self(context)


class _LayerKV(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.crossattention = _CrossAttentionKV(layer)

    def forward(self, context):
        return self.crossattention(context)


class CrossKV(nn.Module):
    """context (B,N,Dc) -> every decoder layer's cross-attention cross_k, cross_v (L,B,H,N,hd)."""

    def __init__(self, text_decoder: nn.Module):  # a BlipTextLMHeadModel
        super().__init__()
        self.layer = nn.ModuleList(_LayerKV(layer) for layer in text_decoder.bert.encoder.layer)

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [layer(context) for layer in self.layer]
        return torch.stack([k for k, _ in pairs]), torch.stack([v for _, v in pairs])


class QuestionEncoder(nn.Module):
    """VQA's text_encoder (BlipTextModel run bidirectionally, no pooler) cross-attending to
    the image: question_ids (B,Q) int64, visual_tokens (B,N,Dv) -> question states (B,Q,D).
    No padding mask (generate() passes all ones): B = 1, or equal-length rows without [PAD]."""

    def __init__(self, text_encoder: nn.Module):  # a BlipTextModel
        super().__init__()
        self.embeddings = TextEmbeddings(text_encoder.embeddings)
        self.layer = nn.ModuleList(TextLayer(layer) for layer in text_encoder.encoder.layer)

    def forward(self, question_ids: torch.Tensor, visual_tokens: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(question_ids, torch.arange(question_ids.shape[1], device=question_ids.device))
        for layer in self.layer:
            x, _, _ = layer(x, (visual_tokens,))
        return x
