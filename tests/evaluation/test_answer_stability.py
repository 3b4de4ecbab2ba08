"""Answer stability under a one-pixel shift: the shift itself, the figures on hand-made
answers, and the flag's refusals."""

import numpy as np
import pytest

from edgevlm.evaluation.answer_stability import shifted, stability_report


def test_a_shift_moves_the_content_one_pixel_and_repeats_the_edge():
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    moved = shifted(image)
    assert moved.shape == image.shape
    np.testing.assert_array_equal(moved[:3, :4], image[1:, 1:])
    np.testing.assert_array_equal(moved[3, :4], image[3, 1:])  # the bottom row repeated
    np.testing.assert_array_equal(moved[:3, 4], image[1:, 4])  # the right column repeated


def test_stability_counts_what_the_user_hears():
    entries = [{"question_id": i, "sampling": "random" if i < 2 else "adversarial"} for i in range(4)]
    answers = {0: ("yes", 0.95), 1: ("no", 0.9), 2: ("yes", 0.8), 3: ("yes", 0.55)}
    moved = {0: ("yes", 0.97),  # same
             1: ("yes", 0.8),   # a no became a yes: a flip
             2: ("yes", 0.59),  # yes -> not sure: changed, not a flip
             3: ("no", 0.58)}   # not sure both times (below 0.6): same
    report = stability_report(entries, answers, moved, threshold=0.6)
    assert report["questions"] == 4 and report["shift_pixels"] == 1
    assert report["same_answer"] == pytest.approx(0.5) and report["yes_no_flips"] == pytest.approx(0.25)
    assert report["by_sampling"]["random"] == {"questions": 2, "same_answer": 0.5, "yes_no_flips": 0.5}
    assert report["by_sampling"]["adversarial"]["same_answer"] == pytest.approx(0.5)
    # a question's own threshold wins over the default
    assert stability_report(entries, answers, moved, 0.6, per_question={2: 0.5})["same_answer"] == pytest.approx(0.75)
    # held back at any threshold (an unsure claim on an unfamiliar photo): "not sure" on that side
    held = stability_report(entries, answers, moved, 0.6, held_back=({1}, {1}))
    assert held["yes_no_flips"] == 0.0 and held["same_answer"] == pytest.approx(0.75)  # 1 is "not sure" twice
    assert stability_report(entries, answers, moved, 0.6, held_back=(set(), {0}))["same_answer"] == pytest.approx(0.25)


@pytest.mark.parametrize("args", [["--data", "captions.json"], ["--pope", "pope.json", "--model", "m"]])
def test_stability_is_refused_without_pope_and_an_engine(args):
    from click.testing import CliRunner

    from edgevlm.cli.main import cli

    result = CliRunner().invoke(cli, ["eval", *args, "--stability"])
    assert result.exit_code == 1
    assert "--stability goes with --pope and an engine" in result.output
