"""Manifest sections every Hugging Face family fills the same way: image processing from
preprocessor_config.json, generation from generation_config.json, decoding from the tokenizer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgevlm.errors import EdgeVLMError
from edgevlm.export.families.hf_folder import load_tokenizer, read_optional_json, tokenizer_json, write_text
from edgevlm.runtime.hf_preprocess import HFImageSpec
from edgevlm.runtime.manifest import Generation, Preprocess, SpecialTokens, TextSettings
from edgevlm.runtime.search_hf import HFGeneration

MIN_CAPACITY = 32  # cache slots: a caption of 20-odd tokens plus its start, rounded up


@dataclass
class HFParts:
    """What an HF family exports besides the torch model: the folder's tokenizer and configs."""

    model_dir: str
    tokenizer: object  # transformers PreTrainedTokenizerFast
    image_spec: HFImageSpec
    generation: HFGeneration


def read_parts(model_dir: str, generation_config: dict, max_positions: int) -> HFParts:
    """generation_config: what generate() reads, e.g. ``model.generation_config.to_diff_dict()``
    (what the checkpoint sets; the rest are generate()'s own defaults)."""
    processor = read_optional_json(model_dir, "preprocessor_config.json", "an image processor config")
    if not processor:
        raise EdgeVLMError(f"{model_dir} has no preprocessor_config.json: edgevlm needs the image processing the "
                           "model was trained with (save the processor with `processor.save_pretrained(DIR)`)")
    try:
        image_spec = HFImageSpec.from_preprocessor_config(processor)
    except ValueError as exc:
        raise EdgeVLMError(f"{model_dir}/preprocessor_config.json: {exc}") from exc
    try:
        generation = HFGeneration.from_generation_config(generation_config, max_position_embeddings=max_positions)
    except ValueError as exc:
        raise EdgeVLMError(f"{model_dir}/generation_config.json: {exc}") from exc
    if not generation.eos_token_ids:
        raise EdgeVLMError(f"{model_dir}: generation_config.json (or config.json) sets no eos_token_id; edgevlm needs "
                           "the token that ends a caption")
    if generation.pad_token_id is None:  # generate() pads finished rows with eos then, and so do we
        generation = dataclasses.replace(generation, pad_token_id=generation.eos_token_ids[0])
    return HFParts(model_dir, load_tokenizer(model_dir), image_spec, generation)


def require_token(value: int | None, what: str, model_dir: str) -> int:
    """A special token id the engine cannot run without, or one line naming it."""
    if value is None:
        raise EdgeVLMError(f"{model_dir}: its generation config sets no {what}; set it in generation_config.json")
    return value


def capacity_for(generation: HFGeneration, prompt_len: int, max_positions: int) -> int:
    """Cache slots for prompt + every new token, in multiples of 8 (the decoder attends over
    all slots each step, so more is slower, never better), within the model's positions."""
    needed = generation.max_total_length(prompt_len)
    slots = max(MIN_CAPACITY, -(-needed // 8) * 8)
    if needed > max_positions:
        raise EdgeVLMError(f"generation needs {needed} positions but the model has {max_positions}; lower "
                           "max_new_tokens or max_length in generation_config.json")
    return min(slots, max_positions)


def preprocess_section(spec: HFImageSpec) -> Preprocess:
    """Our record of the HF image processing (the runtime follows the image_processor section)."""
    height, width = spec.crop or (spec.size if spec.resize == "exact" else (0, 0))
    if height != width or height == 0:
        raise EdgeVLMError(f"the image processor makes {height}x{width} inputs; edgevlm engines take square images "
                           "of a fixed size (set size or crop_size to {height: N, width: N})")
    return Preprocess(image_size=height, mean=spec.mean or (0.0, 0.0, 0.0), std=spec.std or (1.0, 1.0, 1.0),
                      color_order="RGB", resize_mode="squash" if spec.resize == "exact" else spec.resize,
                      interpolation=spec.resample or "none", layout="NCHW", scale=spec.rescale_factor or 1.0)


def generation_section(generation: HFGeneration, prompt_len: int) -> Generation:
    """Our generation record of the HF settings (the search follows the hf_generation section)."""
    return Generation(beam_size=generation.num_beams, max_new_tokens=generation.max_new_tokens_for(prompt_len),
                      no_repeat_ngram=generation.no_repeat_ngram_size, length_penalty=generation.length_penalty,
                      banned_ids=(), no_repeat_word=False)


def processing_sections(parts: HFParts, question_format: str = "none") -> dict:
    """The manifest sections every HF family fills from its folder alike: preprocessing (with
    the exact image processor), generation (with generate()'s settings) and text decoding."""
    return {"preprocess": preprocess_section(parts.image_spec), "image_processor": parts.image_spec,
            "generation": generation_section(parts.generation, prompt_len=1), "hf_generation": parts.generation,
            "text": text_section(parts.tokenizer, question_format)}


def special_tokens(parts: HFParts, bos: int, eos: int, pad: int, sep: int | None = None) -> SpecialTokens:
    """The engine's special ids; a tokenizer without an unknown token gets pad in its place."""
    unk = parts.tokenizer.unk_token_id
    return SpecialTokens(bos=bos, eos=eos, pad=pad, unk=pad if unk is None else unk, sep=sep)


# The ExportFamily fields of every HF family: which folder files provenance hashes, and the
# engine's tokenizer.json written from the folder's tokenizer (whatever files it came in).
HF_FOLDER_FILES = {
    "source_files": {"checkpoint_sha256": "model.safetensors", "config_sha256": "config.json"},
    "tokenizer_file": "tokenizer.json",
    "write_tokenizer": lambda parts, path: write_text(path, tokenizer_json(parts.tokenizer)),
}


def text_section(tokenizer, question_format: str = "none") -> TextSettings:
    """Decoding as ``tokenizer.decode(ids, skip_special_tokens=True)`` does it in transformers 5:
    spacing clean-up only where the tokenizer asks for it and is not BPE (transformers skips
    it for BPE, where it would corrupt the text)."""
    clean = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))
    if clean and type(tokenizer.backend_tokenizer.model).__name__ == "BPE":
        clean = bool(getattr(tokenizer, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output",
                             False))
    return TextSettings(clean_up_spaces=clean, question_format=question_format, cls_id=tokenizer.cls_token_id)
