"""Caption tokenizer (HF ``tokenizers``, word level): load ``tokenizer.json``, encode, decode."""

from __future__ import annotations

import os

from tokenizers import Tokenizer

from edgevlm.errors import EdgeVLMError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]  # ids 0..3, in this order
SEP_TOKEN = "[SEP]"  # ends a VQA question; models trained for VQA have it (any id)
MAX_ANSWER_TOKENS = 4  # answer words + eos: answers are one or two words


class CaptionTokenizer:
    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
        if ids != [0, 1, 2, 3]:
            raise EdgeVLMError(f"tokenizer special tokens {SPECIAL_TOKENS} must have ids 0..3, got {ids}")
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = ids
        self.sep_id = tokenizer.token_to_id(SEP_TOKEN)  # None: a captioning-only model

    @classmethod
    def load(cls, path: str) -> "CaptionTokenizer":
        if not os.path.isfile(path):
            raise EdgeVLMError(f"tokenizer not found: {path}")
        try:
            return cls(Tokenizer.from_file(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise EdgeVLMError(f"cannot read tokenizer {path}: {exc}") from exc

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Caption -> ids without bos/eos."""
        return self.tokenizer.encode(text).ids

    def question_prompt(self, question: str, capacity: int) -> list[int]:
        """VQA prompt ids: bos + question words + sep, cut so that MAX_ANSWER_TOKENS still fit
        in a sequence of ``capacity`` tokens. The whole prompt is the prefix-LM prefix; the
        answer follows it causally. Training and runtime both build prompts here, so they
        cannot drift apart."""
        if self.sep_id is None:
            raise EdgeVLMError("this model was not trained to answer questions (its tokenizer has no "
                               f"{SEP_TOKEN} token); use a VQA model, e.g. the shipped default")
        specials = {self.pad_id, self.bos_id, self.eos_id, self.sep_id}  # typed "[SEP]" is not a separator
        words = [i for i in self.encode(question) if i not in specials]
        if not words:
            raise EdgeVLMError(f"the question {question!r} has no words; ask e.g. \"is there a dog?\"")
        max_words = capacity - 2 - MAX_ANSWER_TOKENS
        return [self.bos_id] + words[: max(1, max_words)] + [self.sep_id]

    def decode(self, ids) -> str:
        """Ids -> caption text; special tokens and everything after eos dropped."""
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode([i for i in ids if i > self.eos_id and i != self.sep_id])
