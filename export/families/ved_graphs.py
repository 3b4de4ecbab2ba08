"""A Hugging Face ``VisionEncoderDecoderModel`` (ViT/DeiT/BEiT-style encoder + GPT-2 or
BERT-style decoder with cross-attention) as our three graphs: what both decoders share (shapes,
I/O tables, the vision graph, dispatch on the decoder's ``model_type``) and GPT-2's graphs;
the BERT decoder's are in ved_bert_graphs.py.

The encoder is HF's own module, run as is. The decoder's attention is written here over the
HF modules' weights: transformers' caches grow by concatenation every step and re-read
the cross-attention K/V from a cache object, while our contract is a fixed-capacity cache
written in place by the caller and cross K/V computed once per image by its own graph.
The math is GPT-2's (pre-LayerNorm blocks, Conv1D projections, learned absolute positions,
tied LM head); parity with ``generate()`` is checked by ``edgevlm validate``.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from edgevlm.export.families.tied_embedding import embed_from_table
from edgevlm.export.families.contract_specs import caption_specs
from edgevlm.runtime.manifest import TensorSpec
from edgevlm.runtime.token_embeddings import (STEP_EMBEDS_INPUT, TOKEN_EMBEDDINGS, TOKEN_EMBEDDINGS_FILE,
                                              write_token_embeddings)


DECODERS = ("gpt2", "bert")  # decoder model_type values whose graphs are written here and in ved_bert_graphs


def decoder_type(model) -> str:
    """The decoder's ``model_type``: one of DECODERS, or ValueError naming them."""
    kind = model.decoder.config.model_type
    if kind not in DECODERS:
        raise ValueError(f"no VED graphs for a {kind!r} decoder; supported: {', '.join(DECODERS)}")
    return kind


def decoder_shape(model) -> tuple[int, int, int, int, int]:
    """-> (layers, heads, head_dim, d_model, vocab) of the decoder. GPT2Config maps BERT's
    attribute names onto its own (n_layer, n_head, n_embd), so one reading serves both."""
    decoder_type(model)  # refuses a decoder with no graphs
    c = model.decoder.config
    heads = c.num_attention_heads
    return c.num_hidden_layers, heads, c.hidden_size // heads, c.hidden_size, c.vocab_size


def max_positions(model) -> int:
    """The decoder's learned position table length (GPT-2's n_positions, BERT's max_position_embeddings)."""
    return model.decoder.config.max_position_embeddings


def num_visual_tokens(model) -> int:
    """Patches + special tokens the encoder emits per image (probed: DeiT adds a
    distillation token, BEiT/ViT differ in pooling, so asking the module is safest)."""
    size = model.encoder.config.image_size
    with torch.no_grad():
        out = model.encoder(pixel_values=torch.zeros(1, 3, size, size)).last_hidden_state
    return int(out.shape[1])


def ved_graph_specs(model, capacity: int) -> dict[str, dict[str, list[TensorSpec]]]:
    """The three contract graphs, + the single-token ``decoder_step`` (ved_step_graph.py)."""
    from edgevlm.export.step_graph import step_graph_specs

    layers, heads, hd, d, vocab = decoder_shape(model)
    s, n = model.encoder.config.image_size, num_visual_tokens(model)
    specs = caption_specs(s, n, d, model.encoder.config.hidden_size, layers, heads, hd, vocab, capacity)
    step = step_graph_specs(specs["decoder"])
    # the step reads the token's embedding row from the runtime, not from the tied table
    # (runtime/token_embeddings.py says why)
    step["inputs"][0] = TensorSpec(STEP_EMBEDS_INPUT, "float32", ("batch", 1, d))
    specs["decoder_step"] = step
    return specs


def word_embedding_table(model) -> torch.Tensor:
    """The decoder's (V,d) word embedding: GPT-2's wte, BERT's word_embeddings."""
    if decoder_type(model) == "gpt2":
        return model.decoder.transformer.wte.weight
    return model.decoder.bert.embeddings.word_embeddings.weight


def write_token_embeddings_file(model, folder: str) -> dict[str, str]:
    """The step graph's word-embedding rows as ``token_embeddings.npy`` in ``folder``."""
    write_token_embeddings(os.path.join(folder, TOKEN_EMBEDDINGS_FILE), word_embedding_table(model).detach().numpy())
    return {TOKEN_EMBEDDINGS: TOKEN_EMBEDDINGS_FILE}


def _heads(x: torch.Tensor, split: tuple) -> torch.Tensor:
    """(B,T,H*hd) -> (B,H,T,hd); ``split`` = (B, T, H, hd) taken once per graph from the input
    ids, so the exported graph computes the dynamic shape once, not per projection."""
    return x.view(split).transpose(1, 2)


def _merge(x: torch.Tensor, merged: tuple) -> torch.Tensor:
    """(B,H,T,hd) -> (B,T,H*hd); ``merged`` = (B, T, H*hd)."""
    return x.transpose(1, 2).reshape(merged)


def _conv1d(conv, x: torch.Tensor) -> torch.Tensor:
    """GPT-2's Conv1D (weight (in,out)) as one MatMul + Add. HF's forward flattens to 2-D with
    addmm and views back, which exports as ~6 shape nodes per projection (~430 per step for
    GPT-2 small, each costing dispatch time in a memory-bound step)."""
    return torch.matmul(x, conv.weight) + conv.bias


class VEDVisionGraph(nn.Module):
    """pixels (B,3,S,S) -> visual tokens (B,N,d_dec) (``enc_to_dec_proj`` applied when the
    model has one), pooled (B,d_enc): the mean of the encoder's last hidden states."""

    def __init__(self, model):
        super().__init__()
        self.encoder = model.encoder
        self.proj = getattr(model, "enc_to_dec_proj", None)
        # VisionEncoderDecoderModel.forward applies the projection under exactly this condition
        self.use_proj = (self.proj is not None
                         and model.encoder.config.hidden_size != model.decoder.config.hidden_size
                         and getattr(model.decoder.config, "cross_attention_hidden_size", None) is None)

    def forward(self, pixels):
        hidden = self.encoder(pixel_values=pixels).last_hidden_state
        visual = self.proj(hidden) if self.use_proj else hidden
        return visual, hidden.mean(dim=1)


class GPT2CrossKVGraph(nn.Module):
    """visual tokens (B,N,d) -> cross_k, cross_v (L,B,H,N,hd): each block's cross-attention
    ``c_attn`` split into K and V, once per image."""

    def __init__(self, model):
        super().__init__()
        self.blocks = model.decoder.transformer.h
        _, _, self.hd, self.d, _ = decoder_shape(model)

    def forward(self, visual_tokens):
        ks, vs = [], []
        b, n = visual_tokens.shape[0], visual_tokens.shape[1]
        split = (b, n, self.d // self.hd, self.hd)
        for block in self.blocks:
            k, v = _conv1d(block.crossattention.c_attn, visual_tokens).split(self.d, dim=2)
            ks.append(_heads(k, split))
            vs.append(_heads(v, split))
        return torch.stack(ks), torch.stack(vs)


class GPT2DecoderGraph(nn.Module):
    """GPT-2 over T new tokens at ``position`` on a fixed-capacity cache -> logits (B,T,V),
    new_k/new_v (L,B,H,T,hd) for the caller to write at ``position``."""

    def __init__(self, model):
        super().__init__()
        gpt2 = model.decoder
        self.wte, self.wpe, self.blocks, self.ln_f = gpt2.transformer.wte, gpt2.transformer.wpe, gpt2.transformer.h, gpt2.transformer.ln_f
        self.lm_head = gpt2.lm_head
        # GPT-2 ties its LM head to the token embedding. Exported as written, the graph stores it
        # twice (the Gather's (V,d) table and the MatMul's folded transpose: +154 MB for GPT-2
        # small). Reading both from one (d,V) table keeps a single copy on disk and in memory.
        self.tied = gpt2.lm_head.weight.data_ptr() == gpt2.transformer.wte.weight.data_ptr()
        _, _, self.hd, self.d, _ = decoder_shape(model)

    def _embed(self, input_ids):
        """(B,T) -> (B,T,d): from the shared (d,V) table when the head is tied."""
        # wte.weight.t() (d,V): the exporter folds it into the one stored copy
        return embed_from_table(self.wte.weight.t(), input_ids, self.d) if self.tied else self.wte(input_ids)

    def _logits(self, hidden):
        return torch.matmul(hidden, self.wte.weight.t()) if self.tied else self.lm_head(hidden)

    def forward(self, input_ids, position, cache_k, cache_v, cross_k, cross_v):
        b, t = input_ids.shape[0], input_ids.shape[1]
        split, merged = (b, t, self.d // self.hd, self.hd), (b, t, self.d)
        positions = position + torch.arange(t, device=input_ids.device)  # (T,)
        x = self._embed(input_ids) + self.wpe(positions)  # (B,T,d); GPT-2's dropout is identity in eval
        cache_open = (torch.arange(cache_k.shape[-2], device=x.device) < position).unsqueeze(0)  # (1,C)
        causal = positions.unsqueeze(0) <= positions.unsqueeze(1)  # (T,T): key j <= query i
        new_ks, new_vs = [], []
        for i, block in enumerate(self.blocks):
            q, k, v = _conv1d(block.attn.c_attn, block.ln_1(x)).split(self.d, dim=2)
            q, k, v = _heads(q, split), _heads(k, split), _heads(v, split)
            new_ks.append(k)
            new_vs.append(v)
            scale = block.attn.scaling
            scores = torch.cat([
                (torch.matmul(q, cache_k[i].transpose(-1, -2)) * scale).masked_fill(~cache_open, float("-inf")),
                (torch.matmul(q, k.transpose(-1, -2)) * scale).masked_fill(~causal, float("-inf")),
            ], dim=-1)
            probs = torch.softmax(scores, dim=-1)
            capacity = cache_k.shape[-2]
            out = torch.matmul(probs[..., :capacity], cache_v[i]) + torch.matmul(probs[..., capacity:], v)
            x = x + _conv1d(block.attn.c_proj, _merge(out, merged))

            cross = block.crossattention
            cq = _heads(_conv1d(cross.q_attn, block.ln_cross_attn(x)), split)
            cprobs = torch.softmax(torch.matmul(cq, cross_k[i].transpose(-1, -2)) * cross.scaling, dim=-1)
            x = x + _conv1d(cross.c_proj, _merge(torch.matmul(cprobs, cross_v[i]), merged))
            mlp = block.mlp  # dropout is identity in eval
            x = x + _conv1d(mlp.c_proj, mlp.act(_conv1d(mlp.c_fc, block.ln_2(x))))
        return self._logits(self.ln_f(x)), torch.stack(new_ks), torch.stack(new_vs)


def _decoder_graphs(model) -> tuple[type, type]:
    """-> (cross_kv module class, decoder module class) for the model's decoder type."""
    if decoder_type(model) == "gpt2":
        return GPT2CrossKVGraph, GPT2DecoderGraph
    # imported here: ved_bert_graphs builds on this module's helpers
    from edgevlm.export.families.ved_bert_graphs import BertCrossKVGraph, BertDecoderGraph

    return BertCrossKVGraph, BertDecoderGraph


def ved_cross_kv_graph(model) -> nn.Module:
    """visual tokens (B,N,d) -> cross_k, cross_v (L,B,H,N,hd), for either decoder."""
    return _decoder_graphs(model)[0](model)


def ved_decoder_graph(model) -> nn.Module:
    """(input_ids, position, cache_k/v, cross_k/v) -> (logits, new_k, new_v), for either decoder."""
    return _decoder_graphs(model)[1](model)


def ved_decoder_step_graph(model) -> nn.Module:
    """(word_embeds (B,1,d), position, per-layer cache_k/v, cross_k/v) -> (logits, new_k, new_v),
    for either decoder."""
    from edgevlm.export.families.ved_step_graph import BertDecoderStepGraph, GPT2DecoderStepGraph

    return (GPT2DecoderStepGraph if decoder_type(model) == "gpt2" else BertDecoderStepGraph)(model)


# every VED engine gets "decoder_step" (ved_graph_specs lists it for both decoders)
VED_GRAPH_MODULES = {"vision": VEDVisionGraph, "cross_kv": ved_cross_kv_graph, "decoder": ved_decoder_graph,
                     "decoder_step": ved_decoder_step_graph}


TINY_BERT_IDS = {"pad": 0, "cls": 1, "sep": 2, "unk": 3}  # where the tiny BERT decoder's tokenizer puts them


def _tiny_decoder(decoder: str, vocab: int):
    """-> (decoder config, (start, eos, pad) ids) of a tiny GPT-2 or BERT decoder."""
    from transformers import BertConfig, GPT2Config

    if decoder == "gpt2":  # GPT-2's one special token, <|endoftext|>, is its last id and plays every role
        end = vocab - 1
        return GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=64, initializer_range=0.3,
                          bos_token_id=end, eos_token_id=end, pad_token_id=end), (end, end, end)
    if decoder == "bert":  # BERT starts at [CLS], ends at [SEP], pads with [PAD] (101, 102, 0 in bert-base)
        pad, cls, sep = TINY_BERT_IDS["pad"], TINY_BERT_IDS["cls"], TINY_BERT_IDS["sep"]
        return BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=37, max_position_embeddings=64, initializer_range=0.3,
                          pad_token_id=pad), (cls, sep, pad)
    raise ValueError(f"no tiny {decoder!r} decoder; supported: {', '.join(DECODERS)}")


def tiny_ved(seed: int = 0, image_size: int = 32, vocab: int = 99, decoder: str = "gpt2"):
    """A tiny random-init ViT + GPT-2 (or BERT) VisionEncoderDecoderModel (eval, eager attention),
    with an encoder narrower than the decoder so ``enc_to_dec_proj`` is exercised."""
    from transformers import ViTConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    torch.manual_seed(seed)
    encoder = ViTConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                        image_size=image_size, patch_size=16, initializer_range=0.3)
    decoder_config, (start, eos, pad) = _tiny_decoder(decoder, vocab)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder_config)
    config.decoder_start_token_id, config.eos_token_id, config.pad_token_id = start, eos, pad
    config._attn_implementation = "eager"
    config.encoder._attn_implementation = "eager"
    config.decoder._attn_implementation = "eager"
    model = VisionEncoderDecoderModel(config).eval()
    if decoder == "bert":  # HF zero-inits the LM head's bias: make it count, so parity covers it
        with torch.no_grad():
            model.decoder.cls.predictions.bias.normal_(0.0, 0.3)
    return model
