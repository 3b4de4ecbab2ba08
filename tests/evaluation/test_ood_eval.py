"""``eval --ood``: AUROC by ranks, confident person/dog claims on fake descriptions, wrong answers
said to person/dog questions, the OOD listing's errors, and the command end to end on a tiny
engine (which has no novelty output)."""

import json
import os
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgevlm.cli.main import cli
from edgevlm.errors import EdgeVLMError
from edgevlm.evaluation.ood_eval import (MAX_EXAMPLES, auroc, claim_counts, describe_files, is_confident_claim,
                                         load_ood, ood_report)
from edgevlm.evaluation.ood_questions import (MAX_WRONG_EXAMPLES, OOD_QUESTIONS, ood_question_report,
                                              question_entries, says_absent)
from edgevlm.runtime.engine import Description, Sight, VQAAnswer


def test_auroc_perfect_reversed_and_tied():
    assert auroc([3.0, 4.0, 5.0], [0.0, 1.0]) == 1.0
    assert auroc([0.0, 1.0], [3.0, 4.0, 5.0]) == 0.0
    assert auroc([2.0, 2.0], [2.0, 2.0, 2.0]) == 0.5
    assert auroc([np.inf, np.inf], [np.inf]) == 0.5  # a saturated score separates nothing
    assert auroc([0.8, 0.4], [0.5, 0.1]) == pytest.approx(3 / 4)  # 0.4 loses to 0.5 only


def test_auroc_counts_ties_half_as_pairs_do():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40), rng.integers(0, 4, 30)  # many ties
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auroc(pos, neg) == pytest.approx(pairs)


def test_auroc_needs_both_sides_and_no_nan():
    assert auroc([], [1.0]) is None and auroc([1.0], []) is None
    with pytest.raises(ValueError, match="NaN"):
        auroc([np.nan], [1.0])


SAID = {
    "man": Description("a man in a red shirt", "a man in a red shirt", False),
    "dog": Description("a dog runs", "a dog runs", False),
    "hedged_dog": Description("I'm not sure what this is. My best guess: a dog runs", "a dog runs", True),
    "dark": Description("It is too dark to see.", "", False, "dark"),
    "car": Description("a red car on a street", "a red car on a street", False),
}


def test_confident_claims_are_named_unhedged_and_not_a_frame_message():
    assert [k for k, d in SAID.items() if is_confident_claim(d)] == ["man", "dog"]
    counts = claim_counts(list(SAID.values()))
    assert counts == {"images": 5, "confident_claims": 2, "confident_claim_rate": 0.4, "hedged": 1,
                      "hedged_rate": 0.2, "frame_issues": 1}
    assert claim_counts([])["confident_claim_rate"] == 0.0


def test_report_per_group_with_and_without_novelty():
    ood = [SAID["man"], SAID["hedged_dog"], SAID["dark"], SAID["car"]]
    groups = ["skimage", "skimage", "nothing", "synthetic"]
    dev = [SAID["dog"], SAID["hedged_dog"], SAID["car"], SAID["man"]]
    files = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    report = ood_report(groups, ood, dev, np.array([5.0, 6.0, 0.8, 9.0]), np.array([1.0, 2.0, 1.5, 0.7]), 3.0, files)
    assert report["ood_images"] == 4 and report["dev_photos"] == 4
    n = report["novelty"]
    assert n["available"] and n["auroc"] == pytest.approx(13 / 16)  # the dark frame outscores 1 of 4 dev photos
    assert n["auroc_by_group"] == {"nothing": 0.25, "skimage": 1.0, "synthetic": 1.0}
    assert n["ood_median"] == pytest.approx(5.5) and n["dev_median"] == pytest.approx(1.25)
    assert report["hedging"] == {"unfamiliar_above": 3.0, "dev_false_alarm_rate": 0.25, "ood_hedged_rate": 0.25}
    claims = report["confident_claims"]
    assert claims["ood"]["confident_claims"] == 1 and claims["dev"]["confident_claims"] == 2
    assert claims["ood"]["by_group"]["skimage"] == claim_counts(ood[:2])
    assert list(claims["ood"]["by_group"]) == ["nothing", "skimage", "synthetic"]
    assert report["examples"][0] == {"file": "a.jpg", "group": "skimage", "text": "a man in a red shirt",
                                     "confident_claim": True, "hedged": False, "issue": None}
    json.dumps(report, allow_nan=False)  # plain JSON

    bare = ood_report(groups, ood, dev, None, None, 0.0)
    assert bare["novelty"]["available"] is False and bare["novelty"]["note"] == "no novelty output"
    assert bare["novelty"]["auroc"] is None


def test_examples_put_confident_claims_first_take_groups_in_turn_and_stop_at_ten():
    ood = [SAID["car"]] * 12 + [SAID["dog"]]
    report = ood_report(["synthetic"] * 13, ood, [SAID["car"]], None, None, 0.0)
    assert len(report["examples"]) == MAX_EXAMPLES and report["examples"][0]["text"] == "a dog runs"
    groups = ["skimage"] * 5 + ["synthetic"] * 5
    report = ood_report(groups, [SAID["man"]] * 10, [SAID["car"]], None, None, 0.0, [f"{i}" for i in range(10)])
    assert [e["file"] for e in report["examples"][:4]] == ["0", "5", "1", "6"]


def test_saturated_novelty_gives_no_median():
    report = ood_report(["a"], [SAID["car"]], [SAID["car"]], np.array([np.inf]), np.array([np.inf]), 1.0)
    assert report["novelty"]["ood_median"] is None and report["novelty"]["auroc"] == 0.5
    json.dumps(report, allow_nan=False)


class FakeEngine:
    """Describes every image as "a dog"; novelty = mean pixel value, from the vision graph."""

    def __init__(self, novelty: bool):
        outputs = ["visual_tokens", "pooled"] + (["novelty"] if novelty else [])
        self.manifest = SimpleNamespace(graph=lambda name: SimpleNamespace(gives=lambda output: output in outputs))
        self.seen = 0

    def preprocess(self, image):
        return image.astype(np.float32).transpose(2, 0, 1)

    def see(self, pixels):
        self.seen += len(pixels)
        return Sight(pixels, pixels.mean((2, 3)), None, pixels.mean((1, 2, 3)))

    def describe_images(self, images, beam_size=None):
        return [Description("a dog", "a dog", False) for _ in images]


def _write_images(folder, values) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, value in enumerate(values):
        paths.append(os.path.join(folder, f"{i}.png"))
        cv2.imwrite(paths[-1], np.full((8, 8, 3), value, np.uint8))
    return paths


def test_describe_files_scores_novelty_only_where_the_engine_has_it(tmp_path):
    paths = _write_images(str(tmp_path), [10, 20, 30])
    engine = FakeEngine(novelty=True)
    described, novelty = describe_files(engine, paths, None, batch_size=2)
    assert [d.caption for d in described] == ["a dog"] * 3 and novelty.tolist() == [10.0, 20.0, 30.0]
    engine = FakeEngine(novelty=False)
    assert describe_files(engine, paths, None)[1] is None and engine.seen == 0  # no extra vision runs


def _ood_dir(tmp_path) -> str:
    folder = str(tmp_path / "ood")
    rng = np.random.default_rng(0)
    entries = []
    for i, group in enumerate(["synthetic", "synthetic", "nothing"]):
        name = f"{group}_{i}.jpg"
        image = (rng.integers(0, 255, (48, 64, 3)) if group == "synthetic" else np.zeros((48, 64, 3))).astype(np.uint8)
        os.makedirs(folder, exist_ok=True)
        cv2.imwrite(os.path.join(folder, name), image)
        entries.append({"file": name, "group": group, "source": "test", "licence": "test"})
    with open(os.path.join(folder, "ood.json"), "w") as f:
        json.dump(entries, f)
    return folder


def test_load_ood_errors(tmp_path):
    with pytest.raises(EdgeVLMError, match="has no ood.json.*edgevlm.scripts.ood_images"):
        load_ood(str(tmp_path))
    folder = _ood_dir(tmp_path)
    assert [e["group"] for e in load_ood(folder)] == ["synthetic", "synthetic", "nothing"]
    listing = os.path.join(folder, "ood.json")
    with open(listing, "w") as f:
        json.dump([{"file": "synthetic_0.jpg"}], f)
    with pytest.raises(EdgeVLMError, match=r'entry \[0\] needs "file" and "group"'):
        load_ood(folder)
    with open(listing, "w") as f:
        json.dump([{"file": "gone.jpg", "group": "x"}], f)
    with pytest.raises(EdgeVLMError, match="gone.jpg not found"):
        load_ood(folder)
    with open(listing, "w") as f:
        f.write("{oops")
    with pytest.raises(EdgeVLMError, match="cannot read"):
        load_ood(folder)


def test_eval_ood_on_a_tiny_engine(tiny_engine_dir, tiny_dataset, tmp_path):
    folder = _ood_dir(tmp_path)
    data = os.path.join(tiny_dataset, "captions_dev.json")
    result = CliRunner().invoke(cli, ["eval", "--ood", folder, "--data", data, "--engine", tiny_engine_dir, "--json",
                                      "--limit", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ood_images"] == 3 and report["dev_photos"] == 2 and report["source"] == tiny_engine_dir
    assert report["novelty"] == {"available": False, "note": "no novelty output", "auroc": None,
                                 "auroc_by_group": {}, "ood_median": None, "dev_median": None}
    ood = report["confident_claims"]["ood"]
    assert set(ood["by_group"]) == {"synthetic", "nothing"} and ood["by_group"]["nothing"]["frame_issues"] == 1
    assert report["hedging"]["dev_false_alarm_rate"] == 0.0  # the tiny engine never hedges
    questions = report["questions"]
    assert questions["available"] and questions["questions"] == 3 * len(OOD_QUESTIONS)
    assert questions["by_group"]["nothing"]["frame_messages"] == len(OOD_QUESTIONS)  # the black frame: no answers
    assert sum(c["questions"] for c in questions["by_question"].values()) == questions["questions"]
    text = CliRunner().invoke(cli, ["eval", "--ood", folder, "--data", data, "--engine", tiny_engine_dir])
    assert text.exit_code == 0, text.output
    assert "no novelty output" in text.stdout and "confident person/dog claims" in text.stdout
    assert "questions about people and dogs" in text.stdout and f"of {3 * len(OOD_QUESTIONS)})" in text.stdout


def _answer(answer, probability, abstained=False, source="concepts"):
    return VQAAnswer("I'm not sure" if abstained else answer, answer, probability, abstained, source)


def test_ood_questions_count_only_claims_said_as_wrong():
    entries = question_entries([{"file": "a.jpg", "path": "/x/a.jpg", "group": "synthetic"},
                                {"file": "b.jpg", "path": "/x/b.jpg", "group": "nothing"}])
    assert [e["question"] for e in entries[:len(OOD_QUESTIONS)]] == list(OOD_QUESTIONS)
    assert len({e["question_id"] for e in entries}) == 2 * len(OOD_QUESTIONS)
    answers = [_answer("black", 0.5, source="decoder"), _answer("no", 0.95), _answer("yes", 0.6, abstained=True),
               _answer("2", 0.9, source="decoder"), _answer("0", 0.8, source="decoder"), _answer("yes", 0.95)]
    answers += [VQAAnswer("It is too dark to see.", "", 0.0, True, "frame") for _ in OOD_QUESTIONS]
    report = ood_question_report(entries, answers)
    # said and wrong: "black" at 0.5, "2" at exactly 0.9 (sure), "yes" at 0.95 (sure); "no", "0" right; one doubt
    assert (report["said_wrong"], report["said_wrong_sure"], report["not_sure"], report["frame_messages"]) == (3, 2, 1, 6)
    assert report["said_wrong_rate"] == pytest.approx(3 / 12) and report["said_wrong_sure_rate"] == pytest.approx(2 / 12)
    assert report["by_group"]["nothing"]["said_wrong"] == 0 and report["by_question"]["is there a dog?"]["said_wrong"] == 0
    assert [(e["question"], e["answer"]) for e in report["examples"]] == [  # the surest first
        ("what color is the dog?", "yes"), ("how many people are there?", "2"), ("is there a person?", "black")]
    json.dumps(report)  # plain numbers only
    with pytest.raises(ValueError, match="one answer per question"):
        ood_question_report(entries, answers[:-1])


@pytest.mark.parametrize("text, absent", [
    ("no", True), ("None.", True), ("0", True), ("zero people", True), ("nobody", True), ("no one", True),
    ("nothing", True), ("there are none", True), ("no dogs", True),
    ("yes", False), ("two", False), ("brown", False), ("a dog", False), ("", False)])
def test_what_counts_as_saying_nothing_is_there(text, absent):
    assert says_absent(text) is absent


def test_ood_question_examples_stop_at_ten_and_a_caption_only_engine_is_skipped():
    entries = question_entries([{"file": f"{i}.jpg", "path": f"/x/{i}.jpg", "group": "g"} for i in range(3)])
    report = ood_question_report(entries, [_answer("yes", 0.5 + i / 100) for i in range(len(entries))])
    assert report["said_wrong"] == 18 and len(report["examples"]) == MAX_WRONG_EXAMPLES
    assert report["examples"][0]["probability"] == pytest.approx(0.67)
    from edgevlm.cli.eval_cmd import _ood_questions
    from edgevlm.cli.eval_report_text import ood_questions_text

    skipped = _ood_questions(SimpleNamespace(answers_questions=False), [])
    assert skipped == {"available": False, "note": "this engine does not answer questions"}
    assert "skipped (this engine does not answer questions)" in ood_questions_text(skipped)[0]


@pytest.mark.parametrize("args, message", [
    (["--ood", "X"], "--ood OOD_DIR compares out-of-domain images with dev photos: give --data"),
    (["--ood", "X", "--vqa", "q.json"], "--ood OOD_DIR compares out-of-domain images with dev photos"),
    (["--ood", "X", "--data", "d.json", "--model", "M"], "--ood evaluates an engine"),
    (["--ood", "X", "--data", "d.json", "--tune-abstention"], "--tune-abstention goes with --vqa"),
    (["--ood", "X", "--data", "d.json", "--prior-from", "p.json"], "--prior-from goes with --vqa"),
])
def test_eval_ood_bad_combinations(args, message):
    result = CliRunner().invoke(cli, ["eval"] + args)
    assert result.exit_code == 1 and f"error: {message}" in result.output


def test_eval_ood_checks_the_folder_before_running(tiny_dataset, tmp_path):
    data = os.path.join(tiny_dataset, "captions_dev.json")
    result = CliRunner().invoke(cli, ["eval", "--ood", str(tmp_path), "--data", data, "--engine", "nowhere"])
    assert result.exit_code == 1 and "has no ood.json" in result.output
