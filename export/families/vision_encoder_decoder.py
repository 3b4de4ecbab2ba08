"""Hugging Face ``VisionEncoderDecoderModel`` (ViT/DeiT/BEiT-style encoder + GPT-2 or BERT-style
decoder) as an export family: a save_pretrained folder -> our three graphs + manifest."""

from __future__ import annotations

from edgevlm.errors import EdgeVLMError
from edgevlm.export.families.base import ExportFamily
from edgevlm.export.families.hf_folder import architectures, load_pretrained
from edgevlm.export.families.hf_sections import (HF_FOLDER_FILES, HFParts, capacity_for, processing_sections,
                                                 read_parts, require_token, special_tokens)
from edgevlm.export.families.ved_graphs import (DECODERS, TINY_BERT_IDS, VED_GRAPH_MODULES, decoder_shape,
                                                max_positions, num_visual_tokens, tiny_ved, ved_graph_specs,
                                                write_token_embeddings_file)
from edgevlm.runtime.families.hf import VED_NAME
from edgevlm.runtime.manifest import ModelInfo


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
    return model, read_parts(model_dir, model.generation_config.to_diff_dict(), max_positions=max_positions(model))


def _capacity(model, parts: HFParts) -> int:
    return capacity_for(parts.generation, prompt_len=1, max_positions=max_positions(model))


def _sections(model, parts: HFParts, capacity: int) -> dict:
    layers, heads, hd, d, vocab = decoder_shape(model)
    generation = parts.generation
    return {
        "model": ModelInfo(family=VED_NAME, n_layers=layers, n_heads=heads, head_dim=hd, d_model=d, vocab_size=vocab,
                           max_len=max_positions(model), cache_capacity=capacity,
                           num_visual_tokens=num_visual_tokens(model), pooled_dim=model.encoder.config.hidden_size,
                           vision_feature=f"{model.encoder.config.model_type}.last_hidden_state",
                           cache_layout="fixed_capacity"),
        "special_tokens": special_tokens(parts, require_token(generation.start_token_id, "decoder_start_token_id",
                                                              parts.model_dir),
                                         generation.eos_token_ids[0], generation.pad_token_id),
        "tasks": ("caption",),
    } | processing_sections(parts)


def _validate(engine, model_dir: str, images_bgr, beam_size: int) -> dict:
    from edgevlm.export.families.hf_parity import hf_parity
    from edgevlm.export.families.ved_reference import VED_REFERENCE

    return hf_parity(engine, model_dir, images_bgr, beam_size, VED_REFERENCE)


def write_tiny_ved(out_dir: str, decoder: str = "gpt2") -> str:
    """A tiny ViT + ``decoder`` ("gpt2" or "bert") folder whose tokenizer holds the decoder's
    special tokens at the ids its config and generation config use."""
    from edgevlm.export.families.hf_tiny import END, write_tiny_hf

    model = tiny_ved(decoder=decoder)
    config = model.config
    start, eos, pad = config.decoder_start_token_id, config.eos_token_id, config.pad_token_id
    if decoder == "bert":
        tokens = {"cls": ("[CLS]", start), "sep": ("[SEP]", eos), "pad": ("[PAD]", pad),
                  "unk": ("[UNK]", TINY_BERT_IDS["unk"])}
    else:
        tokens = {role: (END, start) for role in ("unk", "bos", "eos", "pad")}
    return write_tiny_hf(model, out_dir, "vit", config.encoder.image_size, config.decoder.vocab_size, tokens,
                         {"max_new_tokens": 10, "decoder_start_token_id": start, "eos_token_id": eos,
                          "pad_token_id": pad})


VED_EXPORT = ExportFamily(
    name=VED_NAME,
    recognise=_recognise,
    load=_load,
    graph_modules=VED_GRAPH_MODULES,
    graph_specs=ved_graph_specs,
    capacity=_capacity,
    sections=_sections,
    validate=_validate,
    write_tiny=write_tiny_ved,  # the GPT-2 one; tests build the BERT one by name
    write_files=write_token_embeddings_file,  # the rows decoder_step takes as input
    **HF_FOLDER_FILES,
)
