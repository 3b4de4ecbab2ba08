"""The things no concept names (edgevlm/data/unknown_objects.py): outside the lexicon, every
generated question about them routed to "I'm not sure" by the engine's router, and POPE
questions about them balanced per category like the lexicon's."""

from collections import Counter

import pytest

from edgevlm.data.object_lexicon import CATEGORIES
from edgevlm.data.pope_questions import SAMPLINGS, WORDINGS, ask, pope_questions
from edgevlm.data.unknown_objects import OUTSIDE_LEXICON
from edgevlm.runtime.grounding import ExistenceQuestions

ROUTER = ExistenceQuestions(tuple(CATEGORIES), tuple(tuple(words) for words in CATEGORIES.values()))


def test_no_word_of_an_unknown_thing_names_a_concept():
    known = {word for words in CATEGORIES.values() for word in words}
    assert not known & {word for words in OUTSIDE_LEXICON.values() for word in words}
    assert not set(OUTSIDE_LEXICON) & set(CATEGORIES)


@pytest.mark.parametrize("thing", sorted(OUTSIDE_LEXICON))
def test_every_wording_about_an_unknown_thing_is_routed_to_not_sure(thing):
    for wording in WORDINGS:
        question = ask(wording, thing)
        assert ROUTER.concept_of(question) is None, question
        assert ROUTER.unknown_object(question) is not None, question


def test_pope_questions_about_unknown_things_are_balanced_per_category():
    scenes = [("a dog pulls a sled in the snow", 6), ("a man plays a guitar", 6), ("a dog runs on the grass", 6),
              ("a boy on a swing", 6)]
    images = []
    for text, count in scenes:
        for _ in range(count):
            images.append({"image_id": len(images), "file_name": f"{len(images)}.jpg", "captions": [text] * 3})
    entries, left_out = pope_questions(images, per_category=4, min_yes=5, categories=OUTSIDE_LEXICON)
    assert {e["category"] for e in entries} == {"sled", "guitar", "swing"}  # the rest never appear
    assert "cup" in left_out and "dog" not in left_out  # the lexicon's categories are not asked about
    for sampling in SAMPLINGS:
        counts = Counter((e["category"], e["answers"][0]) for e in entries if e["sampling"] == sampling)
        for category in {c for c, _ in counts}:
            assert counts[category, "yes"] == counts[category, "no"] > 0
    assert all(ROUTER.unknown_object(e["question"]) for e in entries)
