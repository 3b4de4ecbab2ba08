"""VQA training rows: generated questions -> prompt + answer ids, with the prefix length.

Row layout (int64, padded to ``max_len``): bos, question words, sep | answer words, eos.
The prefix (bos..sep) attends both ways; the loss is on the answer words and eos only.
"""

from __future__ import annotations

import os
import re

import numpy as np

from edgevlm.data.coco import CaptionedImage
from edgevlm.data.vqa_questions import generate_questions
from edgevlm.runtime.text import MAX_ANSWER_TOKENS, CaptionTokenizer


def questions_for(items: list[CaptionedImage]) -> list[dict]:
    """The deterministic generator over these images' captions (VQA-style dicts)."""
    return generate_questions([{"image_id": i.image_id, "file_name": os.path.basename(i.path),
                                "captions": list(i.captions)} for i in items])


def answer_words(questions: list[dict]) -> list[str]:
    """Every word of every answer, in first-seen order (to extend a caption vocabulary)."""
    seen: dict[str, None] = {}
    for q in questions:
        for word in q["answers"][0].split():
            seen.setdefault(word, None)
    return list(seen)


def frequent_question_words(questions: list[dict], min_count: int = 20) -> list[str]:
    """Words of the question templates ("any" in "are there any dogs?") seen at least
    ``min_count`` times: added to a caption vocabulary so that they are not [UNK]."""
    counts: dict[str, int] = {}
    for q in questions:
        for word in re.findall(r"[a-z0-9']+", q["question"].lower()):
            counts[word] = counts.get(word, 0) + 1
    return sorted(word for word, count in counts.items() if count >= min_count)


def encode_questions(questions: list[dict], items: list[CaptionedImage], tokenizer: CaptionTokenizer,
                     max_len: int):
    """-> ids (Q, max_len), lengths (Q,), prefix_lens (Q,), owners (Q,) image index in ``items``."""
    index = {os.path.basename(item.path): i for i, item in enumerate(items)}
    rows, lengths, prefixes, owners = [], [], [], []
    for q in questions:
        prompt = tokenizer.question_prompt(q["question"], max_len)
        answer = tokenizer.encode(q["answers"][0])[: MAX_ANSWER_TOKENS - 1] + [tokenizer.eos_id]
        ids = prompt + answer
        rows.append(ids + [tokenizer.pad_id] * (max_len - len(ids)))
        lengths.append(len(ids))
        prefixes.append(len(prompt))
        owners.append(index[q["image"]])
    return (np.array(rows, np.int64).reshape(-1, max_len), np.array(lengths, np.int64),
            np.array(prefixes, np.int64), np.array(owners, np.int64))
