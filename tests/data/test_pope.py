"""POPE-style existence questions: balanced per category and sampling, deterministic, many
wordings, never a "no" the captions leave open, adversarial negatives that co-occur; their
scores; and ``edgevlm eval --pope`` on a tiny engine."""

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from edgevlm.cli.main import cli
from edgevlm.data import object_lexicon
from edgevlm.data.pope_questions import SAMPLINGS, UNTRAINED_WORDINGS, WORDINGS, ask, pope_questions
from edgevlm.data.vqa_questions import EXISTENCE_TEMPLATES
from edgevlm.errors import EdgeVLMError
from edgevlm.evaluation.pope_metrics import balanced_accuracy_interval, check_pope_entries, pope_report
from edgevlm.scripts.pope_questions import main
from tests.support import SAMPLES

# (caption said by all three captions, images): frisbees come with dogs, so the dog-only
# photos are the adversarial negatives for "frisbee".
SCENES = [("a dog catches a frisbee", 6), ("a dog runs", 6), ("a red car", 6), ("a horse stands", 6),
          ("a man rides a bike", 6), ("two children play in the snow", 6)]


def _images(scenes=SCENES):
    images = []
    for text, count in scenes:
        for _ in range(count):
            i = len(images)
            images.append({"image_id": 100 + i, "file_name": f"{i}.jpg", "captions": [text, text, text]})
    return images


def test_balanced_per_category_and_sampling_and_deterministic():
    images = _images()
    entries, left_out = pope_questions(images, per_category=4, min_yes=5)
    assert entries == pope_questions(_images(), per_category=4, min_yes=5)[0]
    assert {e["sampling"] for e in entries} == set(SAMPLINGS)
    assert len({e["question_id"] for e in entries}) == len(entries)
    cells = {(e["sampling"], e["category"]) for e in entries}
    for sampling, category in cells:
        answers = [e["answers"][0] for e in entries if (e["sampling"], e["category"]) == (sampling, category)]
        assert answers.count("yes") == answers.count("no") == 4  # capped by --per-category
    random_categories = {c for s, c in cells if s == "random"}
    assert {"dog", "frisbee", "car", "horse", "bike", "snow", "child"} <= random_categories
    popular = {c for s, c in cells if s == "popular"}
    assert popular < random_categories and len(popular) == (len(random_categories) + 1) // 2
    assert "dog" in popular  # the most frequent (12 images)
    assert left_out["cat"].startswith("0 images with it")


def test_wordings_and_grammar():
    assert len(WORDINGS) >= 8 and len(set(WORDINGS)) == len(WORDINGS)
    assert set(EXISTENCE_TEMPLATES) <= set(WORDINGS) and len(UNTRAINED_WORDINGS) >= 2
    assert not set(UNTRAINED_WORDINGS) & set(EXISTENCE_TEMPLATES)
    entries, _ = pope_questions(_images(), per_category=6, min_yes=5)
    assert {e["wording"] for e in entries} == set(WORDINGS)
    assert sum(not e["trained_wording"] for e in entries) > 0
    assert all(e["trained_wording"] == (e["wording"] in EXISTENCE_TEMPLATES) for e in entries)
    for cell in {(e["sampling"], e["category"]) for e in entries}:  # 6 pairs over 8 wordings: 0 or 1 pair each
        rows = [e for e in entries if (e["sampling"], e["category"]) == cell]
        for wording in WORDINGS:
            answers = [e["answers"][0] for e in rows if e["wording"] == wording]
            assert answers.count("yes") == answers.count("no") <= 1
    assert ask("is there {a}{x}?", "water") == "is there water?"
    assert ask("are there any {xs}?", "water") == "is there any water?"
    assert ask("is there {a}{x}?", "stairs") == "are there stairs?"
    assert ask("is {a}{x} visible?", "stairs") == "are stairs visible?"
    assert ask("are there any {xs}?", "person") == "are there any people?"
    assert ask("does the picture show {a}{x}?", "umbrella") == "does the picture show an umbrella?"


def test_never_a_no_where_a_caption_names_or_leaves_open_the_category():
    scenes = SCENES + [("a person with a ball", 6), ("an animal in the park", 6), ("a dog in the water", 6)]
    images = _images(scenes)
    captions = {image["image_id"]: image["captions"] for image in images}
    entries, _ = pope_questions(images, per_category=40, min_yes=5)
    for entry in entries:
        texts = captions[entry["image_id"]]
        if entry["answers"] == ["no"]:
            assert not any(entry["category"] in object_lexicon.mentioned(t) | object_lexicon.uncertain(t)
                           for t in texts), entry
        else:
            assert all(entry["category"] in object_lexicon.mentioned(t) for t in texts), entry
    # "an animal" leaves dog (and cat, horse, bird) open: never a "no" about those images.
    animal = {image["image_id"] for image in images if image["captions"][0].startswith("an animal")}
    assert not [e for e in entries if e["image_id"] in animal and e["category"] == "dog"]


def test_adversarial_negatives_are_the_most_co_occurring_images():
    images = _images()
    entries, _ = pope_questions(images, per_category=6, min_yes=5)
    dog_only = {image["image_id"] for image in images if image["captions"][0] == "a dog runs"}
    adversarial = {e["image_id"] for e in entries if e["category"] == "frisbee" and e["sampling"] == "adversarial"
                   and e["answers"] == ["no"]}
    assert adversarial == dog_only  # P(frisbee | dog) = 0.5; every other absent image scores 0
    random_no = {e["image_id"] for e in entries if e["category"] == "frisbee" and e["sampling"] == "random"
                 and e["answers"] == ["no"]}
    assert random_no != dog_only  # uniform over the 30 images without a frisbee


def _entry(qid, category, answer, sampling="random", wording="is there {a}{x}?"):
    return {"question_id": qid, "image": f"{qid}.jpg", "question": ask(wording, category), "answers": [answer],
            "type": "yesno", "category": category, "sampling": sampling, "wording": wording,
            "trained_wording": wording in EXISTENCE_TEMPLATES}


def _hand_made_set():
    entries = []
    for sampling in ("random", "adversarial"):
        for category in ("dog", "car"):
            for answer in ("yes", "yes", "no", "no"):
                wording = WORDINGS[0] if len(entries) % 2 == 0 else WORDINGS[-1]  # trained, untrained
                entries.append(_entry(len(entries) + 1, category, answer, sampling, wording))
    return entries


def test_constant_yes_perfect_and_abstaining_answerers():
    entries = _hand_made_set()
    always_yes = pope_report(entries, {e["question_id"]: ("Yes.", 0.9) for e in entries}, threshold=0.5)
    for sampling in ("random", "adversarial"):
        s = always_yes["samplings"][sampling]
        assert s["macro_balanced_accuracy"] == 0.5 and s["yes_ratio"] == 1.0 and s["recall"] == 1.0
        assert s["precision"] == 0.5 and s["accuracy"] == 0.5 and s["abstention_rate"] == 0.0
        dog = s["per_category"]["dog"]
        assert {k: dog[k] for k in ("balanced_accuracy", "yes_ratio", "n")} == {"balanced_accuracy": 0.5, "yes_ratio": 1.0, "n": 4}
        assert dog["ci95"][0] < 0.5 < dog["ci95"][1]
        assert s["prior_only"]["macro_balanced_accuracy"] == 0.5 and s["prior_only"]["accuracy"] == 0.5
        assert set(s["per_wording"]) == {WORDINGS[0], WORDINGS[-1]}
        assert s["per_wording"][WORDINGS[-1]]["trained"] is False and s["per_wording"][WORDINGS[0]]["trained"]
    assert "popular" not in always_yes["samplings"]
    # Perfect, but unsure about the "no" answers about dogs: abstention counted, scores unchanged.
    perfect = {e["question_id"]: (e["answers"][0], 0.2 if e["category"] == "dog" and e["answers"] == ["no"] else 0.9)
               for e in entries}
    report = pope_report(entries, perfect, threshold=0.5)["samplings"]["random"]
    assert report["macro_balanced_accuracy"] == 1.0 and report["f1"] == 1.0 and report["yes_ratio"] == 0.5
    assert report["abstention_rate"] == 0.25 and report["answered_accuracy"] == 1.0
    # Anything that is not "yes" counts as "no": a perfect "no" side, every "yes" missed.
    other = pope_report(entries, {e["question_id"]: ("two", 0.9) for e in entries}, 0.5)["samplings"]["random"]
    assert other["yes_ratio"] == 0.0 and other["macro_balanced_accuracy"] == 0.5 and other["f1"] == 0.0
    # Right about dogs only: the worst category is named.
    dogs = {e["question_id"]: (e["answers"][0] if e["category"] == "dog" else "yes", 1.0) for e in entries}
    worst = pope_report(entries, dogs, 0.5)["samplings"]["random"]["min_category"]
    assert (worst["category"], worst["balanced_accuracy"]) == ("car", 0.5)


def test_interval_says_how_much_a_small_category_can_tell():
    # 5 photos with it and 5 without, one "no" photo answered wrong: 0.9, yet not surely above 0.7;
    # the same rates over 40 + 40 photos are.
    small = [(True, True)] * 5 + [(False, False)] * 4 + [(False, True)]
    large = [(True, True)] * 40 + [(False, False)] * 32 + [(False, True)] * 8
    lo_small, hi_small = balanced_accuracy_interval(small)
    lo_large, hi_large = balanced_accuracy_interval(large)
    assert lo_small < 0.7 < 0.9 < hi_small <= 1.0
    assert 0.7 < lo_large < 0.9 < hi_large < 1.0
    assert hi_large - lo_large < hi_small - lo_small


def test_check_pope_entries_names_the_entry():
    check_pope_entries(_hand_made_set(), "p.json")
    with pytest.raises(EdgeVLMError, match=r"p.json: entry \[0\] is not a POPE question.*pope_questions"):
        check_pope_entries([{"question_id": 1, "answers": ["yes"], "type": "yesno"}], "p.json")
    with pytest.raises(EdgeVLMError, match=r"entry \[0\]"):
        check_pope_entries([dict(_hand_made_set()[0], answers=["two"])], "p.json")


def _coco_with_images(tmp_path):
    """A COCO file of 24 sample photos (copies) and captions giving dog and car 6 images each."""
    os.makedirs(tmp_path / "images")
    photos = sorted(n for n in os.listdir(SAMPLES) if n.endswith(".jpg"))
    images, annotations = [], []
    for i, image in enumerate(_images(SCENES[:4])):
        name = f"{i}.jpg"
        shutil.copy(os.path.join(SAMPLES, photos[i % len(photos)]), tmp_path / "images" / name)
        images.append({"id": image["image_id"], "file_name": name})
        annotations += [{"id": len(annotations) + 1, "image_id": image["image_id"], "caption": c}
                        for c in image["captions"]]
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return str(path)


def test_generator_command_writes_and_prints_counts(tmp_path, capsys):
    captions = _coco_with_images(tmp_path)
    out = str(tmp_path / "pope.json")
    main([captions, out, "--per-category", "2"])
    printed = json.loads(capsys.readouterr().out)
    entries = json.load(open(out))
    assert printed["questions"] == len(entries) and printed["by_sampling"]["random"]["yes"] == \
        printed["by_sampling"]["random"]["no"]
    assert printed["categories"] == len({e["category"] for e in entries if e["sampling"] == "random"})
    first = open(out).read()
    main([captions, out, "--per-category", "2"])
    assert open(out).read() == first
    with pytest.raises(SystemExit, match="error: captions file not found"):
        main([str(tmp_path / "missing.json"), out])
    with pytest.raises(SystemExit, match="--per-category must be at least 1"):
        main([captions, out, "--per-category", "0"])


def test_eval_pope_end_to_end_on_a_tiny_engine(tiny_engine_master, tmp_path, capsys):
    captions = _coco_with_images(tmp_path)
    pope = str(tmp_path / "pope.json")
    main([captions, pope, "--per-category", "2"])
    capsys.readouterr()
    result = CliRunner().invoke(cli, ["eval", "--pope", pope, "--engine", tiny_engine_master, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    entries = json.load(open(pope))
    assert report["questions"] == len(entries) and set(report["samplings"]) == set(SAMPLINGS)
    for s in report["samplings"].values():
        assert 0.0 <= s["macro_balanced_accuracy"] <= 1.0 and s["prior_only"]["macro_balanced_accuracy"] == 0.5
        assert 0.0 <= s["abstention_rate"] <= 1.0 and s["per_category"] and s["per_wording"]
        assert s["calibration"]["questions"] == s["questions"]
        assert s["calibration"]["accuracy"] == pytest.approx(s["accuracy"])  # every answer scored as given
    assert "stability" not in report  # only asked for
    text = CliRunner().invoke(cli, ["eval", "--pope", pope, "--engine", tiny_engine_master, "--limit", "8",
                                    "--stability"])
    assert text.exit_code == 0, text.output
    assert "macro balanced accuracy" in text.output and "per category" in text.output
    assert "per wording" in text.output and "8 questions" in text.output and "ECE" in text.output
    assert "shifted by 1 pixel: the spoken answer (yes / no / not sure) stays the same for" in text.output


@pytest.mark.parametrize("args, message", [
    (["--pope", "missing.json"], "questions file not found: missing.json"),
    (["--pope", "p.json", "--data", "c.json"], "--data and --pope are separate evaluations"),
    (["--pope", "p.json", "--vqa", "q.json"], "--vqa and --pope are separate evaluations"),
    (["--pope", "p.json", "--prior-from", "t.json"], "--prior-from goes with --vqa"),
    (["--pope", "p.json", "--tune-abstention"], "--pope --tune-abstention writes the concept head's threshold"),
    (["--data", "c.json", "--tune-abstention"], "--tune-abstention goes with --vqa or --pope"),
])
def test_eval_pope_errors_are_one_line(args, message):
    result = CliRunner().invoke(cli, ["eval"] + args)
    assert result.exit_code == 1 and f"error: {message}" in result.output, result.output


def test_eval_pope_rejects_a_vqa_file(tmp_path):
    shutil.copy(os.path.join(SAMPLES, "coffee.jpg"), tmp_path / "coffee.jpg")
    path = tmp_path / "qa.json"
    path.write_text(json.dumps([{"question_id": 1, "image": "coffee.jpg", "question": "is there a dog?",
                                 "answers": ["no"], "type": "yesno"}]))
    result = CliRunner().invoke(cli, ["eval", "--pope", str(path)])
    assert result.exit_code == 1 and "entry [0] is not a POPE question" in result.output
