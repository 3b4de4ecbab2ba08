"""The prior-only baseline of ``eval --vqa``: the most frequent answer of the same question
text (else of its type), from training answers or leave-one-image-out on the file; and its
column beside the model in ``edgevlm eval --vqa``."""

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from edgevlm.cli.main import cli
from edgevlm.errors import EdgeVLMError
from edgevlm.evaluation.prior_baseline import load_training_answers, prior_answers, prior_report, question_key
from tests.support import SAMPLES


def _q(qid, image, question, answer, kind):
    return {"question_id": qid, "image": image, "question": question, "answers": [answer], "type": kind}


TRAINING = [
    _q(1, "a.jpg", "is there a dog?", "yes", "yesno"), _q(2, "b.jpg", "is there a dog?", "yes", "yesno"),
    _q(3, "c.jpg", "Is there a DOG", "no", "yesno"), _q(4, "a.jpg", "is there a cat?", "no", "yesno"),
    _q(5, "a.jpg", "what color is the dog?", "Brown", "color"),
    _q(6, "b.jpg", "what color is the shirt?", "red", "color"),
    _q(7, "c.jpg", "what color is the car?", "red", "color"),
]


def test_exact_text_then_type_fallback_from_training_answers():
    entries = [_q(11, "x.jpg", "is there a dog?", "no", "yesno"),
               _q(12, "x.jpg", "what color is the dog", "brown", "color"),
               _q(13, "y.jpg", "what color is the hat?", "red", "color"),
               _q(14, "y.jpg", "how many dogs?", "two", "number")]
    answers, seen = prior_answers(entries, TRAINING, leave_image_out=False)
    assert answers == {11: ("yes", 1.0), 12: ("brown", 1.0), 13: ("red", 1.0), 14: ("", 1.0)}
    assert seen == 0.5 and question_key("Is there a DOG?") == "is there a dog"
    model = {"accuracy": 1.0, "by_type": {"color": 1.0, "number": 0.0, "yesno": 0.5}}
    report = prior_report(entries, model, TRAINING, False, "training answers in t.json")
    assert report["by_type"] == {"color": 1.0, "number": 0.0, "yesno": 0.0} and report["accuracy"] == 0.5
    assert report["margin"] == 0.5 and report["margin_by_type"] == {"color": 0.0, "number": 0.0, "yesno": 0.5}
    assert report["source"] == "training answers in t.json" and report["question_text_seen"] == 0.5


def test_leave_one_image_out_never_uses_the_image_s_own_answer():
    pool = [_q(1, "a.jpg", "is there a dog?", "yes", "yesno"), _q(2, "b.jpg", "is there a dog?", "no", "yesno"),
            _q(3, "c.jpg", "is there a dog?", "no", "yesno"), _q(4, "a.jpg", "is there a cat?", "no", "yesno"),
            _q(5, "b.jpg", "what color is the cat?", "black", "color")]
    answers, seen = prior_answers(pool, pool, leave_image_out=True)
    # a: the others say no, no; b: yes, no (tie -> alphabetically first: "no"); c: yes, no -> "no".
    assert [answers[i][0] for i in (1, 2, 3)] == ["no", "no", "no"]
    # "is there a cat?" only on a.jpg: the type's answers on the other images (no, no from b and c).
    assert answers[4] == ("no", 1.0)
    # The only colour question: nothing left of its text or its type on other images.
    assert answers[5] == ("", 1.0) and seen == pytest.approx(3 / 5)
    without, _ = prior_answers(pool, pool, leave_image_out=False)
    assert without[5] == ("black", 1.0)  # it would read its own answer


def test_load_training_answers_errors(tmp_path):
    with pytest.raises(EdgeVLMError, match="--prior-from file not found"):
        load_training_answers(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "is there a dog?", "answers": [], "type": "yesno"}]))
    with pytest.raises(EdgeVLMError, match=r"entry \[0\] needs 'question', 'type' and a non-empty 'answers'"):
        load_training_answers(str(bad))
    bad.write_text(json.dumps({"questions": []}))
    with pytest.raises(EdgeVLMError, match="must hold a non-empty JSON list"):
        load_training_answers(str(bad))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(TRAINING))  # no images needed
    assert load_training_answers(str(good)) == TRAINING


def _vqa_file(tmp_path):
    for name in ("coffee.jpg", "chelsea.jpg"):
        os.makedirs(tmp_path / "images", exist_ok=True)
        shutil.copy(os.path.join(SAMPLES, name), tmp_path / "images" / name)
    entries = [_q(1, "coffee.jpg", "is there a dog?", "no", "yesno"),
               _q(2, "chelsea.jpg", "is there a dog?", "no", "yesno"),
               _q(3, "chelsea.jpg", "what color is the cat?", "brown", "color")]
    path = tmp_path / "qa.json"
    path.write_text(json.dumps(entries))
    return str(path)


def test_eval_vqa_shows_the_prior_beside_the_model(tiny_engine_master, tmp_path):
    path = _vqa_file(tmp_path)
    result = CliRunner().invoke(cli, ["eval", "--vqa", path, "--engine", tiny_engine_master, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {"questions", "accuracy", "by_type", "count_by_type", "yesno_balanced_accuracy", "abstention_rate",
            "with_abstention", "source", "seconds"} < set(report)  # the old keys stay
    prior = report["prior"]
    assert prior["source"] == f"leave-one-image-out on {path}"
    assert prior["by_type"] == {"color": 0.0, "yesno": 1.0}  # the other image's "no"; no other colour question
    assert prior["margin_by_type"]["yesno"] == pytest.approx(report["by_type"]["yesno"] - 1.0)
    training = tmp_path / "train_qa.json"
    training.write_text(json.dumps(TRAINING))
    result = CliRunner().invoke(cli, ["eval", "--vqa", path, "--engine", tiny_engine_master, "--prior-from",
                                      str(training)])
    assert result.exit_code == 0, result.output
    assert f"training answers in {training}" in result.output
    assert "yesno accuracy" in result.output and "prior-only 0.0000" in result.output  # "yes" from TRAINING


def test_eval_vqa_with_a_bad_prior_file_fails_before_answering(tmp_path):
    path = _vqa_file(tmp_path)
    result = CliRunner().invoke(cli, ["eval", "--vqa", path, "--prior-from", str(tmp_path / "none.json")])
    assert result.exit_code == 1 and "error: --prior-from file not found" in result.output


def test_number_questions_are_scored_apart_where_there_is_something_to_count_and_where_not():
    from edgevlm.cli.eval_report_text import vqa_text
    from edgevlm.evaluation.vqa_eval import vqa_report

    entries = [_q(1, "a.jpg", "how many dogs are there?", "two", "number"),
               _q(2, "b.jpg", "how many dogs are there?", "none", "number"),
               _q(3, "c.jpg", "how many dogs are there?", "none", "number"),
               _q(4, "d.jpg", "how many dogs are there?", "three", "number")]
    answers = {1: ("2", 0.9), 2: ("none", 0.9), 3: ("two", 0.9), 4: ("two", 0.9)}
    report = vqa_report(entries, answers, 0.5)
    assert report["number_split"] == {"count": 0.5, "none": 0.5, "questions": {"count": 2, "none": 2}}
    # The guesser: the other photos' most frequent answer, "none" for all four (ties: alphabetical).
    prior = prior_report(entries, report, entries, True, "leave-one-image-out on qa.json")
    assert prior["number_split"] == {"count": 0.0, "none": 1.0, "questions": {"count": 2, "none": 2}}
    text = vqa_text(dict(report, prior=prior, source="e", seconds=0.1), tuned=False)
    assert "number, to count: 0.5000  (2 questions)  prior-only 0.0000  margin +0.5000" in text
    assert "number, none there: 0.5000  (2 questions)  prior-only 1.0000  margin -0.5000" in text
