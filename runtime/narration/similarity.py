"""Do two captions mean the same? Content-word overlap, with the threshold measured on real
caption pairs (``python -m edgevlm.scripts.tune_similarity``).

Hand-written rather than a sentence-embedding model: the runtime must stay small and
torch-free, and captions from one model differ mostly by swapped or dropped words, which
word overlap measures well.
"""

from __future__ import annotations

import re

# Words that carry no scene content: "a man in a red shirt" ~ "the man wearing red shirt".
STOPWORDS = frozenset(
    "a an the is are is's it its in on at of to with and or while near by for from into onto "
    "over under up down out through there their his her he she they them this that some".split()
)
SAME_MEANING_THRESHOLD = 0.5  # replaced by the measured value in DESIGN.md / MODEL_CARD.md


def content_words(caption: str) -> frozenset[str]:
    """Lower-cased words minus stopwords, with a plural 's' dropped ("dogs" ~ "dog")."""
    words = re.findall(r"[a-z]+", caption.lower())
    return frozenset(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
                     for w in words if w not in STOPWORDS)


def caption_similarity(a: str, b: str) -> float:
    """Jaccard overlap of content words, in [0, 1]; 1.0 for two empty captions."""
    wa, wb = content_words(a), content_words(b)
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)
