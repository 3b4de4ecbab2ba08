"""The stale-engine guard: cache folders keyed by everything a compiled engine depends on, and
plans refused before deserialization when anything changed (a fake plan: no TensorRT here)."""

from __future__ import annotations

import hashlib
import os

import pytest

from edgevlm.paths import resolve_engine
from edgevlm.runtime import file_records
from edgevlm.runtime.engine_cache import (DeviceFacts, PlanRecord, StalePlan, cache_key, check_plan,
                                          graph_cache_dir, plan_changes, tensorrt_provider_options)
from edgevlm.runtime.manifest import load_manifest
from tests.support import after_a_clock_tick

ORIN = DeviceFacts("1.20.0", "10.3.0", "Orin", "8.7")
SHA_A, SHA_B = "a" * 64, "b" * 64


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Verified-file records of this test only (plans are recorded as engine files are)."""
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(tmp_path / "user-cache"))


@pytest.fixture()
def plan_hashes(monkeypatch):
    """The plans actually hashed; plans count as old enough to record at once."""
    monkeypatch.setattr(file_records, "RACY_S", -1.0)
    seen = []
    real = file_records._sha256_of
    monkeypatch.setattr(file_records, "_sha256_of", lambda f: seen.append(f.name) or real(f))
    return seen


def test_cache_folder_changes_with_weights_versions_and_gpu_only():
    key = cache_key(SHA_A, ORIN)
    assert cache_key(SHA_A, DeviceFacts("1.20.0", "10.3.0", "Orin", "8.7")) == key  # same everything: reused
    changed = [cache_key(SHA_B, ORIN),  # same graph structure, other weights (onnxruntime#6455)
               cache_key(SHA_A, DeviceFacts("1.21.0", "10.3.0", "Orin", "8.7")),  # onnxruntime upgraded
               cache_key(SHA_A, DeviceFacts("1.20.0", "10.7.0", "Orin", "8.7")),  # TensorRT upgraded (#22244)
               cache_key(SHA_A, DeviceFacts("1.20.0", "10.3.0", "H200", "9.0"))]  # another GPU
    assert len({key, *changed}) == 5
    assert os.sep not in key and " " not in cache_key(SHA_A, DeviceFacts("1.20", "10.3", "Jetson AGX Orin", None))


def test_provider_options_come_from_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(tmp_path))
    manifest = load_manifest(resolve_engine(None))
    folders = set()
    for graph in manifest.graphs:
        options = tensorrt_provider_options(manifest, graph, ORIN)
        sha = manifest.files[manifest.graphs[graph].file].sha256
        assert options["trt_engine_cache_path"] == graph_cache_dir(sha, ORIN) == options["trt_timing_cache_path"]
        assert options["trt_engine_cache_path"].startswith(str(tmp_path))  # never the (read-only) engine folder
        folders.add(options["trt_engine_cache_path"])
        # the shipped engine is the CPU INT8 variant (uint8 activations, dynamic MatMulInteger): not for
        # TensorRT's INT8, which needs symmetric Q/DQ; so neither INT8 nor FP16 on top of it
        assert options["trt_int8_enable"] == "False"
    assert len(folders) == len(manifest.graphs)  # one folder per graph
    qdq = manifest.replace(quantization={"variant": "qdq"})
    assert tensorrt_provider_options(qdq, "vision", ORIN)["trt_int8_enable"] == "True"
    fp32 = manifest.replace(precision="fp32", quantization=None)
    assert tensorrt_provider_options(fp32, "vision", ORIN)["trt_fp16_enable"] == "True"


def _fake_plan(path: str, size: int = 4096) -> PlanRecord:
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    return PlanRecord(SHA_A, "10.3.0", "Orin", "8.7", hashlib.sha256(data).hexdigest(), size)


def test_a_matching_plan_passes(tmp_path):
    plan = str(tmp_path / "vision.plan")
    check_plan(plan, _fake_plan(plan), SHA_A, ORIN)


@pytest.mark.parametrize(("change", "message"), [
    (lambda plan, record: (SHA_B, ORIN), "the ONNX graph changed"),
    (lambda plan, record: (SHA_A, DeviceFacts("1.20.0", "10.7.0", "Orin", "8.7")), "TensorRT changed (10.3.0 when built, 10.7.0 now)"),
    (lambda plan, record: (SHA_A, DeviceFacts("1.20.0", None, "Orin", "8.7")), "TensorRT changed (10.3.0 when built, none now)"),
    (lambda plan, record: (SHA_A, DeviceFacts("1.20.0", "10.3.0", "H200", "9.0")), "the GPU changed"),
    (lambda plan, record: os.truncate(plan, 1000) or (SHA_A, ORIN), "truncated or replaced"),
    (lambda plan, record: os.remove(plan) or (SHA_A, ORIN), "the plan file is missing"),
])
def test_every_mismatch_is_refused_before_deserialization(tmp_path, change, message):
    plan = str(tmp_path / "vision.plan")
    record = _fake_plan(plan)
    onnx_sha, facts = change(plan, record)
    with pytest.raises(StalePlan, match="cannot be used here") as refused:
        check_plan(plan, record, onnx_sha, facts)
    assert message in str(refused.value) and "edgevlm build" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_an_altered_plan_of_the_same_size_is_refused(tmp_path):
    plan = str(tmp_path / "vision.plan")
    record = _fake_plan(plan)
    with open(plan, "r+b") as f:
        f.seek(100)
        f.write(b"\x00" * 8)
    with pytest.raises(StalePlan, match="sha256 is not the one recorded"):
        check_plan(plan, record, SHA_A, ORIN)


def test_an_unchanged_plan_is_hashed_once_then_trusted_by_its_record(tmp_path, plan_hashes):
    plan = str(tmp_path / "vision.plan")
    record = _fake_plan(plan, size=1 << 20)
    for _ in range(3):  # three starts
        check_plan(plan, record, SHA_A, ORIN)
    assert plan_hashes == [plan]


def test_a_plan_altered_after_its_record_is_refused(tmp_path, plan_hashes):
    plan = str(tmp_path / "vision.plan")
    record = _fake_plan(plan)
    check_plan(plan, record, SHA_A, ORIN)  # recorded
    after_a_clock_tick(tmp_path)
    with open(plan, "r+b") as f:  # same size, new bytes: ctime moves
        f.seek(100)
        f.write(b"\x00" * 8)
    with pytest.raises(StalePlan, match="sha256 is not the one recorded"):
        check_plan(plan, record, SHA_A, ORIN)
    assert plan_hashes == [plan, plan]


def test_doctor_hashes_a_recorded_plan_again(tmp_path, plan_hashes):
    """``use_records=False`` (doctor's check) reads every byte whatever the records say."""
    plan = str(tmp_path / "vision.plan")
    record = _fake_plan(plan)
    assert plan_changes(plan, record, SHA_A, ORIN) == []  # recorded
    assert plan_changes(plan, record, SHA_A, ORIN, use_records=False) == []
    assert plan_hashes == [plan, plan]


def test_plan_record_round_trips_and_names_a_missing_field():
    record = PlanRecord(SHA_A, "10.3.0", "Orin", "8.7", SHA_B, 10)
    assert PlanRecord.from_json(record.to_json(), "edgevlm.json") == record
    broken = record.to_json()
    del broken["trt_version"]
    with pytest.raises(Exception, match="trt_version"):
        PlanRecord.from_json(broken, "edgevlm.json")
