"""transformers' own VisionEncoderDecoderModel, as the parity reference for its engines."""

from __future__ import annotations

import torch

from edgevlm.export.families.hf_parity import HFReference, generate_kwargs, slow_processor, strip_generated
from edgevlm.export.families.ved_graphs import VED_GRAPH_MODULES


def _load(model_dir: str):
    from edgevlm.export.families.vision_encoder_decoder import VED_EXPORT

    return VED_EXPORT.load(model_dir)


def _generate(model, pixels: torch.Tensor, settings, beam_size: int) -> list[list[int]]:
    out = model.generate(pixel_values=pixels, **generate_kwargs(settings))
    return strip_generated(out.tolist(), 1, settings.eos_token_ids)  # after the decoder start token


def _logits(model, pixels: torch.Tensor, ids: list[int]) -> torch.Tensor:
    return model(pixel_values=pixels, decoder_input_ids=torch.tensor([ids])).logits[0]


VED_REFERENCE = HFReference(load=_load, processor=slow_processor, generate=_generate, logits=_logits,
                            graph_modules=VED_GRAPH_MODULES)
