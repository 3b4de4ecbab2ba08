"""Hugging Face ``GitForCausalLM`` as an export family: the image tokens' K/V of every layer
computed once per image (they never attend to text), the text decoded on our cache.
Captions and VQA (the question is a causal prompt the answer continues)."""

from __future__ import annotations

from edgevlm.export.families.base import ExportFamily
from edgevlm.export.families.git_graphs import GIT_GRAPH_MODULES, git_dims, git_graph_specs, tiny_git
from edgevlm.export.families.hf_folder import architectures, load_pretrained
from edgevlm.export.families.hf_sections import (HF_FOLDER_FILES, HFParts, capacity_for, processing_sections,
                                                 read_parts, require_token, special_tokens)
from edgevlm.runtime.families.hf import GIT_NAME
from edgevlm.runtime.manifest import ModelInfo

QUESTION_ROOM = 48  # cache slots kept for a question prompt and its answer


def _recognise(model_dir: str, config) -> bool:
    return isinstance(config, dict) and (config.get("model_type") == "git" or "GitForCausalLM" in architectures(config))


def _load(model_dir: str):
    from transformers import GitForCausalLM

    model = load_pretrained(GitForCausalLM, model_dir)
    return model, read_parts(model_dir, model.generation_config.to_diff_dict(), max_positions=model.config.max_position_embeddings)


def _capacity(model, parts: HFParts) -> int:
    positions = model.config.max_position_embeddings
    return max(capacity_for(parts.generation, prompt_len=1, max_positions=positions), min(QUESTION_ROOM, positions))


def _sections(model, parts: HFParts, capacity: int) -> dict:
    s, n, d, c, layers, heads, hd, vocab = git_dims(model)
    generation = parts.generation
    return {
        "model": ModelInfo(family=GIT_NAME, n_layers=layers, n_heads=heads, head_dim=hd, d_model=d, vocab_size=vocab,
                           max_len=model.config.max_position_embeddings, cache_capacity=capacity,
                           num_visual_tokens=n, pooled_dim=c, vision_feature="clip.class_token",
                           cache_layout="fixed_capacity"),
        # GIT starts from bos ([CLS]) and stops at eos ([SEP])
        "special_tokens": special_tokens(parts, require_token(generation.bos_token_id, "bos_token_id", parts.model_dir),
                                         generation.eos_token_ids[0], generation.pad_token_id,
                                         parts.tokenizer.sep_token_id),
        "tasks": ("caption", "vqa"),
    } | processing_sections(parts, question_format="cls")


def _validate(engine, model_dir: str, images_bgr, beam_size: int) -> dict:
    from edgevlm.export.families.git_reference import GIT_REFERENCE
    from edgevlm.export.families.hf_parity import hf_parity

    return hf_parity(engine, model_dir, images_bgr, beam_size, GIT_REFERENCE)


def _write_tiny(out_dir: str) -> str:
    from edgevlm.export.families.hf_tiny import write_tiny_hf

    model = tiny_git()
    tokens = {"pad": ("[PAD]", 0), "bos": ("[CLS]", 1), "cls": ("[CLS]", 1), "eos": ("[SEP]", 2), "sep": ("[SEP]", 2),
              "unk": ("[UNK]", 3)}
    return write_tiny_hf(model, out_dir, "clip", model.config.vision_config.image_size, model.config.vocab_size,
                         tokens, {"max_new_tokens": 10, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0})


GIT_EXPORT = ExportFamily(
    name=GIT_NAME,
    recognise=_recognise,
    load=_load,
    graph_modules=GIT_GRAPH_MODULES,
    graph_specs=git_graph_specs,
    capacity=_capacity,
    sections=_sections,
    validate=_validate,
    write_tiny=_write_tiny,
    **HF_FOLDER_FILES,
)
