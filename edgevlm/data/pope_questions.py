"""POPE-style object-existence questions (Li et al., 2023, "Evaluating Object Hallucination
in Large Vision-Language Models") from human captions: a test a category prior cannot pass.

    python -m edgevlm.scripts.pope_questions CAPTIONS.json OUT.json [--per-category N]

For every category of ``object_lexicon`` and each of three samplings, as many "yes" as "no"
questions, so a model that answers "is there a dog?" from how often dogs appear, without
looking, scores 0.5 balanced accuracy in every category:

- random:      the "no" images drawn uniformly from the images where the category is absent;
- popular:     the same, for the most frequent half of the categories only (POPE's negatives
               are the most frequent objects: the ones a prior most wants to say "yes" to);
- adversarial: the "no" images are those whose present objects co-occur most with the
               category (a frisbee asked about a dog-in-a-park photo without one).

Labels come from ``object_lexicon.image_labels`` (present: most captions name it; absent:
no caption names it or leaves it open), so a "no" is never a guess. Deterministic: every
draw is seeded from the category and sampling names (crc32, not Python's salted hash).
"""

from __future__ import annotations

import random
import zlib
from collections import Counter

from edgevlm.data import object_lexicon
from edgevlm.data.vqa_questions import EXISTENCE_TEMPLATES
from edgevlm.errors import EdgeVLMError

MIN_YES = 5  # fewer present images and one odd photo decides the category's score
PER_CATEGORY = 40  # default cap on "yes" (and so on "no") questions per category and sampling
SAMPLINGS = ("random", "popular", "adversarial")
# The wordings the model was trained on (the generator repeats the plain one to weight it),
# then wordings it never saw: the gap between the two groups is how much it learned the words.
TRAINED_WORDINGS = tuple(dict.fromkeys(EXISTENCE_TEMPLATES))
UNTRAINED_WORDINGS = ("is {a}{x} visible?", "does the picture show {a}{x}?", "is there {a}{x} in front of me?")
WORDINGS = TRAINED_WORDINGS + UNTRAINED_WORDINGS


def ask(wording: str, category: str) -> str:
    """A wording ({a} article, {x} noun, {xs} plural) about a category, the verb made to
    agree: "are there stairs?" (plural-only name), "is there any water?" (mass noun).

    The training generator wrote "are there any water?"; this asks the grammatical form of
    the same wording, which still counts as a trained wording."""
    article, singular, plural = object_lexicon.noun_forms(category)
    question = wording.format(a=article, x=singular, xs=plural)
    if category in object_lexicon.PLURAL_ONLY and question.startswith("is "):
        question = "are " + question[len("is "):]
    elif category in object_lexicon.MASS_NOUNS and question.startswith("are "):
        question = "is " + question[len("are "):]
    return question


def _seed(category: str, sampling: str) -> int:
    return zlib.crc32(f"{category}/{sampling}".encode())


def _draw(candidates: list[int], n: int, rng: random.Random) -> list[int]:
    """n of the candidate image indexes, uniformly, back in file order."""
    return sorted(rng.sample(candidates, n)) if len(candidates) > n else list(candidates)


def cooccurrence(labels: list[dict[str, bool]], categories=None) -> dict[str, dict[str, float]]:
    """P(c present | p present) over the images: -> {p: {c: probability}}; ``categories``:
    the lexicon's names (default object_lexicon's)."""
    present = [{c for c, is_present in image.items() if is_present} for image in labels]
    alone = Counter(p for image in present for p in image)
    both = Counter((p, c) for image in present for p in image for c in image if c != p)
    return {p: {c: both[p, c] / alone[p] for c in categories or object_lexicon.CATEGORIES if (p, c) in both}
            for p in alone}


def adversarial_negatives(category: str, absent: list[int], labels: list[dict[str, bool]],
                          given: dict[str, dict[str, float]], n: int) -> list[int]:
    """The n absent-``category`` images (indexes) whose present categories p make it most
    expected: score = sum over p of P(category | p); ties go to the earlier image."""
    def score(index: int) -> float:
        return sum(given.get(p, {}).get(category, 0.0) for p, is_present in labels[index].items() if is_present)

    return sorted(sorted(absent, key=lambda i: (-score(i), i))[:n])


def category_counts(labels: list[dict[str, bool]], categories=None) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """-> ({category: indexes of images where present}, {category: where absent}), file order;
    ``categories``: the lexicon's names (default object_lexicon's)."""
    names = categories or object_lexicon.CATEGORIES
    present = {c: [i for i, image in enumerate(labels) if image.get(c) is True] for c in names}
    absent = {c: [i for i, image in enumerate(labels) if image.get(c) is False] for c in names}
    return present, absent


def pope_questions(images: list[dict], per_category: int = PER_CATEGORY, min_yes: int = MIN_YES,
                   categories: dict[str, tuple[str, ...]] | None = None) -> tuple[list[dict], dict[str, str]]:
    """images: [{"image_id", "file_name", "captions": [...]}] in file order -> (question
    entries of all three samplings, {left-out category: why}). ``categories``: another
    lexicon, name -> words (``unknown_objects.OUTSIDE_LEXICON``); default object_lexicon's.

    Per category and sampling n = min(present, absent, per_category) "yes" and n "no"
    questions; a category with fewer than ``min_yes`` present (or absent) images is left out.
    Images without captions carry no labels and are never asked about.
    """
    if per_category < 1:
        raise EdgeVLMError(f"--per-category must be at least 1 (got {per_category})")
    lexicon = categories or object_lexicon.CATEGORIES
    labels = [object_lexicon.image_labels(list(image["captions"]), categories=lexicon) if image["captions"] else {}
              for image in images]
    present, absent = category_counts(labels, lexicon)
    kept, left_out = [], {}
    for category in lexicon:
        if len(present[category]) < min_yes or len(absent[category]) < min_yes:
            left_out[category] = (f"{len(present[category])} images with it, {len(absent[category])} surely "
                                  f"without (need {min_yes} of each)")
        else:
            kept.append(category)
    # The most frequent half (rounded up), ties in lexicon order: POPE's "popular" objects.
    by_frequency = sorted(kept, key=lambda c: -len(present[c]))
    popular = set(by_frequency[: (len(kept) + 1) // 2])
    given = cooccurrence(labels, lexicon)
    entries: list[dict] = []
    for sampling in SAMPLINGS:
        for category in kept:
            if sampling == "popular" and category not in popular:
                continue
            n = min(len(present[category]), len(absent[category]), per_category)
            rng = random.Random(_seed(category, sampling))
            yes = _draw(present[category], n, rng)
            no = (adversarial_negatives(category, absent[category], labels, given, n) if sampling == "adversarial"
                  else _draw(absent[category], n, rng))
            # Round-robin from a per-category start: every wording gets as many "yes" as "no"
            # questions, and the wordings left out of a small category differ between categories.
            start = _seed(category, sampling) % len(WORDINGS)
            for i, (yes_index, no_index) in enumerate(zip(yes, no)):
                wording = WORDINGS[(start + i) % len(WORDINGS)]
                for index, answer in ((yes_index, "yes"), (no_index, "no")):
                    entries.append({
                        "question_id": len(entries) + 1, "image_id": images[index]["image_id"],
                        "image": images[index]["file_name"], "question": ask(wording, category),
                        "answers": [answer], "type": "yesno", "category": category, "sampling": sampling,
                        "wording": wording, "trained_wording": wording in TRAINED_WORDINGS,
                    })
    return entries, left_out


def summary(entries: list[dict], left_out: dict[str, str]) -> dict:
    """Counts per sampling (questions, yes, no, categories) and the left-out categories."""
    by_sampling = {}
    for sampling in SAMPLINGS:
        rows = [e for e in entries if e["sampling"] == sampling]
        by_sampling[sampling] = {"questions": len(rows), "yes": sum(e["answers"] == ["yes"] for e in rows),
                                 "no": sum(e["answers"] == ["no"] for e in rows),
                                 "categories": len({e["category"] for e in rows})}
    return {"questions": len(entries), "categories": by_sampling["random"]["categories"],
            "by_sampling": by_sampling, "left_out": left_out}
