"""Projector: the encoder's feature grid -> visual tokens at the decoder width."""

from __future__ import annotations

import torch
from torch import nn


class Projector(nn.Module):
    """(B, C, h, w) feature map -> (B, h*w, d_model) visual tokens, with learned 2D positions.

    LayerNorm first: the ReLU6 features are non-negative with a large mean, and normalising
    them lets one learning rate suit the projector and the decoder.
    """

    def __init__(self, in_channels: int, d_model: int, num_tokens: int, dropout: float = 0.1):
        super().__init__()
        self.norm_in = nn.LayerNorm(in_channels)
        self.proj = nn.Sequential(nn.Linear(in_channels, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.pos = nn.Parameter(torch.zeros(1, num_tokens, d_model))
        nn.init.normal_(self.pos, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.norm_out = nn.LayerNorm(d_model)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = features.flatten(2).transpose(1, 2)  # (B, h*w, C)
        tokens = self.proj(self.norm_in(tokens)) + self.pos  # (B, N, d_model)
        return self.norm_out(self.drop(tokens))
