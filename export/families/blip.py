"""Hugging Face BLIP as two export families: ``blip`` (BlipForConditionalGeneration, captions:
vision -> cross_kv -> decoder) and ``blip-vqa`` (BlipForQuestionAnswering: vision -> question
encoder over the image -> the answer decoder's cross K/V over the question -> decoder)."""

from __future__ import annotations

from edgevlm.export.families.base import ExportFamily
from edgevlm.export.families.blip_graphs import (BLIP_CAPTION_GRAPH_MODULES, BLIP_VQA_GRAPH_MODULES,
                                                 blip_caption_graph_specs, blip_vqa_graph_specs, tiny_blip_caption,
                                                 tiny_blip_vqa)
from edgevlm.export.families.hf_folder import architectures, load_pretrained, tokenizer_json, write_text
from edgevlm.export.families.hf_sections import (HFParts, capacity_for, generation_section, preprocess_section,
                                                 read_parts, text_section)
from edgevlm.runtime.families.hf import BLIP_NAME, BLIP_VQA_NAME
from edgevlm.runtime.manifest import ModelInfo, SpecialTokens


def _is_blip(config) -> bool:
    return isinstance(config, dict) and config.get("model_type") == "blip"


def _load(model_cls_name: str):
    def load(model_dir: str):
        import transformers

        model = load_pretrained(getattr(transformers, model_cls_name), model_dir)
        text = model.config.text_config
        # generate() runs the text decoder with its own generation config (made from text_config,
        # not the folder's generation_config.json) and stops on [SEP], padding with [PAD]
        generation = model.text_decoder.generation_config.to_diff_dict() | {
            "eos_token_id": text.sep_token_id, "pad_token_id": text.pad_token_id}
        return model, read_parts(model_dir, generation, max_positions=text.max_position_embeddings)
    return load


def _capacity(model, parts: HFParts) -> int:
    return capacity_for(parts.generation, prompt_len=1,
                        max_positions=model.config.text_config.max_position_embeddings)


def _sections(name: str, tasks: tuple[str, ...], question_format: str):
    def sections(model, parts: HFParts, capacity: int) -> dict:
        text, vision = model.config.text_config, model.config.vision_config
        tokenizer, generation = parts.tokenizer, parts.generation
        unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else text.pad_token_id
        heads = text.num_attention_heads
        return {
            "model": ModelInfo(family=name, n_layers=text.num_hidden_layers, n_heads=heads,
                               head_dim=text.hidden_size // heads, d_model=text.hidden_size, vocab_size=text.vocab_size,
                               max_len=text.max_position_embeddings, cache_capacity=capacity,
                               num_visual_tokens=(vision.image_size // vision.patch_size) ** 2 + 1,
                               pooled_dim=vision.hidden_size, vision_feature="blip.vision.last_hidden_state",
                               cache_layout="fixed_capacity"),
            "preprocess": preprocess_section(parts.image_spec),
            "image_processor": parts.image_spec,
            # captions and answers start from [DEC] (bos) and stop on [SEP]
            "special_tokens": SpecialTokens(bos=text.bos_token_id, eos=text.sep_token_id, pad=text.pad_token_id,
                                            unk=unk, sep=text.sep_token_id),
            "tasks": tasks,
            "generation": generation_section(generation, prompt_len=1),
            "hf_generation": generation,
            "text": text_section(tokenizer, question_format),
        }
    return sections


def _validate(engine, model_dir: str, images_bgr, beam_size: int) -> dict:
    from edgevlm.export.families.blip_reference import BLIP_CAPTION_REFERENCE, BLIP_VQA_REFERENCE
    from edgevlm.export.families.hf_parity import hf_parity

    reference = BLIP_VQA_REFERENCE if engine.manifest.model.family == BLIP_VQA_NAME else BLIP_CAPTION_REFERENCE
    return hf_parity(engine, model_dir, images_bgr, beam_size, reference)


def _write_tiny(builder):
    def write(out_dir: str) -> str:
        from edgevlm.export.families.hf_tiny import write_tiny_hf

        model = builder()
        text = model.config.text_config
        tokens = {"pad": ("[PAD]", text.pad_token_id), "cls": ("[CLS]", 1), "sep": ("[SEP]", text.sep_token_id),
                  "bos": ("[DEC]", text.bos_token_id), "unk": ("[UNK]", 4)}
        return write_tiny_hf(model, out_dir, "blip", model.config.vision_config.image_size, text.vocab_size, tokens, {})
    return write


def _family(name, cls_name, graph_modules, graph_specs, tasks, question_format, builder) -> ExportFamily:
    return ExportFamily(
        name=name,
        recognise=lambda model_dir, config: _is_blip(config) and cls_name in architectures(config),
        load=_load(cls_name),
        graph_modules=graph_modules,
        graph_specs=graph_specs,
        capacity=_capacity,
        sections=_sections(name, tasks, question_format),
        source_files={"checkpoint_sha256": "model.safetensors", "config_sha256": "config.json"},
        tokenizer_file="tokenizer.json",
        validate=_validate,
        write_tiny=_write_tiny(builder),
        write_tokenizer=lambda parts, path: write_text(path, tokenizer_json(parts.tokenizer)),
    )


BLIP_EXPORT = _family(BLIP_NAME, "BlipForConditionalGeneration", BLIP_CAPTION_GRAPH_MODULES,
                      blip_caption_graph_specs, ("caption",), "none", tiny_blip_caption)
BLIP_VQA_EXPORT = _family(BLIP_VQA_NAME, "BlipForQuestionAnswering", BLIP_VQA_GRAPH_MODULES,
                          blip_vqa_graph_specs, ("vqa",), "cls_sep", tiny_blip_vqa)
