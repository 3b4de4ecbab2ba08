"""Tiny random-init Hugging Face model folders (save_pretrained layout, no hub): what the
tests export, validate and run end to end in seconds, one per HF family."""

from __future__ import annotations

import os

from edgevlm.export.families.captioner_tiny import CAPTIONS

END = "<|endoftext|>"


def tiny_word_tokenizer(vocab_size: int, specials: dict[str, int]):
    """A word-level fast tokenizer of exactly ``vocab_size`` ids: ``specials`` (token -> id) at
    their ids, the caption words (and question words) in the other ids, then fillers."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    words = sorted({w for caption in CAPTIONS for w in caption.split()} | {"yes", "no", "is", "there", "what"})
    by_id = {i: token for token, i in specials.items()}
    free = iter(words + [f"w{i}" for i in range(vocab_size)])
    vocab = {(by_id[i] if i in by_id else next(free)): i for i in range(vocab_size)}
    unk = next(iter(specials))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens([AddedToken(token, special=True) for token in specials])
    return tokenizer


def _image_processor(kind: str, size: int):
    """The slow (Pillow) image processor of each family, at the tiny image size."""
    from transformers import BlipImageProcessorPil, CLIPImageProcessorPil, ViTImageProcessorPil

    if kind == "vit":
        return ViTImageProcessorPil(size={"height": size, "width": size})
    if kind == "blip":
        return BlipImageProcessorPil(size={"height": size, "width": size})
    if kind == "clip":  # GIT: shortest edge, then a center crop
        return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    raise ValueError(f"unknown image processor kind {kind!r}")


def write_tiny_hf(model, out_dir: str, image_processor: str, image_size: int, vocab_size: int,
                  tokens: dict[str, tuple[str, int]], generation: dict) -> str:
    """Save MODEL with a word-level tokenizer over its vocabulary whose special tokens are
    ``tokens`` (role "bos"/"eos"/"pad"/"unk"/"cls"/"sep" -> (text, id)), the family's image
    processor at ``image_size`` and ``generation`` written into its generation config."""
    from transformers import PreTrainedTokenizerFast

    specials = {text: i for text, i in tokens.values()}
    fast = PreTrainedTokenizerFast(tokenizer_object=tiny_word_tokenizer(vocab_size, specials),
                                   **{f"{role}_token": text for role, (text, _) in tokens.items()})
    for key, value in generation.items():
        setattr(model.generation_config, key, value)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    _image_processor(image_processor, image_size).save_pretrained(out_dir)
    return out_dir
