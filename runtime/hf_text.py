"""A Hugging Face checkpoint's tokenizer at run time: its ``tokenizer.json`` through HF
``tokenizers`` (no transformers, no torch), decoding as ``PreTrainedTokenizerFast.decode(ids,
skip_special_tokens=True)`` does, and questions made into the prompt the family was trained on.
"""

from __future__ import annotations

import os

from tokenizers import Tokenizer

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.text import MAX_ANSWER_TOKENS, MAX_TOKENIZER_BYTES

# How a question becomes a prompt, per family (manifest.text.question_format):
#   "cls_sep": [CLS] question [SEP]  (BLIP VQA's question encoder: the tokenizer's own template)
#   "cls":     [CLS] question        (GIT: the answer continues the question causally)
QUESTION_FORMATS = ("none", "cls_sep", "cls")


def clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization`` (WordPiece spacing before punctuation), copied
    so decoding needs no transformers; it applies only where the checkpoint asks for it."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text


class HFTokenizer:
    """tokenizer.json of a Hugging Face checkpoint, with the engine's special ids."""

    def __init__(self, tokenizer: Tokenizer, special_tokens, text_settings):
        self.tokenizer = tokenizer
        self.bos_id, self.eos_id, self.pad_id = special_tokens.bos, special_tokens.eos, special_tokens.pad
        self.sep_id = special_tokens.sep
        self.clean_up_spaces = text_settings.clean_up_spaces
        self.question_format = text_settings.question_format
        self.cls_id = text_settings.cls_id

    @classmethod
    def load(cls, path: str, special_tokens, text_settings) -> "HFTokenizer":
        if not os.path.isfile(path):
            raise EdgeVLMError(f"tokenizer not found: {path}")
        if os.path.getsize(path) > MAX_TOKENIZER_BYTES:
            raise EdgeVLMError(f"tokenizer {path} is over {MAX_TOKENIZER_BYTES / 1e6:.0f} MB; re-export the engine")
        try:
            tokenizer = Tokenizer.from_file(path)
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EdgeVLMError(f"cannot read tokenizer {path}: {message}; re-export the engine") from exc
        return cls(tokenizer, special_tokens, text_settings)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Text -> ids without special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        """Generated ids -> text: cut at eos, special tokens skipped, spacing as the checkpoint's
        tokenizer does it."""
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if self.clean_up_spaces:
            text = clean_up_tokenization(text)
        return text.strip()

    def question_prompt(self, question: str, capacity: int, answer_room: int = MAX_ANSWER_TOKENS) -> list[int]:
        """A question -> the prompt ids this family answers from, cut so ``answer_room`` answer
        tokens still fit in ``capacity`` positions."""
        if self.question_format == "none":
            raise EdgeVLMError("this engine's model answers no questions (a captioning model)")
        words = [i for i in self.encode(question) if i not in (self.cls_id, self.sep_id, self.pad_id)]
        if not words:
            raise EdgeVLMError(f"the question {question!r} has no words; ask e.g. \"is there a dog?\"")
        room = max(1, capacity - 2 - answer_room)
        words = words[:room]
        if self.question_format == "cls_sep":
            return [self.cls_id] + words + [self.sep_id]
        return [self.cls_id] + words
