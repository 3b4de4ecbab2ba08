"""The COCO-QA-style question generator on hand-written captions."""

from edgevlm.data.vqa_questions import existence_questions, generate_questions


def _image(captions, image_id=7):
    return {"image_id": image_id, "file_name": "x.jpg", "captions": captions}


def test_each_question_type_from_a_caption():
    questions = generate_questions([_image([
        "two dogs play in the grass",
        "a man rides a bike down the street",
        "a black dog runs through the water",
        "a boy is playing in the park",
    ])])
    got = {(q["type"], q["question"], q["answers"][0]) for q in questions}
    assert ("number", "how many dogs are in the grass?", "two") in got
    assert ("object", "what is the man riding?", "bike") in got
    assert ("color", "what color is the dog?", "black") in got
    assert ("location", "where is the boy playing?", "park") in got
    assert [q["question_id"] for q in questions] == list(range(1, len(questions) + 1))


def test_no_questions_ask_about_objects_absent_from_every_caption_synonyms_included():
    captions = ["a puppy runs on the beach", "a small dog plays in the water"]
    for seed in range(20):
        (yes_q, yes), (no_q, no) = existence_questions(captions, seed=seed)
        assert (yes, no) == ("yes", "no")
        assert "dog" not in no_q and "water" not in no_q  # puppy counts as dog, beach/water present


def test_generation_is_deterministic_and_balanced():
    images = [_image(["a dog runs on the grass"], i) for i in range(20)]
    first, again = generate_questions(images), generate_questions(images)
    assert first == again
    answers = [q["answers"][0] for q in first if q["type"] == "yesno"]
    assert answers.count("yes") == answers.count("no") == 20


def test_disagreeing_captions_do_not_make_a_question():
    questions = generate_questions([_image(["a black dog runs", "a white dog runs", "a brown dog runs"])])
    assert not [q for q in questions if q["type"] == "color"]


def test_no_question_is_asked_where_the_captions_leave_it_open():
    # "a person" may be a man: asking "is there a man?" -> "no" would teach a wrong denial.
    captions = ["a person rides a bike on a trail", "someone cycling through the woods"]
    for seed in range(30):
        (_, _), (no_q, no) = existence_questions(captions, seed)
        assert not any(word in no_q.split() for word in ("man", "men", "person", "people", "bike", "bikes"))


def test_numbers_without_a_place_and_plural_locations():
    got = {(q["type"], q["question"], q["answers"][0]) for q in generate_questions([_image([
        "three people stand together", "two dogs are running through the snow"])])}
    assert ("number", "how many people are there?", "three") in got
    assert ("location", "where are the dogs running?", "snow") in got


def test_existence_questions_come_in_several_wordings():
    asked = {q for seed in range(60) for q, _ in existence_questions(["a dog runs on the grass"], seed)}
    assert {"is there a dog?", "do you see a dog?", "are there any dogs?"} <= asked


def test_the_wording_probe_recovers_every_generated_object():
    import random

    from edgevlm.data.vqa_questions import CATEGORIES, _ask_existence
    from edgevlm.evaluation.vqa_wording import recover_object

    rng = random.Random(0)
    for category in CATEGORIES:
        for _ in range(10):
            _, noun, _ = recover_object(_ask_existence(category, rng))
            assert noun == category


def _counting_images():
    """Two photos with two dogs, one with three men, two with balloons (no concept), and
    photos without: a cat, an "animal" (which may be a dog: never asked), a bench."""
    rows = [["two dogs play in the grass"] * 5, ["two dogs run on the beach"] * 5,
            ["three men stand on a street"] * 5, ["two balloons float in the sky"] * 5,
            ["two balloons on a table"] * 5, ["a cat sleeps on a chair"] * 5,
            ["an animal runs through a field"] * 5, ["an empty bench in a park"] * 5,
            ["a cat on a wall"] * 5, ["a boat on the water"] * 5]
    return [_image(captions, image_id=i + 1) for i, captions in enumerate(rows)]


def test_absent_counts_balance_each_counted_noun_with_photos_without_it():
    from edgevlm.data.object_lexicon import image_labels

    images = _counting_images()
    questions = generate_questions(images, absent_counts=True)
    by_id = {image["image_id"]: image for image in images}
    counts = [q for q in questions if q["type"] == "number" and q["answers"][0] != "none"]
    nones = [q for q in questions if q["answers"][0] == "none"]
    assert nones and all(q["type"] == "number" and q["answers"] == ["none", "zero"] for q in nones)
    for noun, concepts in (("dogs", ["dog"]), ("men", ["person", "man"])):
        asked = [q for q in nones if q["question"] == f"how many {noun} are there?"]
        assert len(asked) == sum(q["question"].split()[2] == noun for q in counts) > 0  # as many as counted
        for q in asked:  # each about a photo whose captions say every concept naming it is absent
            labels = image_labels(by_id[q["image_id"]]["captions"])
            assert all(labels.get(c) is False for c in concepts), (q, labels)
    assert not [q for q in nones if "balloons" in q["question"]]  # no concept could say they are absent
    assert generate_questions(images, absent_counts=True) == questions
    plain = generate_questions(images)  # training's questions: the same, without the added ones
    assert questions[: len(plain)] == plain and questions[len(plain):] == nones
    assert [q["question_id"] for q in questions] == list(range(1, len(questions) + 1))


def test_the_question_file_is_the_same_whatever_python_s_hash_seed(tmp_path):
    """A 2-2 tie between answers ("two" / "three") is broken alphabetically, not by set order."""
    import json
    import os
    import subprocess
    import sys

    captions = {"images": [{"id": 1, "file_name": "a.jpg"}],
                "annotations": [{"id": i + 1, "image_id": 1, "caption": c} for i, c in enumerate(
                    ["two dogs play in the grass", "three dogs play in the grass", "two dogs play in the grass",
                     "three dogs play in the grass", "a black dog and a white dog"])]}
    source = tmp_path / "captions.json"
    source.write_text(json.dumps(captions))
    files = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"qa{seed}.json"
        subprocess.run([sys.executable, "-m", "edgevlm.scripts.vqa_questions", str(source), str(out)], check=True,
                       env=dict(os.environ, PYTHONHASHSEED=seed), capture_output=True)
        files.append(json.loads(out.read_text()))
    assert files[0] == files[1] == files[2]
    asked = [q["answers"] for q in files[0] if q["question"] == "how many dogs are in the grass?"]
    assert asked == [["three"]]  # 2-2: the alphabetically first
