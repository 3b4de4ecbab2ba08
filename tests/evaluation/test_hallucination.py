"""Caption hallucination (CHAIR), repeated words and caption/VQA consistency on hand-made
captions: no model, no torch."""

import pytest

from edgevlm.evaluation.hallucination import chair, consistency, existence_question, repeated_word_rate

DOG_REFS = ["a dog runs on the grass", "a brown dog plays on a lawn", "a dog in a green field"]


def test_absent_object_raises_chair_i_and_chair_s():
    result = chair({1: "a dog and a cat on the grass", 2: "a dog on the grass"}, {1: DOG_REFS, 2: DOG_REFS})
    # mentions: {dog, cat, grass} + {dog, grass}; only the cat is invented, in one caption of two
    assert result["mentions"] == 5 and result["mentions_hallucinated"] == 1
    assert result["chair_i"] == pytest.approx(1 / 5)
    assert result["chair_s"] == pytest.approx(1 / 2)
    assert result["hallucinated_by_category"] == {"cat": 1}


def test_supported_objects_only_give_zero():
    result = chair({1: "a dog runs on the grass"}, {1: DOG_REFS})
    assert result["chair_i"] == 0.0 and result["chair_s"] == 0.0
    assert result["mentions_supported"] == 2 and result["hallucinated_by_category"] == {}


def test_synonym_is_not_a_hallucination():
    result = chair({1: "a puppy on a lawn"}, {1: ["a dog on the grass"]})
    assert result["mentions_hallucinated"] == 0 and result["chair_i"] == 0.0


def test_open_category_is_mentioned_but_not_hallucinated():
    result = chair({1: "a man walks down the street"}, {1: ["a person walks down the street"]})
    # person is named by the reference; "man" is left open by "a person"
    assert result["mentions"] == 3 and result["mentions_open"] == 1
    assert result["chair_i"] == 0.0 and result["chair_s"] == 0.0


def test_man_on_woman_image_is_a_man_hallucination_not_a_person_one():
    result = chair({1: "a man sits on a bench"}, {1: ["a woman sits on a bench", "a lady rests on a bench"]})
    assert result["hallucinated_by_category"] == {"man": 1}
    assert result["chair_i"] == pytest.approx(1 / 3)  # {person, man, bench}
    assert result["person_dog_captions"] == 1 and result["person_dog_hallucination_rate"] == 0.0


def test_invented_people_and_dogs_are_counted_most_first():
    refs = ["a red car parked on a street", "a car on the road"]
    generated = {1: "a man and a dog next to a car", 2: "a dog on the street", 3: "a car on the road"}
    result = chair(generated, {k: refs for k in generated})
    assert list(result["hallucinated_by_category"].items()) == [("dog", 2), ("man", 1), ("person", 1)]
    assert result["person_dog_captions"] == 2 and result["person_dog_hallucination_rate"] == 1.0
    assert result["chair_s"] == pytest.approx(2 / 3)


def test_missing_references_are_an_error():
    with pytest.raises(ValueError, match="no reference captions"):
        chair({1: "a dog"}, {2: ["a dog"]})


def test_repeated_word_rate():
    result = repeated_word_rate(["a dog on green green grass", "a dog runs"])
    assert result["rate"] == 0.5 and result["repeated"] == 1
    assert result["examples"] == ["a dog on green green grass"]
    assert repeated_word_rate([])["rate"] == 0.0


def test_question_wording():
    assert existence_question("dog") == "is there a dog?"
    assert existence_question("umbrella") == "is there an umbrella?"
    assert existence_question("water") == "is there water?"
    assert existence_question("grass") == "is there grass?"
    assert existence_question("stairs") == "are there stairs?"
    assert existence_question("sunglasses") == "are there sunglasses?"


CAPTIONS = {"a": "a dog on the grass", "b": "a man with sunglasses", "c": "a blurry photo"}


def _fake_ask(answer, abstained, calls):
    def ask(key, questions):
        calls.append((key, questions))
        return [(answer, 0.9, abstained) for _ in questions]
    return ask


def test_consistency_all_yes_asks_each_image_once():
    calls = []
    result = consistency(CAPTIONS, _fake_ask("yes", False, calls))
    assert result["consistency"] == 1.0 and result["answered_consistency"] == 1.0
    assert result["questions"] == 5 and result["captions_asked"] == 2  # "c" names nothing: not asked
    assert calls == [("a", ["is there a dog?", "is there grass?"]),
                     ("b", ["is there a man?", "is there a person?", "are there sunglasses?"])]
    assert result["inconsistent_examples"] == []


def test_consistency_all_no():
    result = consistency(CAPTIONS, _fake_ask("no", False, []))
    assert result["consistency"] == 0.0 and result["abstention_rate"] == 0.0
    assert result["by_category"]["dog"] == {"questions": 1, "consistency": 0.0, "answered_consistency": 0.0,
                                            "abstention_rate": 0.0}
    assert result["inconsistent_examples"][0] == {"key": "a", "caption": "a dog on the grass",
                                                  "question": "is there a dog?", "answer": "no"}


def test_consistency_abstentions_are_counted_apart():
    result = consistency(CAPTIONS, _fake_ask("yes", True, []))
    assert result["consistency"] == 0.0 and result["abstention_rate"] == 1.0
    assert result["abstained"] == 5 and result["answered"] == 0
    assert result["inconsistent_examples"] == []  # not answering is not contradicting


def test_consistency_rejects_a_short_answer_list():
    with pytest.raises(ValueError, match="returned 0 answers"):
        consistency({"a": "a dog"}, lambda key, questions: [])
