"""The decoder's single-token step as a graph of its own (``decoder_step``), for
VisionEncoderDecoder engines with a GPT-2 or a BERT decoder: what export/step_graph.py is for
our own decoder.

Why: the general ``decoder`` graph (ved_graphs.GPT2DecoderGraph) takes T new tokens, so its
head splits, masks and score blocks are written for any T: per layer a view+transpose per
head tensor, a (T,T) causal mask, two score blocks with their Where/Concat/Slice. At T = 1:
- heads split by one constant Reshape of the fused qkv projection, then one Split: (B,1,3d)
  and (B,3H,1,hd) hold the same elements in the same order, so no Transpose;
- the token attends to itself unmasked: its own K/V join the cache as slot C, so
  self-attention is one MatMul pair over [cache; self] under one (C+1,) additive mask built
  once for every layer (the same softmax as the general graph's two blocks: float rounding
  only);
- no (T,T) mask, no position range.
The weights are the model's own modules (Conv1D projections as one MatMul + Add, the tied
LM head read from the embedding's one stored table, as ved_graphs does), but the token's
embedding row comes in as ``word_embeds`` (B,1,d), read by the runtime from the engine's
``token_embeddings.npy``: a lookup inside the graph kept the whole table resident beside the
head's packed copy (runtime/token_embeddings.py). ``edgevlm validate``
proves the ids identical to ``generate()`` with the engine stepping on this graph. Inputs
and outputs: the decoder graph's with ``tokens`` = 1 (step_graph.step_graph_specs), but
``word_embeds`` (B,1,d) in place of ``input_ids``.

BERT's step (BertDecoderStepGraph) is the same at T = 1 over ved_bert_graphs' general graph:
post-LayerNorm blocks, separate query/key/value Linears (each a constant Reshape to heads), the
embedding's LayerNorm over word + token type 0 + position.
"""

from __future__ import annotations

import torch
from torch import nn

from edgevlm.export.families.ved_bert_graphs import BertDecoderGraph
from edgevlm.export.families.ved_graphs import GPT2DecoderGraph, _conv1d, decoder_shape
from edgevlm.export.step_graph import split_layers, step_attend, step_cache_bias, step_heads, step_self_attend


class GPT2DecoderStepGraph(nn.Module):
    """word_embeds (B,1,d) (the token's row of wte: runtime/token_embeddings.py), position (),
    then per layer i cache_k_i/cache_v_i (B,H,C,hd) and cross_k_i/cross_v_i (B,H,N,hd) ->
    logits (B,1,V), new_k/v (L,B,H,1,hd): GPT2DecoderGraph at T = 1."""

    def __init__(self, model):
        super().__init__()
        self.general = GPT2DecoderGraph(model)  # its modules, embedding and tied head
        _, self.heads, self.hd, self.d, _ = decoder_shape(model)

    def forward(self, word_embeds, position, *layered):
        g = self.general
        cache_k, cache_v, cross_k, cross_v = split_layers(layered, len(g.blocks))  # per layer (B,H,*,hd)
        x = word_embeds + g.wpe(position)  # (B,1,d) + (d,)
        # (C+1,); the capacity is a constant of the graph: the cache inputs' shape is fixed
        bias = step_cache_bias(cache_k[0].shape[-2], position, x)
        new_ks, new_vs = [], []
        for i, block in enumerate(g.blocks):
            # (B,1,3d) -> (B,3H,1,hd): a constant Reshape, no Transpose; then q, k, v (B,H,1,hd)
            q, k, v = step_heads(_conv1d(block.attn.c_attn, block.ln_1(x)), 3 * self.heads, self.hd).split(self.heads, dim=1)
            new_ks.append(k)
            new_vs.append(v)
            out = step_self_attend(q, k, v, cache_k[i], cache_v[i], block.attn.scaling, self.d, bias)
            x = x + _conv1d(block.attn.c_proj, out)

            cross = block.crossattention
            cq = step_heads(_conv1d(cross.q_attn, block.ln_cross_attn(x)), self.heads, self.hd)
            x = x + _conv1d(cross.c_proj, step_attend(cq, cross_k[i], cross_v[i], cross.scaling, self.d))
            mlp = block.mlp  # dropout is identity in eval
            x = x + _conv1d(mlp.c_proj, mlp.act(_conv1d(mlp.c_fc, block.ln_2(x))))
        return g._logits(g.ln_f(x)), torch.stack(new_ks), torch.stack(new_vs)


class BertDecoderStepGraph(nn.Module):
    """word_embeds (B,1,d) (the token's row of word_embeddings), position (), then per layer i
    cache_k_i/cache_v_i (B,H,C,hd) and cross_k_i/cross_v_i (B,H,N,hd) -> logits (B,1,V),
    new_k/v (L,B,H,1,hd): BertDecoderGraph at T = 1."""

    def __init__(self, model):
        super().__init__()
        self.general = BertDecoderGraph(model)  # its modules, embeddings and (tied) head
        _, self.heads, self.hd, self.d, _ = decoder_shape(model)

    def forward(self, word_embeds, position, *layered):
        g = self.general
        cache_k, cache_v, cross_k, cross_v = split_layers(layered, len(g.layer))  # per layer (B,H,*,hd)
        emb = g.embeddings  # LN(word + token type 0 + position), as BertDecoderGraph._embed
        x = emb.LayerNorm(word_embeds + emb.token_type_embeddings.weight[0] + emb.position_embeddings(position))
        bias = step_cache_bias(cache_k[0].shape[-2], position, x)  # (C+1,): filled slots and the token itself
        new_ks, new_vs = [], []
        for i, layer in enumerate(g.layer):
            attn = layer.attention.self
            q, k, v = (step_heads(attn.query(x), self.heads, self.hd), step_heads(attn.key(x), self.heads, self.hd),
                       step_heads(attn.value(x), self.heads, self.hd))  # (B,H,1,hd) each
            new_ks.append(k)
            new_vs.append(v)
            out = step_self_attend(q, k, v, cache_k[i], cache_v[i], attn.scaling, self.d, bias)
            x = layer.attention.output(out, x)  # LN(x + dense(ctx))

            cross = layer.crossattention.self  # no mask: the image tokens are all attended
            cq = step_heads(cross.query(x), self.heads, self.hd)
            x = layer.crossattention.output(step_attend(cq, cross_k[i], cross_v[i], cross.scaling, self.d), x)
            x = layer.output(layer.intermediate(x), x)  # LN(x + FFN(x))
        return g._logits(x), torch.stack(new_ks), torch.stack(new_vs)
