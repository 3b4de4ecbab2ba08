"""``python -m edgevlm.scripts.caption_path_profile``: the caption path's table, with narration's
own column (its beam, re-ranked by the caption memory) beside greedy and beam 3."""

import pytest

from edgevlm.paths import resolve_engine, sample_images_dir
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.narration.pipeline import NARRATION_MEMORY_BEAM
from edgevlm.scripts import caption_path_profile


def test_the_table_has_narrations_column_and_its_memory_rerank(capsys):
    caption_path_profile.main(["--rounds", "1", "--top", "0", "--threads", "1"])  # the shipped engine: it has a memory
    lines = capsys.readouterr().out.splitlines()
    assert f"narration: beam {NARRATION_MEMORY_BEAM}, re-ranked by the caption memory" in lines[0]
    assert lines[1].split() == ["stage", "greedy", "beam", "3", "narration"]
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines[2:] if line.split()[0] in
            caption_path_profile.ROWS}
    assert set(rows) == set(caption_path_profile.ROWS)
    rerank = rows["memory_rerank"]
    assert rerank[0] == rerank[1] == 0.0 < rerank[2]  # only narration's candidates are re-ranked


@pytest.mark.parametrize("beam, rerank", [(1, False), (NARRATION_MEMORY_BEAM, True)])
def test_one_captions_search_splits_into_its_parts_exactly(beam, rerank):
    engine = CaptionEngine(resolve_engine(None), threads=1)
    timers = caption_path_profile.instrument(engine)
    path = f"{sample_images_dir()}/chelsea.jpg"
    row = caption_path_profile.profile_caption(engine, timers, path, beam, rerank)
    parts = ("search_ort_run", "search_feed_checks", "search_stepper", "memory_rerank", "search_python")
    assert sum(row[part] for part in parts) == pytest.approx(row["search_total"], abs=1e-6)
    assert all(row[part] >= 0 for part in parts) and (row["memory_rerank"] > 0) == rerank


def test_narration_is_greedy_on_an_engine_without_a_caption_memory(tiny_engine_dir):
    with CaptionEngine(tiny_engine_dir) as engine:
        assert caption_path_profile.columns(engine)[-1] == ("narration", 1, False)
