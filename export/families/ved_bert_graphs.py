"""The BERT-style decoder of a ``VisionEncoderDecoderModel`` (``BertLMHeadModel`` with
``is_decoder`` and ``add_cross_attention``: the "ViT + BERT" layout) as our cross_kv and
decoder graphs; the vision graph is ved_graphs' own.

As for GPT-2, the attention is written here over HF's weights (a fixed-capacity cache read in
place, cross K/V from their own once-per-image graph); the rest calls HF's modules. BERT
blocks are post-LayerNorm: x = LN(x + SelfAttn(x)); x = LN(x + CrossAttn(x)); x = LN(x + FFN(x)).
Embeddings (transformers 5.24 ``BertEmbeddings``): LN(word + token_type + position), with
token_type_ids all zeros when not passed (VisionEncoderDecoderModel never passes them) and
position_ids = past length + arange(T), which is ``position + arange(T)`` here.

blip_text_layers' BLIP classes read the same module tree but do not fit as they are: their
embeddings have no token type, their head stores a tied table twice, and they take each
projection's shape on its own; these take (B,T,H,hd) once per graph, as ved_graphs does.
"""

from __future__ import annotations

import torch
from torch import nn

from edgevlm.export.families.tied_embedding import embed_from_table
from edgevlm.export.families.ved_graphs import _heads, _merge, decoder_shape


class BertCrossKVGraph(nn.Module):
    """visual tokens (B,N,d) -> cross_k, cross_v (L,B,H,N,hd): each layer's cross-attention
    key/value Linears, once per image."""

    def __init__(self, model):
        super().__init__()
        self.layer = model.decoder.bert.encoder.layer
        _, self.heads, self.hd, _, _ = decoder_shape(model)

    def forward(self, visual_tokens):
        split = (visual_tokens.shape[0], visual_tokens.shape[1], self.heads, self.hd)  # once, not per projection
        ks, vs = [], []
        for layer in self.layer:
            cross = layer.crossattention.self
            ks.append(_heads(cross.key(visual_tokens), split))
            vs.append(_heads(cross.value(visual_tokens), split))
        return torch.stack(ks), torch.stack(vs)


class BertDecoderGraph(nn.Module):
    """BertLMHeadModel over T new tokens at ``position`` on a fixed-capacity cache -> logits
    (B,T,V), new_k/new_v (L,B,H,T,hd) for the caller to write at ``position``."""

    def __init__(self, model):
        super().__init__()
        lm = model.decoder
        self.embeddings, self.layer, self.cls = lm.bert.embeddings, lm.bert.encoder.layer, lm.cls
        head = lm.cls.predictions.decoder  # Linear(d,V); its bias is cls.predictions.bias
        # BERT ties the head's weight to the word embedding (tie_word_embeddings, True by
        # default): read both from one (d,V) table so the graph stores it once, as GPT-2's does.
        self.tied = head.weight.data_ptr() == lm.bert.embeddings.word_embeddings.weight.data_ptr()
        _, self.heads, self.hd, self.d, _ = decoder_shape(model)

    def _embed(self, input_ids, positions):
        """(B,T), positions (T,) -> LN(word + token_type 0 + position) (B,T,d); dropout is identity in eval."""
        emb = self.embeddings
        word = (embed_from_table(emb.word_embeddings.weight.t(), input_ids, self.d) if self.tied
                else emb.word_embeddings(input_ids))
        # token_type_ids are all zeros in generate() and forward(): one constant row
        return emb.LayerNorm(word + emb.token_type_embeddings.weight[0] + emb.position_embeddings(positions))

    def _logits(self, x):
        """(B,T,d) -> (B,T,V): the prediction transform (dense, act, LN), then the vocab projection + bias."""
        predictions = self.cls.predictions
        hidden = predictions.transform(x)
        if not self.tied:
            return predictions.decoder(hidden)
        return torch.matmul(hidden, self.embeddings.word_embeddings.weight.t()) + predictions.decoder.bias

    def forward(self, input_ids, position, cache_k, cache_v, cross_k, cross_v):
        b, t = input_ids.shape[0], input_ids.shape[1]
        split, merged = (b, t, self.heads, self.hd), (b, t, self.d)
        positions = position + torch.arange(t, device=input_ids.device)  # (T,)
        x = self._embed(input_ids, positions)
        capacity = cache_k.shape[-2]
        cache_open = (torch.arange(capacity, device=x.device) < position).unsqueeze(0)  # (1,C): filled slots
        causal = positions.unsqueeze(0) <= positions.unsqueeze(1)  # (T,T): key j <= query i
        new_ks, new_vs = [], []
        for i, layer in enumerate(self.layer):
            attn = layer.attention.self
            q, k, v = (_heads(attn.query(x), split), _heads(attn.key(x), split), _heads(attn.value(x), split))
            new_ks.append(k)
            new_vs.append(v)
            # cache block and new block under one softmax; the cache is read, never concatenated
            scores = torch.cat([
                (torch.matmul(q, cache_k[i].transpose(-1, -2)) * attn.scaling).masked_fill(~cache_open, float("-inf")),
                (torch.matmul(q, k.transpose(-1, -2)) * attn.scaling).masked_fill(~causal, float("-inf")),
            ], dim=-1)
            probs = torch.softmax(scores, dim=-1)
            out = torch.matmul(probs[..., :capacity], cache_v[i]) + torch.matmul(probs[..., capacity:], v)
            x = layer.attention.output(_merge(out, merged), x)  # LN(x + dense(ctx))

            cross = layer.crossattention.self  # no mask: the image tokens are all attended
            cprobs = torch.softmax(torch.matmul(_heads(cross.query(x), split), cross_k[i].transpose(-1, -2))
                                   * cross.scaling, dim=-1)
            x = layer.crossattention.output(_merge(torch.matmul(cprobs, cross_v[i]), merged), x)
            x = layer.output(layer.intermediate(x), x)  # LN(x + FFN(x))
        return self._logits(x), torch.stack(new_ks), torch.stack(new_vs)

