"""Caption metrics through pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr, plus length and
vocabulary of the generated captions.

pycocoevalcap's PTB tokenizer and METEOR run Java. Without Java, captions are tokenized in
Python (lowercase, punctuation dropped: what PTB tokenization does to these captions) and
METEOR is skipped with a message.
"""

from __future__ import annotations

import logging
import re
import shutil

log = logging.getLogger(__name__)


def java_available() -> bool:
    return shutil.which("java") is not None


def _python_tokenize(captions: dict) -> dict:
    return {
        key: [" ".join(re.findall(r"[a-z0-9]+(?:'[a-z]+)?", c.lower())) for c in values]
        for key, values in captions.items()
    }


def _tokenize(captions: dict[int, list[str]]) -> dict[int, list[str]]:
    if java_available():
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        return PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})
    return _python_tokenize(captions)


def score_captions(references: dict[int, list[str]], hypotheses: dict[int, str], meteor: bool = True,
                   only: tuple[str, ...] | None = None, per_image: bool = False) -> dict:
    """references: image id -> human captions; hypotheses: image id -> one generated caption.

    Returns {"BLEU-1".."BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "mean_length", "distinct_words",
    "images"}; ``only`` restricts to a subset of metric families ("BLEU", "CIDEr", ...). With
    ``per_image``, also "CIDEr_per_image": each image's CIDEr in sorted-id order (their mean is
    "CIDEr"), for paired comparisons of two caption sets.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    ids = sorted(hypotheses)
    refs = _tokenize({i: references[i] for i in ids})
    hyps = _tokenize({i: [hypotheses[i]] for i in ids})
    wanted = lambda family: only is None or family in only  # noqa: E731
    result: dict = {}
    if wanted("BLEU"):
        bleu, _ = Bleu(4).compute_score(refs, hyps, verbose=0)
        result.update({f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)})
    if wanted("METEOR") and meteor:
        if java_available():
            from pycocoevalcap.meteor.meteor import Meteor

            scorer = Meteor()
            result["METEOR"] = float(scorer.compute_score(refs, hyps)[0])
            del scorer  # closes the Java subprocess
        else:
            log.warning("METEOR skipped: it needs Java (apt-get install default-jre-headless)")
            result["METEOR"] = None
    if wanted("ROUGE"):
        result["ROUGE-L"] = float(Rouge().compute_score(refs, hyps)[0])
    if wanted("CIDEr"):
        corpus, each = Cider().compute_score(refs, hyps)
        result["CIDEr"] = float(corpus)
        if per_image:
            result["CIDEr_per_image"] = [float(x) for x in each]
    words = [h.split() for h in (hyps[i][0] for i in ids)]
    result["mean_length"] = sum(map(len, words)) / max(len(words), 1)
    result["distinct_words"] = len({w for ws in words for w in ws})
    result["images"] = len(ids)
    return result
