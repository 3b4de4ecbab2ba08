"""Existence-question routing, caption grounding and the repeat guard (torch-free parts)."""

from __future__ import annotations

import numpy as np
import pytest

from edgevlm.data.object_lexicon import CATEGORIES
from edgevlm.runtime.grounding import ExistenceQuestions, caption_bias, grounded_answer
from edgevlm.runtime.search import SearchSettings, beam_search

NAMES = ("person", "man", "dog", "water", "car", "bench")
ROUTER = ExistenceQuestions(NAMES, tuple(tuple(CATEGORIES[n]) for n in NAMES))


@pytest.mark.parametrize("question, concept", [
    ("is there a dog?", "dog"), ("Are there any dogs?", "dog"), ("do you see a puppy?", "dog"),
    ("can you see a car?", "car"), ("is there a car in the picture?", "car"), ("is a bench visible?", "bench"),
    ("does the picture show a bench?", "bench"), ("is there water?", "water"), ("is there a man?", "man"),
    ("is there a person here?", "person"), ("is there a man in front of me?", "man"),
    ("Is there someone here?", "person"),
    ("is the dog here?", "dog"), ("do you see the dog?", "dog"),  # definite, still "is it there?"
])
def test_existence_questions_are_routed_to_their_concept(question, concept):
    assert NAMES[ROUTER.concept_of(question)] == concept


@pytest.mark.parametrize("question", [
    "is the dog black?",  # presupposes the dog, asks its colour
    "is the man riding a horse?",  # two objects: a relation, not existence
    "what color is the dog?", "how many dogs are there?",  # not yes/no
    "is there a dog on the bench?",  # a relation between two concepts
    "is there a unicorn?",  # no concept: the decoder answers
    "is the dog running?",
])
def test_other_questions_go_to_the_decoder(question):
    assert ROUTER.concept_of(question) is None


@pytest.mark.parametrize("question, concepts", [
    ("how many dogs are there?", {"dog"}), ("How many black and white dogs are in the snow?", {"dog"}),
    ("how many men are there?", {"person", "man"}),  # "none" only if every group naming it is absent
    ("how many people are in the water?", {"person"}), ("how many cars are on the street?", {"car"}),
    ("how many puppies are there?", {"dog"}), ("how many greyhounds are running?", {"dog"}),  # singular form
    ("can you tell me how many little dogs there are?", {"dog"}), ("how many other benches?", {"bench"}),
])
def test_how_many_questions_name_what_they_count(question, concepts):
    assert {NAMES[k] for k in ROUTER.counted_concepts(question)} == concepts
    assert ROUTER.concept_of(question) is None  # not an existence question


@pytest.mark.parametrize("question", [
    "how many are there?", "how many unicorns are there?", "what color is the dog?", "is there a dog?",
    "how much water is there?",
    "how many balloons in the water?",  # the counted word names no concept; "water" is not what is counted
    "how many dogs and men are there?",  # two things counted at once: the decoder's
])
def test_other_questions_count_nothing(question):
    assert ROUTER.counted_concepts(question) == ()


@pytest.mark.parametrize("p_present, count, q, expected", [
    (0.1, "two", 0.9, ("none", 0.9, "concepts")),  # the head is sure nothing is there
    (0.9, "two", 0.8, ("two", 0.72, "decoder")),  # P(two) = P(present) x P(two | present)
    (0.6, "three", 0.5, ("three", 0.3, "decoder")),  # "is there ...?" says yes: no "none", a doubtful count
    (0.49, "two", 1.0, ("none", 0.51, "concepts")),  # "is there ...?" says no: "none"
    (1.0, "two two", 0.0, ("two two", 0.0, "decoder")),  # an unfinished count (no eos) stays a count
])
def test_count_answers_weigh_the_decoder_count_against_the_head(p_present, count, q, expected):
    answer, probability, source = grounded_answer(p_present, count, q, "none")
    assert (answer, source) == (expected[0], expected[2]) and probability == pytest.approx(expected[1])


@pytest.mark.parametrize("question, concepts, absent", [
    ("how many dogs are there?", {"dog"}, "none"),
    ("what color is the dog?", {"dog"}, None),  # no "I don't see": only doubt (grounding.py says why)
    ("What is the man's dog doing?", {"person", "man"}, None),  # the first thing named
    ("is the black and white dog running?", {"dog"}, None),
    ("where are the dogs running?", {"dog"}, None), ("what is in the water?", {"water"}, None),
    ("where is my dog?", {"dog"}, None),
    ("what is on the left of the bench?", {"bench"}, None),  # "the left" places, names nothing
    ("what color is that dog in the picture?", {"dog"}, None),
])
def test_questions_name_what_they_take_to_be_there(question, concepts, absent):
    found = ROUTER.presupposition(question)
    assert {NAMES[k] for k in found.concepts} == concepts and found.absent_answer == absent


@pytest.mark.parametrize("question", [
    "what is happening?", "what color is the sky?", "how many balloons are there?", "is it sunny?",
    "what is he holding?", "is there a dog?",
    "is the rocket on the street?",  # about the rocket, which no concept names; not the street
    "what is the thing that people are holding?",  # "that" here starts a clause
])
def test_questions_that_take_nothing_known_to_be_there(question):
    assert ROUTER.presupposition(question) is None


@pytest.mark.parametrize("question, thing", [
    ("is there a cup?", "a cup"), ("Are there any cups?", "cups"), ("do you see my keys?", "keys"),
    ("can you see the sky?", "the sky"), ("is there a cup of coffee in the picture?", "a cup of coffee"),
    ("is a unicorn visible?", "a unicorn"), ("does the picture show a fire hydrant?", "a fire hydrant"),
    ("is there sugar?", "sugar"), ("do you see his phone?", "his phone"), ("is there an elephant in front of me?",
                                                                           "an elephant"),
])
def test_existence_questions_about_things_no_concept_names_are_unknown_objects(question, thing):
    assert ROUTER.concept_of(question) is None and ROUTER.unknown_object(question) == thing


@pytest.mark.parametrize("question", [
    "is there a dog?", "do you see the dog?",  # a concept: the head answers
    "is there a cup on the bench?",  # a relation to a concept: the decoder's
    "is there a red car?",  # "red" is no existence word: the decoder's, as before
    "is the door open?", "is it raining?", "is this a cup?",  # no "there"/"see": not asking what is in view
    "is there anything red?", "is there something green?", "do you see anything dangerous?",  # a description
    "is there an animal?", "is there anything else?",  # no particular thing: several concepts may be one
    "how many cups are there?", "what is this?", "",
    "is there a cup and a plate and a fork and a knife?",  # a list, not a thing's name
])
def test_other_questions_are_not_about_unknown_objects(question):
    assert ROUTER.unknown_object(question) is None


@pytest.mark.parametrize("question", ["is anyone there?", "is there anybody here?", "do you see somebody?",
                                      "is there a human?"])
def test_words_for_a_person_are_the_person_concept(question):
    assert NAMES[ROUTER.concept_of(question)] == "person" and ROUTER.unknown_object(question) is None


def test_an_answer_about_a_doubtful_thing_is_doubtful_too():
    assert grounded_answer(0.1, "black", 0.9, None) == pytest.approx(("black", 0.09, "decoder"))
    assert grounded_answer(0.95, "black", 0.8, None) == pytest.approx(("black", 0.76, "decoder"))
    # "is the dog black?" -> "no" is right too where there is no dog: 1 - p + p x P(no | dog).
    assert grounded_answer(0.1, "no", 0.9, None) == pytest.approx(("no", 0.99, "decoder"))
    assert grounded_answer(0.1, "yes", 0.9, None) == pytest.approx(("yes", 0.09, "decoder"))


def test_caption_bias_bans_the_words_of_absent_concepts_per_image():
    ids = [[10, 11], [12], [13, 14]]  # concept -> token ids
    probs = np.array([[0.9, 0.05, 0.5], [0.02, 0.9, 0.09]])
    bias = caption_bias(probs, 0.1, ids, vocab_size=16)
    assert bias.shape == (2, 16)
    assert np.isneginf(bias[0, 12]) and np.isfinite(bias[0, [10, 11, 13, 14]]).all()
    assert np.isneginf(bias[1, [10, 11, 13, 14]]).all() and bias[1, 12] == 0


class ScriptedStepper:
    """Logits that always prefer token ``favourite`` (then 5, then eos=3)."""

    def __init__(self, rows: int, vocab: int = 8, favourite: int = 4):
        self.rows, self.vocab, self.favourite = rows, vocab, favourite

    def step(self, tokens, position):
        logits = np.full((len(tokens), self.vocab), -5.0, np.float32)
        logits[:, self.favourite] = 3.0
        logits[:, 5] = 2.0
        logits[:, 3] = 1.0 if position >= 4 else -20.0
        return logits

    def reorder(self, rows):
        pass


@pytest.mark.parametrize("beam", [1, 3])
def test_the_same_word_is_never_said_twice_in_a_row_or_one_word_apart(beam):
    settings = SearchSettings(beam_size=beam, max_new_tokens=6, no_repeat_ngram=0, length_penalty=1.0)
    ids = beam_search(ScriptedStepper(beam), 1, 2, 3, settings)[0]
    assert all(a != b for a, b in zip(ids, ids[1:])), ids  # "green green"
    assert all(a != c for a, c in zip(ids, ids[2:])), ids  # "haired white haired"
    assert ids[:2] == [4, 5], "the stepper's favourites come first, then the guard steps in"
    off = SearchSettings(beam_size=beam, max_new_tokens=6, no_repeat_ngram=0, length_penalty=1.0, no_repeat_word=False)
    repeated = beam_search(ScriptedStepper(beam), 1, 2, 3, off)[0]
    assert any(a == b for a, b in zip(repeated, repeated[1:])), "the guard, not the stepper, prevents the repeat"


@pytest.mark.parametrize("beam", [1, 3])
def test_a_banned_word_is_never_generated_for_its_image_only(beam):
    settings = SearchSettings(beam_size=beam, max_new_tokens=6, no_repeat_ngram=0, length_penalty=1.0)
    bias = np.zeros((2, 8))
    bias[0, 4] = -np.inf  # image 0 may not say token 4
    ids = beam_search(ScriptedStepper(2 * beam), 2, 2, 3, settings, bias)
    assert 4 not in ids[0] and 4 in ids[1]
