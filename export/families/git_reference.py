"""transformers' own GitForCausalLM, as the parity reference for its engines."""

from __future__ import annotations

import torch

from edgevlm.export.families.git_graphs import GIT_GRAPH_MODULES, git_dims
from edgevlm.export.families.hf_parity import HFReference, generate_kwargs, slow_processor, strip_generated


def _load(model_dir: str):
    from edgevlm.export.families.git import GIT_EXPORT

    return GIT_EXPORT.load(model_dir)


def _generate(model, pixels: torch.Tensor, settings, beam_size: int, prompts=None) -> list[list[int]]:
    """Captions (prompts None: generate() starts from bos) or answers continuing (B,P) prompts."""
    if prompts is None:
        out = model.generate(pixel_values=pixels, **generate_kwargs(settings))
        return strip_generated(out.tolist(), 1, settings.eos_token_ids)
    out = model.generate(pixel_values=pixels, input_ids=torch.tensor(prompts), **generate_kwargs(settings))
    return strip_generated(out.tolist(), len(prompts[0]), settings.eos_token_ids)


def _logits(model, pixels: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """Text logits (T,V): GIT's forward also returns the N image positions' logits first."""
    n = git_dims(model)[1]
    return model(pixel_values=pixels, input_ids=torch.tensor([ids])).logits[0, n:]


def _answer(model, pixels: torch.Tensor, prompt: list[list[int]], settings) -> list[int]:
    return _generate(model, pixels, settings, 1, prompts=prompt)[0]


GIT_REFERENCE = HFReference(load=_load, processor=slow_processor, generate=_generate, logits=_logits,
                            graph_modules=GIT_GRAPH_MODULES, answer=_answer)
