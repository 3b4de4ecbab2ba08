"""Our captioner's exported graphs as thin wrappers around the model's own methods: vision,
cross_kv, decoder, and the decoder's single-token step (export/step_graph.py).

Names, dtypes and dynamic axes of every input and output are declared once here; the
exporter, the dummy inputs and the manifest read this table, and the runtime reads the
manifest (its family checks the names: runtime/families/captioner.py).
"""

from __future__ import annotations

import torch
from torch import nn

from edgevlm.models.captioner import Captioner
from edgevlm.models.concept_head import unfamiliarity
from edgevlm.export.step_graph import DecoderStepGraph, step_graph_specs
from edgevlm.export.vision_heads import (FoldedConceptHead, FoldedProjector, channels_last_cells, normalise_cells,
                                          shared_norm_eps)
from edgevlm.runtime.manifest import TensorSpec


def graph_specs(model: Captioner, capacity: int) -> dict[str, dict[str, list[TensorSpec]]]:
    """graph name -> {"inputs": [...], "outputs": [...]}; 'batch', 'tokens' are dynamic."""
    cfg = model.cfg
    d, s = cfg.decoder, cfg.preprocess.image_size
    n, layers, heads, hd = cfg.num_visual_tokens, d.n_layers, d.n_heads, d.head_dim
    cross = (layers, "batch", heads, n, hd)
    cache = (layers, "batch", heads, capacity, hd)
    new = (layers, "batch", heads, "tokens", hd)
    vision_outputs = [TensorSpec("visual_tokens", "float32", ("batch", n, d.d_model)),
                      TensorSpec("pooled", "float32", ("batch", cfg.vision.channels))]
    if model.concepts is not None:  # P(concept present) per category, prior-neutral
        vision_outputs.append(TensorSpec("concept_probs", "float32", ("batch", len(cfg.concepts.names))))
        # 1 - the largest concept probability: high when nothing the model knows is in view
        vision_outputs.append(TensorSpec("novelty", "float32", ("batch",)))
    specs = {
        "vision": {
            "inputs": [TensorSpec("pixels", "float32", ("batch", 3, s, s))],
            "outputs": vision_outputs,
        },
        "cross_kv": {
            "inputs": [TensorSpec("visual_tokens", "float32", ("batch", n, d.d_model))],
            "outputs": [TensorSpec("cross_k", "float32", cross), TensorSpec("cross_v", "float32", cross)],
        },
        "decoder": {
            "inputs": [TensorSpec("input_ids", "int64", ("batch", "tokens")),
                       TensorSpec("position", "int64", ()),
                       # 0 for captions; the prompt length when prefilling a VQA question
                       TensorSpec("prefix_len", "int64", ()),
                       TensorSpec("cache_k", "float32", cache), TensorSpec("cache_v", "float32", cache),
                       TensorSpec("cross_k", "float32", cross), TensorSpec("cross_v", "float32", cross)],
            "outputs": [TensorSpec("logits", "float32", ("batch", "tokens", d.vocab_size)),
                        TensorSpec("new_k", "float32", new), TensorSpec("new_v", "float32", new)],
        },
    }
    specs["decoder_step"] = step_graph_specs(specs["decoder"])  # tokens = 1, no prefix_len
    return specs


class VisionGraph(nn.Module):
    """pixels (B,3,S,S) -> visual tokens (B,N,d) (projector included), pooled (B,C), and
    where the model has them concept probabilities (B,K) and a novelty score (B,).

    The heads are the inference forms of the trained ones (export/vision_heads.py): equal in
    real arithmetic, fewer nodes, one LayerNorm shared by both."""

    def __init__(self, model: Captioner):
        super().__init__()
        self.encoder, self.tap = model.encoder, model.cfg.vision.feature
        self.channels = model.cfg.vision.channels
        self.eps = shared_norm_eps(model.projector, model.concepts)
        self.projector = FoldedProjector(model.projector)
        self.concepts = (FoldedConceptHead(model.concepts, model.cfg.num_visual_tokens)
                         if model.concepts is not None else None)

    def forward(self, pixels):
        features = self.encoder(pixels, self.tap)  # (B, C, h, w)
        # over the trailing axes: onnxruntime's ReduceMean over the cells' middle axis sums in
        # another order for one image than for two (pooled moved 3.6e-7 with the batch)
        pooled = features.mean(dim=(2, 3))
        cells = channels_last_cells(features, self.channels)  # (B*N, C)
        normed = normalise_cells(cells, self.channels, self.eps)
        outputs = (self.projector(normed), pooled)
        if self.concepts is not None:
            probs = torch.sigmoid(self.concepts(normed))
            outputs += (probs, unfamiliarity(probs))
        return outputs


class CrossKVGraph(nn.Module):
    """visual tokens (B,N,d) -> cross_k, cross_v (L,B,H,N,hd): run once per image."""

    def __init__(self, model: Captioner):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, visual_tokens):
        return self.decoder.cross_kv(visual_tokens)


class DecoderGraph(nn.Module):
    """One decoder pass over T new tokens at ``position`` on a fixed-capacity cache; the
    first ``prefix_len`` tokens of the sequence attend both ways (a VQA question's prefill)."""

    def __init__(self, model: Captioner):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, input_ids, position, prefix_len, cache_k, cache_v, cross_k, cross_v):
        return self.decoder(input_ids, cross_k, cross_v, cache_k, cache_v, position, prefix_len=prefix_len)


GRAPH_MODULES = {"vision": VisionGraph, "cross_kv": CrossKVGraph, "decoder": DecoderGraph,
                 "decoder_step": DecoderStepGraph}


def dummy_inputs(specs: list[TensorSpec], batch: int = 2, tokens: int = 1) -> tuple[torch.Tensor, ...]:
    # BLIP VQA's question graph and answer decoder add a question length ("question", "context")
    sizes = {"batch": batch, "tokens": tokens, "question": 4, "context": 4}
    out = []
    for spec in specs:
        shape = tuple(sizes.get(dim, dim) for dim in spec.shape)
        if spec.dtype == "int64":
            out.append(torch.zeros(shape, dtype=torch.int64) + (2 if shape else 0))
        else:
            out.append(torch.randn(shape))
    return tuple(out)
