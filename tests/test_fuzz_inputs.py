"""Fuzzing what users hand us: manifests, question files, COCO files, image bytes, ONNX files.

Each target mutates a valid file (values replaced or deleted anywhere in the JSON tree,
bit flips, truncation) and asserts the only outcomes are a result or our one-line error
(``error: ...``, exit 1). A traceback, an "unexpected" error (exit 2) or, for ONNX files
run in a subprocess, a native crash (killed by a signal) is a finding; hypothesis shrinks
it and prints the mutation.

CI runs a bounded, derandomized profile. The long mode, run by hand:
    EDGEVLM_FUZZ=long .venv/bin/python -m pytest tests/test_fuzz_inputs.py -q --hypothesis-show-statistics
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevlm.cli.main import cli
from edgevlm.data.coco import load_coco_captions
from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.file_records import sha256_file
from tests.support import SAMPLE_PHOTOS, make_coco_dataset

LONG = os.environ.get("EDGEVLM_FUZZ") == "long"
SCALE = 40 if LONG else 1
COMMON = dict(deadline=None, derandomize=not LONG, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=True),
                      st.text(max_size=40), st.just(""), st.just("../../../etc/passwd"), st.just(10**9))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=8)


def _paths(node, prefix=()):
    """Every location in a JSON tree: tuples of keys/indexes."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


@st.composite
def json_mutation(draw, document):
    """A copy of ``document`` with one location replaced by a random value or deleted."""
    data = json.loads(json.dumps(document))
    locations = [p for p in _paths(data) if p]
    where = draw(st.sampled_from(locations))
    parent = data
    for key in where[:-1]:
        parent = parent[key]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[where[-1]]
    else:
        parent[where[-1]] = draw(JSON_VALUE)
    return data


@st.composite
def byte_mutation(draw, raw: bytes):
    """``raw`` with a few bits flipped, or truncated, or both."""
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 8))):
        index = draw(st.integers(0, len(data) - 1))
        data[index] ^= 1 << draw(st.integers(0, 7))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _assert_clean(result) -> None:
    """Exit 0, or exit 1 with our one-line error: nothing else."""
    stderr = result.stderr if hasattr(result, "stderr") else ""
    assert result.exit_code in (0, 1), f"exit {result.exit_code}: {stderr[-800:]} {result.exception!r}"
    if result.exit_code == 1:
        lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
        assert lines and not any(line.startswith("error: unexpected ") for line in lines), stderr[-800:]
        assert "Traceback" not in stderr


@pytest.fixture(scope="module")
def photo() -> str:
    return SAMPLE_PHOTOS[0]


@settings(max_examples=25 * SCALE, **COMMON)
@given(data=st.data())
def test_mutated_manifests_are_refused_or_run(tiny_engine_master, photo, data):
    with open(os.path.join(tiny_engine_master, "edgevlm.json"), "rb") as f:
        raw = f.read()
    if data.draw(st.booleans(), label="structured"):
        mutated = json.dumps(data.draw(json_mutation(json.loads(raw)), label="manifest")).encode()
    else:
        mutated = data.draw(byte_mutation(raw), label="manifest bytes")
    with tempfile.TemporaryDirectory() as work:
        engine = os.path.join(work, "engine")
        shutil.copytree(tiny_engine_master, engine)
        with open(os.path.join(engine, "edgevlm.json"), "wb") as f:
            f.write(mutated)
        _assert_clean(CliRunner().invoke(cli, ["caption", "--engine", engine, photo, "--beam", "1"]))


@settings(max_examples=25 * SCALE, **COMMON)
@given(data=st.data())
def test_mutated_question_files_are_refused_or_answered(tiny_engine_master, photo, data):
    valid = [{"question_id": 1, "image": photo, "question": "is there a dog?"},
             {"question_id": "b", "image": photo, "question": "what is the man doing?"}]
    mutated = data.draw(json_mutation(valid), label="questions")
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "questions.json")
        with open(path, "w") as f:
            json.dump(mutated, f)
        _assert_clean(CliRunner().invoke(cli, ["ask", "--engine", tiny_engine_master, "--questions", path, "--json"]))


@settings(max_examples=40 * SCALE, **COMMON)
@given(data=st.data())
def test_mutated_coco_files_are_refused_or_read(data):
    with tempfile.TemporaryDirectory() as work:
        path = make_coco_dataset(work, "dev", 2)
        with open(path) as f:
            valid = json.load(f)
        mutated = data.draw(json_mutation(valid), label="coco")
        with open(path, "w") as f:
            json.dump(mutated, f)
        try:
            items = load_coco_captions(path)
        except EdgeVLMError as exc:
            assert "\n" not in str(exc)
        else:
            assert all(isinstance(c, str) for item in items for c in item.captions)


@settings(max_examples=20 * SCALE, **COMMON)
@given(data=st.data())
def test_mutated_image_bytes_are_refused_or_captioned(tiny_engine_master, data):
    source = data.draw(st.sampled_from(["jpg", "png"]), label="format")
    image = cv2.resize(cv2.imread(SAMPLE_PHOTOS[1]), (96, 64))
    raw = cv2.imencode(f".{source}", image)[1].tobytes()
    mutated = data.draw(byte_mutation(raw), label="image bytes")
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, f"photo.{source}")
        with open(path, "wb") as f:
            f.write(mutated)
        _assert_clean(CliRunner().invoke(cli, ["caption", "--engine", tiny_engine_master, path, "--beam", "1"]))


@settings(max_examples=3 * SCALE, **COMMON)
@given(data=st.data())
def test_mutated_onnx_files_fail_cleanly_in_a_subprocess(tiny_engine_master, photo, data):
    """Bit flips inside a graph, its hash updated so onnxruntime really parses it: a native
    crash would kill this subprocess by a signal (a negative return code) and is reported."""
    graph = data.draw(st.sampled_from(["vision", "cross_kv", "decoder"]), label="graph")
    with tempfile.TemporaryDirectory() as work:
        engine = os.path.join(work, "engine")
        shutil.copytree(tiny_engine_master, engine)
        path = os.path.join(engine, f"{graph}.onnx")
        with open(path, "rb") as f:
            raw = f.read()
        with open(path, "wb") as f:
            f.write(data.draw(byte_mutation(raw), label="onnx bytes"))
        manifest_path = os.path.join(engine, "edgevlm.json")
        with open(manifest_path) as f:
            manifest = json.load(f)
        manifest["files"][graph]["sha256"] = sha256_file(path)
        with open(manifest_path, "w") as f:
            json.dump(manifest, f)
        done = subprocess.run([sys.executable, "-m", "edgevlm.cli.main", "caption", "--engine", engine, photo,
                               "--beam", "1"], capture_output=True, text=True, timeout=120)
        assert done.returncode >= 0, f"native crash: killed by signal {-done.returncode}: {done.stderr[-500:]}"
        assert done.returncode in (0, 1), done.stderr[-800:]
        if done.returncode == 1:
            assert done.stderr.startswith("error: ") and not done.stderr.startswith("error: unexpected "), done.stderr[-800:]


def test_mutation_strategies_change_their_input():
    """The harness itself: a mutation is never a no-op on every draw (else the tests above
    would only ever see valid files)."""
    raw = np.arange(64, dtype=np.uint8).tobytes()
    seen = set()

    @settings(max_examples=20, derandomize=True, database=None)
    @given(byte_mutation(raw), json_mutation({"a": 1, "b": [1, 2]}))
    def collect(mutated_bytes, mutated_json):
        seen.add((mutated_bytes != raw, mutated_json != {"a": 1, "b": [1, 2]}))

    collect()
    assert (True, True) in seen
