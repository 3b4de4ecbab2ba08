"""transformers' own BLIP (captioning and VQA), as the parity reference for their engines."""

from __future__ import annotations

import torch

from edgevlm.export.families.blip_graphs import BLIP_CAPTION_GRAPH_MODULES, BLIP_VQA_GRAPH_MODULES
from edgevlm.export.families.hf_parity import HFReference, generate_kwargs, slow_processor, strip_generated


BLIP_SETS = ("eos_token_ids", "pad_token_id")  # BLIP's generate() passes [SEP] and [PAD] itself


def _load_caption(model_dir: str):
    from edgevlm.export.families.blip import BLIP_EXPORT

    return BLIP_EXPORT.load(model_dir)


def _load_vqa(model_dir: str):
    from edgevlm.export.families.blip import BLIP_VQA_EXPORT

    return BLIP_VQA_EXPORT.load(model_dir)


def _generate(model, pixels: torch.Tensor, settings, beam_size: int) -> list[list[int]]:
    out = model.generate(pixel_values=pixels, **generate_kwargs(settings, skip=BLIP_SETS))
    return strip_generated(out.tolist(), 1, settings.eos_token_ids)  # after [DEC]


def _logits(model, pixels: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """The caption decoder's teacher-forced logits (T,V) over the image embeddings."""
    image = model.vision_model(pixel_values=pixels).last_hidden_state
    return model.text_decoder(input_ids=torch.tensor([ids]), encoder_hidden_states=image).logits[0]


def _answer(model, pixels: torch.Tensor, prompt: list[list[int]], settings) -> list[int]:
    """generate() with the question as input_ids; its answer starts with [DEC]."""
    out = model.generate(pixel_values=pixels, input_ids=torch.tensor(prompt), **generate_kwargs(settings, skip=BLIP_SETS))
    return strip_generated(out.tolist(), 1, settings.eos_token_ids)[0]


def _answer_logits(model, pixels: torch.Tensor, prompt: list[list[int]], ids: list[int]) -> torch.Tensor:
    """The answer decoder's teacher-forced logits (T,V) along ``ids`` ([bos] + answer), over the
    question encoded as generate() encodes it: the text encoder over the image tokens, with no
    question mask (all ones) and an all-ones image mask."""
    image = model.vision_model(pixel_values=pixels).last_hidden_state
    image_mask = torch.ones(image.shape[:-1], dtype=torch.long)
    question = model.text_encoder(input_ids=torch.tensor(prompt), encoder_hidden_states=image,
                                  encoder_attention_mask=image_mask).last_hidden_state
    return model.text_decoder(input_ids=torch.tensor([ids]), encoder_hidden_states=question).logits[0]


BLIP_CAPTION_REFERENCE = HFReference(load=_load_caption, processor=slow_processor, generate=_generate,
                                     logits=_logits, graph_modules=BLIP_CAPTION_GRAPH_MODULES)
BLIP_VQA_REFERENCE = HFReference(load=_load_vqa, processor=slow_processor, generate=None, logits=None,
                                 graph_modules=BLIP_VQA_GRAPH_MODULES, answer=_answer,
                                 answer_logits=_answer_logits)
