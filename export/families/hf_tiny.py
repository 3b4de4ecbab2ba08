"""Tiny random-init Hugging Face model folders (save_pretrained layout, no hub): what the
tests export, validate and run end to end in seconds, one per HF family."""

from __future__ import annotations

import os

from edgevlm.export.families.captioner_tiny import CAPTIONS

END = "<|endoftext|>"


def tiny_word_tokenizer(vocab_size: int, specials: list[str]):
    """A word-level fast tokenizer of exactly ``vocab_size`` ids: the caption words, then
    fillers, then ``specials`` in the last ids (GPT-2 keeps its one special at the end)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({w for caption in CAPTIONS for w in caption.split()} | {"yes", "no", "is", "there", "what"})
    words = words[: vocab_size - len(specials)]
    words += [f"w{i}" for i in range(vocab_size - len(specials) - len(words))]
    vocab = {w: i for i, w in enumerate(words + specials)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=specials[0]))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer


def _image_processor(kind: str, size: int):
    from transformers import BlipImageProcessor, CLIPImageProcessor, ViTImageProcessor

    if kind == "vit":
        return ViTImageProcessor(size={"height": size, "width": size})
    if kind == "blip":
        return BlipImageProcessor(size={"height": size, "width": size})
    if kind == "clip":
        return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    raise ValueError(f"unknown image processor kind {kind!r}")


def write_tiny_hf(model, out_dir: str, image_processor: str, max_new_tokens: int = 10) -> str:
    """Save MODEL (a tiny VisionEncoderDecoderModel) with a word-level tokenizer over its
    vocabulary, an image processor of its image size and a greedy generation config."""
    from transformers import PreTrainedTokenizerFast

    vocab = model.config.decoder.vocab_size
    fast = PreTrainedTokenizerFast(tokenizer_object=tiny_word_tokenizer(vocab, [END]), bos_token=END,
                                   eos_token=END, pad_token=END, unk_token=END)
    model.generation_config.max_new_tokens = max_new_tokens
    model.generation_config.decoder_start_token_id = vocab - 1
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = vocab - 1
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    _image_processor(image_processor, model.config.encoder.image_size).save_pretrained(out_dir)
    return out_dir
