"""Search logic against a fake decoder whose next-token scores are a fixed table."""

import numpy as np

from edgevlm.runtime.search import SearchSettings, beam_search

EOS, BOS = 3, 2


class TableStepper:
    """Logits depend only on the previous token (a bigram table); tracks reorders like a cache."""

    def __init__(self, table: np.ndarray, rows: int):
        self.table = table
        self.reorders = []
        self.positions = []

    def step(self, tokens, position):
        self.positions.append(position)
        return self.table[tokens].astype(np.float32)

    def reorder(self, rows):
        self.reorders.append(rows.copy())


def _table(vocab=8, default=-10.0):
    return np.full((vocab, vocab), default)


def test_greedy_follows_the_argmax_until_eos():
    t = _table()
    t[BOS, 5] = 0
    t[5, 6] = 0
    t[6, EOS] = 0
    stepper = TableStepper(t, 1)
    out = beam_search(stepper, 1, BOS, EOS, SearchSettings(beam_size=1, max_new_tokens=10))
    assert out == [[5, 6]]
    assert stepper.positions == [0, 1, 2]


def test_beam_finds_the_sequence_greedy_misses():
    t = _table()
    # greedy takes 4 (p=0.6) then faces a flat distribution; beam takes 5 (p=0.4) then a sure eos
    t[BOS, 4], t[BOS, 5] = np.log(0.6), np.log(0.4)
    t[4, :] = np.log(1 / 8)
    t[5, EOS] = 0.0
    greedy = beam_search(TableStepper(t, 1), 1, BOS, EOS, SearchSettings(beam_size=1, max_new_tokens=3))
    beam = beam_search(TableStepper(t, 2), 1, BOS, EOS, SearchSettings(beam_size=2, max_new_tokens=3, length_penalty=0.0))
    assert greedy[0][0] == 4
    assert beam == [[5]]


def test_banned_ids_and_repeated_ngrams_are_blocked():
    t = _table()
    t[BOS, 1] = 5.0  # unk is likeliest but banned
    t[BOS, 4] = 0.0
    t[4, 5] = 0.0
    t[5, 4] = 0.0  # would loop 4 5 4 5 ...
    t[5, EOS] = t[4, EOS] = -1.0
    # The word guard off: this is the n-gram guard alone (with it, "4 5 4" is already blocked).
    settings = SearchSettings(beam_size=1, max_new_tokens=10, no_repeat_ngram=2, banned_ids=(0, 1, 2),
                              no_repeat_word=False)
    # "4 5 4" then "5" would repeat the bigram "4 5": eos instead
    assert beam_search(TableStepper(t, 1), 1, BOS, EOS, settings) == [[4, 5, 4]]
    unguarded = SearchSettings(beam_size=1, max_new_tokens=10, no_repeat_ngram=0, banned_ids=(0, 1, 2),
                               no_repeat_word=False)
    assert beam_search(TableStepper(t, 1), 1, BOS, EOS, unguarded) == [[4, 5] * 5]


def test_max_new_tokens_bounds_the_output():
    t = _table()
    t[:, 4] = 0.0
    settings = SearchSettings(beam_size=1, max_new_tokens=5, no_repeat_ngram=0, no_repeat_word=False)
    out = beam_search(TableStepper(t, 1), 2, BOS, EOS, settings)
    assert out == [[4] * 5, [4] * 5]


def test_beams_stay_within_their_image():
    t = _table()
    t[BOS, 4], t[BOS, 5] = 0.0, -0.5
    t[4, EOS], t[5, EOS] = -0.1, -0.1
    stepper = TableStepper(t, 6)
    beam_search(stepper, 3, BOS, EOS, SearchSettings(beam_size=2, max_new_tokens=4))
    for rows in stepper.reorders:
        assert all(src // 2 == dst // 2 for dst, src in enumerate(rows))


def test_greedy_fast_path_equals_beam_search_with_one_beam():
    from edgevlm.runtime.search import greedy_search, nbest_search

    rng = np.random.default_rng(0)
    for trial in range(20):
        vocab = 12
        table = rng.normal(0, 2, size=(vocab, vocab))
        table[:, EOS] -= rng.uniform(0, 3)  # captions of varied length
        settings = SearchSettings(beam_size=1, max_new_tokens=8, no_repeat_ngram=trial % 4, banned_ids=(0, 1, 2),
                                  no_repeat_word=trial % 2 == 0)
        images = 3
        fast = greedy_search(TableStepper(table, images), images, BOS, EOS, settings)
        slow = [best[0][1] for best in nbest_search(TableStepper(table, images), images, BOS, EOS, settings)]
        assert fast == slow


def test_nbest_lists_every_finished_caption_best_first_and_beam_search_says_the_first():
    from edgevlm.runtime.search import beam_search, nbest_search

    rng = np.random.default_rng(1)
    for trial in range(10):
        vocab = 12
        table = rng.normal(0, 2, size=(vocab, vocab))
        table[:, EOS] -= rng.uniform(0, 3)
        settings = SearchSettings(beam_size=4, max_new_tokens=8, banned_ids=(0, 1, 2), length_penalty=0.5)
        lists = nbest_search(TableStepper(table, 2), 2, BOS, EOS, settings)
        best = beam_search(TableStepper(table, 2), 2, BOS, EOS, settings)
        for candidates, ids in zip(lists, best):
            assert candidates[0][1] == ids
            scores = [score for score, _ in candidates]
            assert scores == sorted(scores, reverse=True)
            assert len(candidates) >= 1
            assert len({tuple(c) for _, c in candidates}) == len(candidates)  # distinct captions


def test_the_ngram_guard_bans_the_same_tokens_for_many_rows_as_row_by_row():
    from edgevlm.runtime.search import _ban_repeated_ngrams

    # "a dog and a dog" (ids 4 5 6 4 5): completing "4 5 ?" again must not say 6
    handmade = np.array([[4, 5, 6, 4, 5, 0], [4, 5, 6, 7, 5, 0]])
    banned = np.zeros((2, 8))
    _ban_repeated_ngrams(banned, handmade, 5, 3)
    assert np.isneginf(banned[0, 6]) and np.isfinite(banned[0]).sum() == 7
    assert np.isfinite(banned[1]).all()  # row 1 ends "7 5": seen nowhere before
    # the beams' vectorised guard against the one-row loop, on random histories and lengths
    rng = np.random.default_rng(0)
    for _ in range(300):
        rows, length, n = int(rng.integers(2, 6)), int(rng.integers(0, 12)), int(rng.integers(0, 5))
        history = rng.integers(0, 5, (rows, 12))
        together = np.zeros((rows, 5))
        _ban_repeated_ngrams(together, history, length, n)
        for row in range(rows):
            alone = np.zeros((1, 5))
            _ban_repeated_ngrams(alone, history[row : row + 1], length, n)
            assert np.array_equal(alone[0], together[row]), (rows, length, n, history[row])


def _best_first_by_sorting(values, count):
    """The reference: every value sorted, largest first, equal values by index, NaN as -inf."""
    clean = np.where(np.isnan(values), -np.inf, values)
    return np.lexsort((np.arange(len(clean)), -clean))[:count]


def test_best_first_equals_a_full_sort_with_ties_infinities_and_flat_rows():
    from edgevlm.runtime.search import _best_first

    rng = np.random.default_rng(0)
    peaked = np.log(rng.dirichlet(np.full(4 * 500, 0.05)))  # a trained decoder's: a few near the best
    flat = rng.uniform(-0.01, 0.0, 4 * 500)  # every value within 4 nats: the partition path
    ties = np.round(rng.normal(0, 2, 2000), 1)  # int8 logits come in steps: many exact ties
    ties[[10, 20, 30]] = ties.max()
    banned = peaked.copy()
    banned[rng.choice(2000, 1990, replace=False)] = -np.inf  # fewer finite values than asked for
    nan = peaked.copy()
    nan[[3, 7]] = np.nan
    infinite = peaked.copy()
    infinite[[4, 9]] = np.inf  # fewer +inf values than asked for
    nan_and_minus_inf = np.array([np.nan, -np.inf, 1.0, 2.0])  # NaN ranks as -inf: ties by index
    for values in (peaked, flat, ties, banned, nan, infinite, nan_and_minus_inf, np.full(2000, -np.inf), peaked[:5]):
        for count in (1, 8, 32):
            np.testing.assert_array_equal(_best_first(values, count), _best_first_by_sorting(values, count))
