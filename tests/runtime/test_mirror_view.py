"""The mirror image as a second view: probabilities averaged, captions merged and unmirrored."""

from __future__ import annotations

import numpy as np
import pytest

from edgevlm.runtime.mirror_view import Unmirror, merged_candidates, unmirror_for, with_mirror_view


def test_the_mirror_views_probabilities_are_averaged_in_log_odds():
    plain = np.array([[0.9, 0.5, 0.2, 1.0, 0.0]], np.float32)
    mirrored = np.array([[0.9, 0.9, 0.8, 0.5, 0.0]], np.float32)
    both = with_mirror_view(plain, mirrored)
    assert both.shape == (1, 5) and both.dtype == np.float32
    # agreeing views keep their probability; 0.9 with 0.5: odds 9 and 1 -> 3, p 0.75; 0.2 with 0.8 cancel
    assert both[0, :3] == pytest.approx([0.9, 0.75, 0.5], abs=1e-6)
    assert 0.99 < both[0, 3] < 1.0 and 0.0 <= both[0, 4] < 1e-6  # certainty clipped, never nan


class WordTokenizer:
    """One id per word of a fixed vocabulary (id 0 is [UNK]); other words are [UNK]."""

    unk_id = 0

    def __init__(self, words):
        self.ids = {w: i for i, w in enumerate(["[UNK]"] + words)}

    def encode(self, text):
        return [self.ids.get(w, 0) for w in text.split()]


def test_side_words_swap_where_each_is_one_known_token():
    unmirror = unmirror_for(WordTokenizer(["a", "left", "right", "the", "his"]))
    assert unmirror.swaps == {2: 3, 3: 2} and unmirror.owners == {4, 5}
    # "right" unknown ([UNK]): nothing swapped, and [UNK] never becomes a side word
    assert unmirror_for(WordTokenizer(["a", "left", "the"])).swaps == {}


def test_both_views_captions_merge_once_each_unmirrored_at_their_better_score():
    left, right, dog, on, the, has, now = 1, 2, 3, 4, 5, 6, 7
    unmirror = Unmirror({left: right, right: left}, frozenset({the}))
    plain = [(-1.0, [dog, on, the, left]), (-2.0, [dog])]
    mirrored = [(-0.5, [dog, on, the, right]), (-3.0, [dog]), (-4.0, [on, the, right, dog]), (-5.0, [dog, has, left])]
    merged = merged_candidates(plain, mirrored, unmirror)
    # the mirror's "dog on the right" is the photo's "dog on the left": one caption, at -0.5;
    # "has left" names no side and stays
    assert merged == [(-0.5, [dog, on, the, left]), (-2.0, [dog]), (-4.0, [on, the, left, dog]),
                      (-5.0, [dog, has, left])]
    assert merged_candidates(plain, [], unmirror) == plain
    assert unmirror([right, now]) == [right, now]  # a first word has no owner
