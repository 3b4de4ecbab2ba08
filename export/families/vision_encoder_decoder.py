"""Hugging Face ``VisionEncoderDecoderModel`` (ViT/DeiT/BEiT-style encoder + GPT-2 decoder)
as an export family: a save_pretrained folder -> our three graphs + manifest."""

from __future__ import annotations

from edgevlm.errors import EdgeVLMError
from edgevlm.export.families.base import ExportFamily
from edgevlm.export.families.hf_folder import architectures, load_pretrained, tokenizer_json, write_text
from edgevlm.export.families.hf_sections import (HFParts, capacity_for, generation_section, preprocess_section,
                                                 read_parts, text_section)
from edgevlm.export.families.ved_graphs import (VED_GRAPH_MODULES, decoder_shape, num_visual_tokens, tiny_ved,
                                                ved_graph_specs)
from edgevlm.runtime.families.hf import VED_NAME
from edgevlm.runtime.manifest import ModelInfo, SpecialTokens

DECODERS = ("gpt2",)  # decoder model_type values whose graphs ved_graphs.py writes


def _recognise(model_dir: str, config) -> bool:
    return isinstance(config, dict) and (config.get("model_type") == "vision-encoder-decoder"
                                         or "VisionEncoderDecoderModel" in architectures(config))


def _load(model_dir: str):
    from transformers import VisionEncoderDecoderModel

    from edgevlm.export.families.hf_folder import read_config

    decoder_type = (read_config(model_dir).get("decoder") or {}).get("model_type")
    if decoder_type not in DECODERS:
        raise EdgeVLMError(f"{model_dir}: VisionEncoderDecoder with a {decoder_type!r} decoder is not supported yet; "
                           f"supported decoders: {', '.join(DECODERS)}")
    model = load_pretrained(VisionEncoderDecoderModel, model_dir)
    return model, read_parts(model_dir, model.generation_config.to_diff_dict(), max_positions=model.decoder.config.n_positions)


def _capacity(model, parts: HFParts) -> int:
    return capacity_for(parts.generation, prompt_len=1, max_positions=model.decoder.config.n_positions)


def _sections(model, parts: HFParts, capacity: int) -> dict:
    layers, heads, hd, d, vocab = decoder_shape(model)
    tokenizer, generation = parts.tokenizer, parts.generation
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else generation.pad_token_id
    return {
        "model": ModelInfo(family=VED_NAME, n_layers=layers, n_heads=heads, head_dim=hd, d_model=d, vocab_size=vocab,
                           max_len=model.decoder.config.n_positions, cache_capacity=capacity,
                           num_visual_tokens=num_visual_tokens(model), pooled_dim=model.encoder.config.hidden_size,
                           vision_feature=f"{model.encoder.config.model_type}.last_hidden_state",
                           cache_layout="fixed_capacity"),
        "preprocess": preprocess_section(parts.image_spec),
        "image_processor": parts.image_spec,
        "special_tokens": SpecialTokens(bos=generation.start_token_id, eos=generation.eos_token_ids[0],
                                        pad=generation.pad_token_id, unk=unk, sep=None),
        "tasks": ("caption",),
        "generation": generation_section(generation, prompt_len=1),
        "hf_generation": generation,
        "text": text_section(tokenizer),
    }


def _validate(engine, model_dir: str, images_bgr, beam_size: int) -> dict:
    from edgevlm.export.families.hf_parity import hf_parity
    from edgevlm.export.families.ved_reference import VED_REFERENCE

    return hf_parity(engine, model_dir, images_bgr, beam_size, VED_REFERENCE)


def _write_tiny(out_dir: str) -> str:
    from edgevlm.export.families.hf_tiny import END, write_tiny_hf

    model = tiny_ved()
    end = model.config.decoder.vocab_size - 1  # GPT-2 keeps its one special token last
    return write_tiny_hf(model, out_dir, "vit", model.config.encoder.image_size, model.config.decoder.vocab_size,
                         {role: (END, end) for role in ("unk", "bos", "eos", "pad")},
                         {"max_new_tokens": 10, "decoder_start_token_id": end, "eos_token_id": end, "pad_token_id": end})


VED_EXPORT = ExportFamily(
    name=VED_NAME,
    recognise=_recognise,
    load=_load,
    graph_modules=VED_GRAPH_MODULES,
    graph_specs=ved_graph_specs,
    capacity=_capacity,
    sections=_sections,
    source_files={"checkpoint_sha256": "model.safetensors", "config_sha256": "config.json"},
    tokenizer_file="tokenizer.json",
    validate=_validate,
    write_tiny=_write_tiny,
    write_tokenizer=lambda parts, path: write_text(path, tokenizer_json(parts.tokenizer)),
)
