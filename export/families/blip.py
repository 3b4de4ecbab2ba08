"""Hugging Face BLIP as two export families: ``blip`` (BlipForConditionalGeneration, captions:
vision -> cross_kv -> decoder) and ``blip-vqa`` (BlipForQuestionAnswering: vision -> question
encoder over the image -> the answer decoder's cross K/V over the question -> decoder)."""

from __future__ import annotations

from edgevlm.export.families.base import ExportFamily
from edgevlm.export.families.blip_graphs import (BLIP_CAPTION_GRAPH_MODULES, BLIP_VQA_GRAPH_MODULES,
                                                 blip_caption_graph_specs, blip_dims, blip_vqa_graph_specs,
                                                 tiny_blip_caption, tiny_blip_vqa)
from edgevlm.export.families.hf_folder import architectures, load_pretrained
from edgevlm.export.families.hf_sections import (HF_FOLDER_FILES, HFParts, capacity_for, processing_sections,
                                                 read_parts, special_tokens)
from edgevlm.runtime.families.hf import BLIP_NAME, BLIP_VQA_NAME
from edgevlm.runtime.manifest import ModelInfo


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
        text = model.config.text_config
        n, vision_width, layers, heads, hd, d = blip_dims(model)
        return {
            "model": ModelInfo(family=name, n_layers=layers, n_heads=heads, head_dim=hd, d_model=d,
                               vocab_size=text.vocab_size, max_len=text.max_position_embeddings, cache_capacity=capacity,
                               num_visual_tokens=n, pooled_dim=vision_width, vision_feature="blip.vision.last_hidden_state",
                               cache_layout="fixed_capacity"),
            # captions and answers start from [DEC] (bos) and stop on [SEP]
            "special_tokens": special_tokens(parts, text.bos_token_id, text.sep_token_id, text.pad_token_id,
                                             text.sep_token_id),
            "tasks": tasks,
        } | processing_sections(parts, question_format)
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
        validate=_validate,
        write_tiny=_write_tiny(builder),
        **HF_FOLDER_FILES,
    )


BLIP_EXPORT = _family(BLIP_NAME, "BlipForConditionalGeneration", BLIP_CAPTION_GRAPH_MODULES,
                      blip_caption_graph_specs, ("caption",), "none", tiny_blip_caption)
BLIP_VQA_EXPORT = _family(BLIP_VQA_NAME, "BlipForQuestionAnswering", BLIP_VQA_GRAPH_MODULES,
                          blip_vqa_graph_specs, ("vqa",), "cls_sep", tiny_blip_vqa)
