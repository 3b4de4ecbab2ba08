"""Caption tokenizer (HF ``tokenizers``, word level): load ``tokenizer.json``, encode, decode;
and ``clean_question``, what every typed or filed question goes through before it is echoed,
logged, spoken or encoded."""

from __future__ import annotations

import os
import re

from tokenizers import Tokenizer

from edgevlm.errors import EdgeVLMError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]  # ids 0..3, in this order
SEP_TOKEN = "[SEP]"  # ends a VQA question; models trained for VQA have it (any id)
MAX_ANSWER_TOKENS = 4  # answer words + eos: answers are one or two words
MAX_TOKENIZER_BYTES = 64 * 1024 * 1024  # a word-level vocabulary of 1M words is ~30 MB of JSON
MAX_VOCAB_SIZE = 1_000_000  # the embedding is vocab x d_model floats: more is not a caption model
MAX_QUESTION_CHARS = 500  # a spoken question is a few words; longer is a paste or an accident

# Terminal escape sequences (CSI "ESC [ ... final" or its 8-bit form, OSC "ESC ] ... BEL|ESC \\",
# two-byte "ESC x"): echoed to a terminal they move the cursor, recolour or retitle it, so they
# are removed whole, parameters included.
_ANSI = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
                   r"|\x1b[@-_]?")
# Separators (tab, newline, vertical tab, form feed, CR, file/group/record/unit separators,
# NEL, Unicode line/paragraph separators) become a space so the words on either side stay apart.
_SEPARATORS = re.compile(r"[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]")
# The other C0/C1 controls and DEL, and the bidirectional overrides/isolates that make a log
# line or a terminal show text in another order than it is spoken: removed.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def cut_note(dropped: int) -> str:
    """What to tell the user when ``clean_question`` cut a question short."""
    return f"question cut to {MAX_QUESTION_CHARS} characters ({dropped} more dropped)"


def clean_question(text: str, max_chars: int = MAX_QUESTION_CHARS) -> tuple[str, int]:
    """A question as typed or filed -> (text safe to echo, log, speak and encode; characters
    dropped past ``max_chars``). Escape sequences and control characters are removed,
    separators become spaces, runs of spaces one space; then the text is cut at ``max_chars``
    characters (the rest is dropped, never asked as another question)."""
    text = _ANSI.sub("", text)
    text = _CONTROLS.sub("", _SEPARATORS.sub(" ", text))
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text, 0
    return text[:max_chars].rstrip(), len(text) - max_chars


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
        """``tokenizer.json`` -> tokenizer; a file too big, unreadable by ``tokenizers``,
        without the special tokens at ids 0..3 or with an absurd vocabulary is an
        EdgeVLMError naming it."""
        if not os.path.isfile(path):
            raise EdgeVLMError(f"tokenizer not found: {path}")
        size = os.path.getsize(path)
        if size > MAX_TOKENIZER_BYTES:  # checked before parsing: tokenizers reads it all into memory
            raise EdgeVLMError(f"tokenizer {path} is {size / 1e6:.0f} MB, over the {MAX_TOKENIZER_BYTES / 1e6:.0f} MB "
                               "a caption vocabulary needs; use the tokenizer.json written with the model")
        try:
            tokenizer = Tokenizer.from_file(path)
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EdgeVLMError(f"cannot read tokenizer {path}: {message}; use the tokenizer.json written with the model") from exc
        vocab_size = tokenizer.get_vocab_size()
        if not len(SPECIAL_TOKENS) < vocab_size <= MAX_VOCAB_SIZE:
            raise EdgeVLMError(f"tokenizer {path} has {vocab_size} tokens; a caption vocabulary has the "
                               f"{len(SPECIAL_TOKENS)} special tokens plus words, at most {MAX_VOCAB_SIZE}")
        try:
            return cls(tokenizer)
        except EdgeVLMError as exc:
            raise EdgeVLMError(f"tokenizer {path}: {exc}") from exc

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
