"""Narration's search: re-ranked beam 4 where the engine has a caption memory, greedy where it
has none, and always what --beam says."""

from __future__ import annotations

from edgevlm.paths import default_engine_dir
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.narration.pipeline import NARRATION_MEMORY_BEAM, narration_beam
from tests.support import FakeEngine


def test_an_engine_with_a_memory_narrates_with_a_reranked_beam_and_without_one_greedily(tiny_engine_dir):
    with CaptionEngine(default_engine_dir()) as shipped:
        assert shipped.reranks
        assert narration_beam(shipped, None) == NARRATION_MEMORY_BEAM == 4
        assert narration_beam(shipped, 1) == 1 and narration_beam(shipped, 8) == 8
    with CaptionEngine(tiny_engine_dir) as plain:
        assert narration_beam(plain, None) == 1
    with CaptionEngine(default_engine_dir(), use_memory=False) as shipped:  # caption --no-memory
        assert not shipped.reranks and narration_beam(shipped, None) == 1
    assert narration_beam(FakeEngine(), None) == 1
