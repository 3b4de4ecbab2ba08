"""The gate's CIDEr drop comes with a paired-bootstrap interval over images, and per-image
CIDEr (what the interval resamples) averages to the corpus CIDEr pycocoevalcap reports."""

from __future__ import annotations

import numpy as np
import pytest

from edgevlm.calibration.gate import bootstrap_drop_interval, format_report
from edgevlm.metrics.caption_metrics import score_captions


def test_identical_scores_give_a_zero_interval():
    scores = np.random.default_rng(0).uniform(0, 2, 500)
    assert bootstrap_drop_interval(scores, scores) == (0.0, 0.0)


def test_a_uniform_ten_percent_loss_is_pinned_at_ten_percent():
    scores = np.random.default_rng(1).uniform(0.5, 2, 500)
    low, high = bootstrap_drop_interval(scores, scores * 0.9)
    assert low == pytest.approx(0.1, abs=1e-9) and high == pytest.approx(0.1, abs=1e-9)


def test_noisy_differences_give_an_interval_around_the_point_drop_that_narrows_with_more_images():
    rng = np.random.default_rng(2)
    widths = []
    for n in (200, 3200):
        fp32 = rng.uniform(0, 2, n)
        int8 = np.where(rng.random(n) < 0.5, fp32, rng.uniform(0, 2, n))  # half the captions change
        low, high = bootstrap_drop_interval(fp32, int8)
        point = (fp32.mean() - int8.mean()) / fp32.mean()
        assert low < point < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~1/sqrt(16) = 1/4 of the width


def test_the_interval_is_the_same_for_the_same_seed():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0, 2, 300), rng.uniform(0, 2, 300)
    assert bootstrap_drop_interval(a, b) == bootstrap_drop_interval(a, b)


def test_per_image_cider_averages_to_the_corpus_cider():
    refs = {0: ["a dog runs on the grass", "a brown dog running in a field"],
            1: ["a man rides a bike down the street", "a cyclist on a city road"],
            2: ["two children play in the snow", "kids playing in snow"]}
    hyps = {0: "a dog runs in the grass", 1: "a man is riding a bike", 2: "a dog in the snow"}
    scores = score_captions(refs, hyps, meteor=False, only=("CIDEr",), per_image=True)
    assert len(scores["CIDEr_per_image"]) == 3
    assert np.mean(scores["CIDEr_per_image"]) == pytest.approx(scores["CIDEr"], abs=1e-12)
    assert scores["CIDEr_per_image"][0] > scores["CIDEr_per_image"][2]  # the right dog beats the wrong scene


def test_the_printed_report_gives_the_interval_beside_the_limit():
    report = {"images": 1000, "token_agreement": 0.47, "fp32_BLEU-4": 0.18, "int8_BLEU-4": 0.17, "fp32_CIDEr": 0.47,
              "int8_CIDEr": 0.46, "cider_drop_relative": 0.0148, "cider_drop_ci95": [-0.0061, 0.0352],
              "max_cider_drop": 0.02, "pooled_cosine_mean": 0.993, "pooled_cosine_min": 0.98, "passed": True}
    assert "drop +1.48% (95% interval -0.61% to +3.52%; limit 2%)" in format_report(report)
