"""``edgevlm bench`` on the shipped engine: the floor, beam-3 and ``ask`` timings in the
printout and the --json object (keys, never times). Against itself (--vs-engine), so no
torch; one photo, one round."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from edgevlm.cli.main import cli
from edgevlm.paths import default_engine_dir
from tests.support import SAMPLES

CHELSEA = os.path.join(SAMPLES, "chelsea.jpg")
OLD_KEYS = {"engine", "images", "rounds", "beam", "threads", "runtime_ms_p50", "runtime_ms_p90", "runtime_graphs",
            "mean_tokens", "tokens_identical", "token_agreement", "speedup", "cold_start_s", "first_start_s",
            "runtime_peak_rss_mb", "runtime_anon_rss_mb", "runtime_file_rss_mb", "runtime_imported_torch",
            "vs_engine_ms_p50"}


def _bench(*extra):
    engine = default_engine_dir()
    result = CliRunner().invoke(cli, ["bench", "--vs-engine", engine, "--images", CHELSEA, "--rounds", "1",
                                      "--threads", "1", *extra])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout.splitlines()


@pytest.fixture(scope="module")
def printed():
    return _bench()


def test_bench_prints_the_floor_and_our_ratio(printed):
    floor = [line for line in printed if line.startswith("floor: ")]
    assert floor and "GOP/s" in floor[0] and "GB/s" in floor[0]
    for graph in ("vision", "cross_kv", "decoder"):
        assert any(line.split()[:1] == [graph] and line.rstrip().endswith("x") for line in printed), graph
    assert any(line.strip().startswith("per caption: floor ") and "the floor" in line for line in printed)


def test_bench_prints_beam_3_and_ask_timings(printed):
    assert any(line.startswith("beam 3    p50 ") for line in printed)
    asks = [line for line in printed if line.startswith("ask ")]
    assert any("(concepts)" in line for line in asks) and any("(decoder)" in line for line in asks)


def test_bench_times_the_default_caption_of_an_engine_with_a_memory(printed):
    """The shipped engine's default is beam 16 re-ranked by its caption memory: `edgevlm
    caption`'s own path, timed beside beam 3."""
    default = [line for line in printed if line.startswith("default   p50 ")]
    assert len(default) == 1 and "beam 16, re-ranked by the caption memory" in default[0]
    report = json.loads(printed[-1])
    assert report["default_caption"]["beam"] == 16 and report["default_caption"]["reranked"] is True


def test_bench_json_keeps_its_keys_and_adds_the_new_ones(printed):
    report = json.loads(printed[-1])
    assert OLD_KEYS <= set(report)
    assert set(report["beam3"]) == {"beam", "ms_p50", "ms_p90", "mean_tokens"} and report["beam3"]["beam"] == 3
    assert {t["route"] for t in report["ask"].values()} == {"concepts", "decoder"}
    floor = report["floor"]
    assert {"machine", "graphs", "steps", "caption_floor_ms", "caption_ms_p50", "caption_ratio"} <= set(floor)
    assert set(floor["machine"]["gops"]) == {"int8_decode", "fp32_decode", "int8_image", "fp32_image"}
    for graph in ("vision", "cross_kv", "decoder"):
        row = floor["graphs"][graph]
        assert row["int8_ops"] > 0 and row["bytes"] > 0 and row["floor_ms"] > 0 and row["ratio"] > 0
    assert floor["steps"] == report["mean_tokens"] and floor["caption_ms_p50"] == report["runtime_ms_p50"]
    # the end's own and mapped-file memory are parts of the resident set, which never exceeds its peak
    own, files = report["runtime_anon_rss_mb"], report["runtime_file_rss_mb"]
    assert own > 0 and files > 0 and own + files <= report["runtime_peak_rss_mb"] + 0.1


def test_the_extras_can_be_left_out():
    report = json.loads(_bench("--no-floor", "--no-modes", "--json")[-1])
    assert OLD_KEYS <= set(report) and not {"floor", "beam3", "ask", "default_caption"} & set(report)


def test_the_speedup_line_says_why_captions_differ():
    from edgevlm.cli.bench_cmd import token_note

    same = {"tokens_identical": True, "token_agreement": 1.0, "images": 4, "engine_precision": "int8"}
    assert token_note(same, "torch") == ""
    int8 = {**same, "tokens_identical": False, "token_agreement": 0.25}
    assert token_note(int8, "torch") == (" (1 of 4 captions the same; INT8 against FP32 PyTorch: `quantize --eval` "
                                         "gates the difference)")
    assert token_note({**int8, "engine_precision": "fp32"}, "torch") == " (1 of 4 captions the same)"
    assert token_note(int8, "vs_engine") == " (1 of 4 captions the same)"
