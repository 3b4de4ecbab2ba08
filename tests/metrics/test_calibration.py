"""Calibration figures (metrics/calibration.py) on hand-made answers, and in the POPE and VQA
reports."""

import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.evaluation.pope_metrics import pope_report
from edgevlm.evaluation.vqa_eval import vqa_report
from edgevlm.metrics.calibration import calibration_report
from edgevlm.metrics.vqa_metrics import choose_threshold


def test_a_calibrated_answerer_has_no_calibration_error():
    # 10 answers at p 0.8 with 8 right, 10 at p 0.6 with 6 right: each bin's accuracy is its probability
    probabilities = [0.8] * 10 + [0.6] * 10
    correct = [True] * 8 + [False] * 2 + [True] * 6 + [False] * 4
    report = calibration_report(probabilities, correct)
    assert report["ece"] == pytest.approx(0.0, abs=1e-12)
    assert report["accuracy"] == pytest.approx(0.7) and report["mean_probability"] == pytest.approx(0.7)
    assert report["brier"] == pytest.approx((8 * 0.04 + 2 * 0.64 + 6 * 0.16 + 4 * 0.36) / 20)
    assert [(b["low"], b["n"], b["accuracy"]) for b in report["bins"]] == [
        (0.6, 10, pytest.approx(0.6)), (0.8, 10, pytest.approx(0.8))]  # p = 0.6 opens its bin, as 0.8 does
    assert report["sure_share"] == 0.0 and report["sure_wrong_rate"] == 0.0
    assert report["sure_accuracy"] is None  # no answer that sure: not "all wrong"


def test_an_overconfident_answerer_is_shown_as_such():
    # always p 0.99, right half the time: ECE 0.49, and every wrong answer was said as sure
    report = calibration_report([0.99] * 4, [True, False, True, False])
    assert report["ece"] == pytest.approx(0.49)
    assert report["sure_share"] == 1.0 and report["sure_accuracy"] == 0.5
    assert report["sure_wrong_rate"] == pytest.approx(0.5)
    assert report["bins"][0]["low"] == pytest.approx(0.95) and report["bins"][0]["high"] == pytest.approx(1.0)


def test_probability_one_and_zero_land_in_the_end_bins_and_bad_input_is_refused():
    report = calibration_report([0.0, 1.0], [False, True])
    assert [b["n"] for b in report["bins"]] == [1, 1] and report["ece"] == 0.0
    # every edge k/20 opens the bin [k/20, (k+1)/20); 1.0 joins the last one
    edges = [k / 20 for k in range(21)]
    bins = calibration_report(edges, [True] * 21)["bins"]
    assert [b["low"] for b in bins] == edges[:20] and bins[-1]["n"] == 2
    with pytest.raises(ValueError, match="must lie in"):
        calibration_report([float("nan")], [True])
    assert calibration_report([], [])["questions"] == 0
    with pytest.raises(ValueError, match="must lie in"):
        calibration_report([1.5], [True])
    with pytest.raises(ValueError, match="2 probabilities but 1"):
        calibration_report([0.5, 0.6], [True])


def test_pope_and_vqa_reports_carry_calibration():
    entries = [{"question_id": i, "category": "dog", "sampling": "random", "wording": "is there a {}?",
                "trained_wording": True, "answers": ["yes" if i % 2 else "no"]} for i in range(8)]
    # says "yes" to all at p 0.9: right on the 4 "yes" questions only
    report = pope_report(entries, {e["question_id"]: ("yes", 0.9) for e in entries}, 0.5)
    calibration = report["samplings"]["random"]["calibration"]
    assert calibration["accuracy"] == 0.5 and calibration["ece"] == pytest.approx(0.4)
    assert calibration["sure_wrong_rate"] == pytest.approx(0.5)
    questions = [{"question_id": 1, "answers": ["yes"], "type": "yesno"},
                 {"question_id": 2, "answers": ["two"], "type": "number"}]
    answers = {1: ("yes", 0.7), 2: ("three", 0.95)}
    calibration = vqa_report(questions, answers, 0.5, per_question={1: 0.6})["calibration"]
    assert set(calibration) == {"all", "concepts", "decoder"}
    assert calibration["concepts"]["questions"] == 1 and calibration["concepts"]["accuracy"] == 1.0
    assert calibration["decoder"]["sure_wrong_rate"] == 1.0 and calibration["all"]["questions"] == 2
    assert set(vqa_report(questions, answers, 0.5)["calibration"]) == {"all", "decoder"}


def test_questions_held_back_abstain_at_any_threshold_in_every_report():
    entries = [{"question_id": i, "category": "dog", "sampling": "random", "wording": "is there a {}?",
                "trained_wording": True, "answers": ["yes"], "type": "yesno"} for i in range(4)]
    answers = {0: ("yes", 0.95), 1: ("yes", 0.8), 2: ("no", 0.85), 3: ("yes", 0.7)}
    held = {1}  # said "I'm not sure" whatever the threshold (an unfamiliar image's unsure claim)
    random = pope_report(entries, answers, 0.5, held_back=held)["samplings"]["random"]
    assert random["abstention_rate"] == pytest.approx(0.25) and random["answered_accuracy"] == pytest.approx(2 / 3)
    assert random["balanced_accuracy"] == pytest.approx(pope_report(entries, answers, 0.5)["samplings"]["random"][
        "balanced_accuracy"])  # scored as given: holding back changes what is said, not the model's answer
    scores = vqa_report(entries, answers, 0.5, held_back=held)["with_abstention"]
    assert scores["coverage"] == pytest.approx(0.75) and scores["accuracy"] == pytest.approx(0.5)
    # right at 0.95, held back at 0.8, wrong at 0.85, right at 0.7: without the held-back one
    # answering down to 0.7 scores 2 - 2 x 1 = 0 < 1 (down to 0.95); with it counted, 0.8 would tie
    assert choose_threshold(entries, answers, 2.0, held_back=held) == pytest.approx(0.95)
    assert choose_threshold(entries, answers, 1.0, held_back=held) == pytest.approx(0.95)
    assert choose_threshold(entries, {**answers, 1: ("yes", 0.9)}, 1.0) == pytest.approx(0.9)


def test_a_costlier_wrong_answer_raises_the_threshold():
    # right at 0.9, 0.8; wrong at 0.7; right at 0.6, 0.55; wrong at 0.52
    questions = [{"question_id": i, "answers": ["yes"]} for i in range(6)]
    answers = {0: ("yes", 0.9), 1: ("yes", 0.8), 2: ("no", 0.7), 3: ("yes", 0.6), 4: ("yes", 0.55), 5: ("no", 0.52)}
    # cost 1: answering down to 0.55 scores 4 - 1 = 3, the best; cost 2: down to 0.8 scores 2,
    # down to 0.55 scores 4 - 2 = 2 (a tie keeps the stricter threshold)
    assert choose_threshold(questions, answers, 1.0) == pytest.approx(0.55)
    assert choose_threshold(questions, answers, 2.0) == pytest.approx(0.8)
    assert choose_threshold(questions, answers) == pytest.approx(0.8)  # the default cost is 2
    for cost in (0.0, float("nan"), float("inf")):
        with pytest.raises(EdgeVLMError, match="cost of a wrong answer must be a finite number > 0"):
            choose_threshold(questions, answers, cost)
