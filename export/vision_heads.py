"""The vision graph's heads (projector, concept head) re-written for inference, exactly
equal in real arithmetic to the trained modules (models/projector.py, models/concept_head.py).

Why by hand: onnxruntime does not fold a LayerNorm's affine into the MatMul after it, nor
constants across a MatMul, and in an INT8 graph every float node left standing costs a
DequantizeLinear/QuantizeLinear pair around it. What changes against the trained modules:
- the feature grid becomes a (B*N, C) matrix of cells by a channels-last reshape with
  constant shapes: onnxruntime runs the INT8 convolutions channels-last (NHWC), so this
  cancels its transpose back to NCHW instead of adding a second one, and each Linear on a
  2-D input exports as one Gemm, which INT8 runs as QGemm with its bias inside (a 3-D
  MatMul runs as QLinearMatMul plus a separate QLinearAdd);
- both heads read the same (B, N, C) cells through a LayerNorm, with different affines: the
  normalisation is computed once and each affine is folded into its head's first Linear,
  W' = W diag(gamma), b' = b + W beta;
- the concept head's sharpness r is folded into its last Linear, and the pooling's
  constants, log(N)/r and the prior shift, into one subtraction.
Training keeps the readable modules; only the exporter builds these.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from edgevlm.models.concept_head import ConceptHead
from edgevlm.models.projector import Projector


def fold_norm_affine(norm: nn.LayerNorm, linear: nn.Linear, scale: float = 1.0) -> nn.Linear:
    """Linear(LayerNorm_affine(n)) * scale as one Linear of the un-affined n: (C) -> (out)."""
    gamma, beta = norm.weight.detach(), norm.bias.detach()
    weight, bias = linear.weight.detach(), linear.bias.detach()  # (out, C), (out,)
    folded = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        folded.weight.copy_(weight * gamma[None, :] * scale)
        folded.bias.copy_((bias + weight @ beta) * scale)
    return folded


def scaled_linear(linear: nn.Linear, scale: float) -> nn.Linear:
    """A copy of ``linear`` whose output is multiplied by ``scale``."""
    scaled = nn.Linear(linear.in_features, linear.out_features)
    with torch.no_grad():
        scaled.weight.copy_(linear.weight.detach() * scale)
        scaled.bias.copy_(linear.bias.detach() * scale)
    return scaled


class FoldedProjector(nn.Module):
    """normalised cells (B*N, C) -> visual tokens (B, N, d_model), as Projector.forward."""

    def __init__(self, projector: Projector):
        super().__init__()
        first, gelu, last = projector.proj
        self.proj_in = fold_norm_affine(projector.norm_in, first)
        self.act, self.proj_out = gelu, last
        self.pos, self.norm_out = projector.pos, projector.norm_out  # (1, N, d_model)
        self.num_tokens, self.width = projector.pos.shape[1], projector.pos.shape[2]

    def forward(self, normed: torch.Tensor) -> torch.Tensor:
        tokens = self.proj_out(self.act(self.proj_in(normed))).reshape(-1, self.num_tokens, self.width)
        return self.norm_out(tokens + self.pos)


class FoldedConceptHead(nn.Module):
    """normalised cells (B*N, C) -> concept logits (B, K), as ConceptHead.forward."""

    def __init__(self, head: ConceptHead, num_cells: int):
        super().__init__()
        r = float(head.sharpness)
        self.num_cells, self.num_concepts = num_cells, len(head.bias_shift)
        if isinstance(head.mlp, nn.Linear):  # the linear probe (hidden 0)
            self.mlp = fold_norm_affine(head.norm, head.mlp, scale=r)
        else:
            first, gelu, last = head.mlp
            self.mlp = nn.Sequential(fold_norm_affine(head.norm, first), gelu, scaled_linear(last, r))
        self.inverse_sharpness = 1.0 / r
        # (K,): log(N)/r, the soft maximum's mean correction, plus the prior shift
        self.register_buffer("offset", (math.log(num_cells) / r + head.bias_shift.detach()).clone())

    def forward(self, normed: torch.Tensor) -> torch.Tensor:
        sharpened = self.mlp(normed).reshape(-1, self.num_cells, self.num_concepts)  # (B, N, K): r x the scores
        return torch.logsumexp(sharpened, dim=1) * self.inverse_sharpness - self.offset


def shared_norm_eps(projector: Projector, head: ConceptHead | None) -> float:
    """The one epsilon both heads' LayerNorms use (they must agree to share it)."""
    eps = projector.norm_in.eps
    if head is not None and head.norm.eps != eps:
        raise ValueError(f"the projector's and concept head's LayerNorm eps differ ({eps} vs {head.norm.eps})")
    return eps


def channels_last_cells(features: torch.Tensor, channels: int) -> torch.Tensor:
    """feature map (B, C, h, w) -> cells (B*h*w, C), each image's rows in the order of
    flatten(2). ``channels`` is C as a Python int: the exported Reshape's shape is a constant."""
    return features.permute(0, 2, 3, 1).reshape(-1, channels)


def normalise_cells(cells: torch.Tensor, channels: int, eps: float) -> torch.Tensor:
    """(B*N, C) -> LayerNorm over C without affine (each head folds in its own); ``channels``
    is C as a Python int (a traced size cannot be a LayerNorm's normalized shape)."""
    return F.layer_norm(cells, (channels,), eps=eps)
