"""Image-text contrastive alignment (InfoNCE with a learnable temperature, as in CLIP), an
auxiliary training loss: the image's mean visual token and a caption's mean word embedding
(the decoder's tied embeddings) are projected to a shared space, and each image must pick
its own caption out of the batch, and each caption its image.

Training only: nothing here is exported; the head's weights live in the checkpoint.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ContrastiveHead(nn.Module):
    def __init__(self, d_model: int, dim: int = 128):
        super().__init__()
        self.image_proj = nn.Linear(d_model, dim)
        self.text_proj = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def forward(self, visual: torch.Tensor, word_embeddings: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """visual (B,N,d); word_embeddings (B,T,d) of one caption per image; word_mask (B,T)
        True on words (not bos/eos/pad) -> symmetric InfoNCE loss (scalar)."""
        image = F.normalize(self.image_proj(visual.mean(dim=1)), dim=-1)  # (B,D)
        mask = word_mask.unsqueeze(-1).float()
        text = (word_embeddings * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B,d) mean word
        text = F.normalize(self.text_proj(text), dim=-1)
        logits = image @ text.t() * self.log_scale.clamp(max=math.log(100)).exp()  # (B,B)
        target = torch.arange(len(logits), device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
