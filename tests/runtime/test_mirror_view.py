"""The mirror image as a second view: probabilities averaged, captions merged and unmirrored."""

from __future__ import annotations

import numpy as np
import pytest

from edgevlm.runtime.mirror_view import merged_candidates, mirrored_word_ids, with_mirror_view


def test_the_mirror_views_probabilities_are_averaged_in_log_odds():
    plain = np.array([[0.9, 0.5, 0.2, 1.0, 0.0]], np.float32)
    mirrored = np.array([[0.9, 0.9, 0.8, 0.5, 0.0]], np.float32)
    both = with_mirror_view(plain, mirrored)
    assert both.shape == (1, 5) and both.dtype == np.float32
    # agreeing views keep their probability; 0.9 with 0.5: odds 9 and 1 -> 3, p 0.75; 0.2 with 0.8 cancel
    assert both[0, :3] == pytest.approx([0.9, 0.75, 0.5], abs=1e-6)
    assert 0.99 < both[0, 3] < 1.0 and 0.0 <= both[0, 4] < 1e-6  # certainty clipped, never nan


class WordTokenizer:
    """One id per word of a fixed vocabulary; other words spell out letter by letter."""

    def __init__(self, words):
        self.ids = {w: i for i, w in enumerate(words)}

    def encode(self, text):
        return [self.ids[text]] if text in self.ids else [ord(c) for c in text]


def test_left_and_right_swap_where_each_is_one_token():
    assert mirrored_word_ids(WordTokenizer(["a", "left", "right"])) == {1: 2, 2: 1}
    assert mirrored_word_ids(WordTokenizer(["a", "left"])) == {}  # "right" is two tokens: nothing swapped


def test_both_views_captions_merge_once_each_unmirrored_at_their_better_score():
    left, right, dog, on, the = 1, 2, 3, 4, 5
    swaps = {left: right, right: left}
    plain = [(-1.0, [dog, on, the, left]), (-2.0, [dog])]
    mirrored = [(-0.5, [dog, on, the, right]), (-3.0, [dog]), (-4.0, [on, the, right, dog])]
    merged = merged_candidates(plain, mirrored, swaps)
    # the mirror's "dog on the right" is the photo's "dog on the left": one caption, at -0.5
    assert merged == [(-0.5, [dog, on, the, left]), (-2.0, [dog]), (-4.0, [on, the, left, dog])]
    assert merged_candidates(plain, [], swaps) == plain
