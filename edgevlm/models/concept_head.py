"""Concept head: which object categories the picture shows, from the encoder's feature map.

Existence questions ("is there a car?") are answered here, not by the decoder: a decoder
trained on captions learns how often Flickr8k mentions a car, and answered from that prior
(per-category balanced accuracy ~0.5). A per-category detector trained with balanced
labels has no prior to fall back on; its probability is the evidence in the picture.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ConceptHead(nn.Module):
    """feature map (B,C,h,w) -> concept logits (B,K).

    Each grid cell scores every concept (LayerNorm, MLP); the cells are pooled by
    log-sum-exp, a soft maximum: one cell holding a small ball is enough (as with max),
    and every cell still gets gradient (unlike max). ``bias_shift`` (K,) is subtracted at the
    end: the log prior odds of the training labels, so a probability of 0.5 means "as
    likely present as absent on this evidence", whatever the category's base rate.
    """

    def __init__(self, channels: int, num_concepts: int, hidden: int = 256, sharpness: float = 4.0):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        # hidden 0: a linear probe per cell (measured against the MLP: see MODEL_CARD.md)
        self.mlp = (nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, num_concepts)) if hidden
                    else nn.Linear(channels, num_concepts))
        self.sharpness = sharpness
        self.register_buffer("bias_shift", torch.zeros(num_concepts))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        cells = features.flatten(2).transpose(1, 2)  # (B, N, C)
        scores = self.mlp(self.norm(cells))  # (B, N, K)
        r = self.sharpness
        pooled = (torch.logsumexp(r * scores, dim=1) - math.log(scores.shape[1])) / r  # (B, K)
        return pooled - self.bias_shift


class NoveltyScore(nn.Module):
    """pooled embedding (B,C) -> how unlike the training photos it is (B,), ~1 on them.

    Mean of two normalised distances to the training distribution of pooled embeddings:
    Mahalanobis within the top-k principal components, and the energy left outside them
    (what PCA cannot reconstruct). Both are divided by their training means, so the score
    reads in units of "a typical training photo".
    """

    def __init__(self, channels: int, components: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("basis", torch.zeros(channels, components))  # orthonormal columns
        self.register_buffer("inv_std", torch.ones(components))  # 1/sqrt(eigenvalue)
        self.register_buffer("scales", torch.ones(2))  # training means of the two distances

    @torch.no_grad()
    def fit(self, pooled: torch.Tensor) -> None:
        """pooled (N,C) float32 of the training photos."""
        mean = pooled.mean(0)
        centred = pooled - mean
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        k = self.basis.shape[1]
        variance = s[:k] ** 2 / (pooled.shape[0] - 1)
        self.mean.copy_(mean)
        self.basis.copy_(vh[:k].T)
        self.inv_std.copy_(variance.clamp_min(1e-8).rsqrt())
        self.scales.fill_(1.0)
        inside, outside = self._distances(pooled)
        self.scales.copy_(torch.stack([inside.mean(), outside.mean()]).clamp_min(1e-8))  # degenerate data: no 0/0

    def _distances(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        centred = pooled - self.mean
        projected = centred @ self.basis  # (B, k)
        inside = ((projected * self.inv_std) ** 2).mean(1) / self.scales[0]
        residual = centred - projected @ self.basis.T
        outside = (residual**2).sum(1) / self.scales[1]
        return inside, outside

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        inside, outside = self._distances(pooled)
        return 0.5 * (inside + outside)
