"""Train the word-level caption tokenizer from training captions.

Word level (not BPE): captions use a small, closed vocabulary, and one token per word means
fewer decode steps per caption; the output layer (vocab x d_model) dominates a decode step,
so the vocabulary is cut at a minimum word frequency (see ``vocab_report``).
"""

from __future__ import annotations

import json
from collections import Counter

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from edgevlm.runtime.text import SEP_TOKEN, SPECIAL_TOKENS, CaptionTokenizer


def _normalizer():
    # Lowercase, keep letters/digits/apostrophes, so "dog." and "Dog" are one word.
    return normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(r"[^a-z0-9' ]+"), " ")]
    )


def train_tokenizer(captions: list[str], min_frequency: int) -> CaptionTokenizer:
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.normalizer = _normalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=min_frequency)
    tokenizer.train_from_iterator(captions, trainer=trainer)
    return CaptionTokenizer(tokenizer)


def vocab_report(train: list[str], dev: list[str], min_frequencies=(1, 2, 3, 5, 8, 12)) -> list[dict]:
    """For each cut: vocabulary size and the share of dev words / dev captions hitting [UNK]."""
    rows = []
    for min_frequency in min_frequencies:
        tok = train_tokenizer(train, min_frequency)
        encoded = [tok.encode(c) for c in dev]
        words = sum(len(ids) for ids in encoded)
        unk_words = sum(ids.count(tok.unk_id) for ids in encoded)
        rows.append(
            {
                "min_frequency": min_frequency,
                "vocab_size": tok.vocab_size,
                "dev_unk_word_rate": unk_words / max(words, 1),
                "dev_captions_with_unk": sum(tok.unk_id in ids for ids in encoded) / max(len(dev), 1),
            }
        )
    return rows


def word_counts(captions: list[str]) -> Counter:
    norm = _normalizer()
    return Counter(w for c in captions for w in norm.normalize_str(c).split())


def add_words(tokenizer: CaptionTokenizer, words: list[str], separator: bool = True) -> CaptionTokenizer:
    """A copy with ``words`` (those not yet known) and, if asked, the [SEP] special token
    appended at new ids, existing ids unchanged: a trained model keeps its embeddings and
    grows rows for the new ids (``resize_vocab``). Used to teach a captioner VQA answers
    ("yes" never occurs in captions).

    The word-level model's vocabulary is edited in its JSON: ``add_tokens`` would make
    substring-matched added tokens ("yes" inside "eyes").
    """
    data = json.loads(tokenizer.tokenizer.to_str())
    vocab = data["model"]["vocab"]
    for word in words:
        if word not in vocab:
            vocab[word] = len(vocab)
    if separator and SEP_TOKEN not in vocab:
        vocab[SEP_TOKEN] = len(vocab)
        data["added_tokens"].append({"id": vocab[SEP_TOKEN], "content": SEP_TOKEN, "single_word": False,
                                     "lstrip": False, "rstrip": False, "normalized": False, "special": True})
    return CaptionTokenizer(Tokenizer.from_str(json.dumps(data)))
