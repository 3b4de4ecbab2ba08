"""The assembled model: EfficientNet-Lite0 -> projector -> text decoder."""

from __future__ import annotations

import torch
from torch import nn

from edgevlm.config import ModelConfig
from edgevlm.models.concept_head import ConceptHead
from edgevlm.models.decoder import TextDecoder
from edgevlm.models.efficientnet_lite import EfficientNetLite0, load_pretrained
from edgevlm.models.projector import Projector


class Captioner(nn.Module):
    def __init__(self, cfg: ModelConfig, pretrained_encoder: bool = False):
        super().__init__()
        self.cfg = cfg
        self.encoder = load_pretrained() if pretrained_encoder else EfficientNetLite0()
        self.encoder.drop_classifier()
        self.projector = Projector(
            cfg.vision.channels, cfg.decoder.d_model, cfg.num_visual_tokens, cfg.decoder.dropout
        )
        self.decoder = TextDecoder(cfg.decoder)
        c = cfg.concepts
        # Optional (absent from older model folders): object existence, and from it unfamiliarity.
        self.concepts = ConceptHead(cfg.vision.channels, len(c.names), c.hidden, c.sharpness) if c.names else None

    def reset_decoder(self) -> None:
        """New projector and decoder with random weights (the encoder and concept head are kept)."""
        cfg = self.cfg
        self.projector = Projector(cfg.vision.channels, cfg.decoder.d_model, cfg.num_visual_tokens, cfg.decoder.dropout)
        self.decoder = TextDecoder(cfg.decoder)

    def encoder_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B,3,S,S) in [-1,1] -> feature map (B,C,h,w) at the configured tap."""
        return self.encoder(pixels, self.cfg.vision.feature)

    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels (B,3,S,S) -> visual tokens (B,N,d_model) and pooled embedding (B,C).

        The pooled embedding (the feature map's spatial mean) is what scene-change gating and
        contrastive alignment compare.
        """
        features = self.encoder_features(pixels)
        return self.projector(features), features.mean(dim=(2, 3))

    def forward(self, features: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Training pass from (cached) features (B,C,h,w) and ids (B,T) -> logits (B,T,V)."""
        cross_k, cross_v = self.decoder.cross_kv(self.projector(features))
        logits, _, _ = self.decoder(input_ids, cross_k, cross_v)
        return logits
