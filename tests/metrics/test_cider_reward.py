"""Our CIDEr-D reward agrees with pycocoevalcap's CIDEr on the same references."""

import pytest
from pycocoevalcap.cider.cider import Cider

from edgevlm.metrics.cider_reward import CiderD

REFS = {
    0: ["a black dog runs on the grass", "a dog running in a field", "the black dog is running outside"],
    1: ["two children play in the water", "kids splash in a pool", "two kids swimming in the water"],
    2: ["a man rides a bike down the street", "a cyclist on a city road", "a man on a bicycle in traffic"],
}
HYPS = {0: "a black dog is running on grass", 1: "two children swim in a pool", 2: "a dog runs in the water"}


def test_matches_pycocoevalcap():
    vocab = {w: i for i, w in enumerate(sorted({w for v in list(REFS.values()) + [[h] for h in HYPS.values()]
                                                  for c in v for w in c.split()}))}
    ids = lambda text: tuple(vocab[w] for w in text.split())  # noqa: E731
    ours = CiderD([[ids(c) for c in REFS[i]] for i in range(3)])
    _, theirs = Cider().compute_score(REFS, {i: [h] for i, h in HYPS.items()})
    for i in range(3):
        assert ours.score(i, ids(HYPS[i])) == pytest.approx(theirs[i], rel=1e-6)
