"""``python -m edgevlm.scripts.caption_path_profile``: the caption path's table, with narration's
own column (beam 4, re-ranked by the caption memory) beside greedy and beam 3."""

from edgevlm.scripts import caption_path_profile


def test_the_table_has_narrations_column_and_its_memory_rerank(capsys):
    caption_path_profile.main(["--rounds", "1", "--top", "0", "--threads", "1"])  # the shipped engine: it has a memory
    lines = capsys.readouterr().out.splitlines()
    assert "narration: beam 4, re-ranked by the caption memory" in lines[0]
    assert lines[1].split() == ["stage", "greedy", "beam", "3", "narration"]
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines[2:] if line.split()[0] in
            caption_path_profile.ROWS}
    assert set(rows) == set(caption_path_profile.ROWS)
    greedy, beam3, narration = zip(*rows.values())
    rerank = rows["memory_rerank"]
    assert rerank[0] == rerank[1] == 0.0 < rerank[2]  # only narration's candidates are re-ranked
    assert all(v >= 0 for column in (greedy, beam3, narration) for v in column)
