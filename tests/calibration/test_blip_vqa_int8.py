"""BLIP VQA engines (vision -> question -> cross_kv -> decoder) through INT8 quantization and
numeric parity: the calibration feeds of each of the four graphs, `edgevlm quantize` in both
variants, the INT8 engine answering, the accuracy gate's refusal of an engine that cannot
caption, and `validate` comparing the question states, the answer decoder's cross K/V and its
teacher-forced logits with transformers.

The tiny random-init folder is written and exported once per module (the slow part). Its
answers are nonsense: the tests check shapes, keys, modes and agreement, never words."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgevlm.calibration.feeds import (GENERIC_QUESTIONS, QUESTIONS_PER_IMAGE, answer_decoder_feeds,
                                       calibration_questions, graph_feeds, question_cross_kv_feeds, question_feeds)
from edgevlm.calibration.quantize import quantize_engine
from edgevlm.calibration.sources import CalibrationSet, load_calibration_set
from edgevlm.cli.main import cli
from edgevlm.data.vqa_questions import generate_questions
from edgevlm.export.families import EXPORT_FAMILIES
from edgevlm.runtime.engine import CaptionEngine
from tests.support import SAMPLE_PHOTOS, SAMPLES, make_coco_dataset, write_calibration_crops

BLIP_VQA = "blip-vqa"
GRAPHS = ("vision", "question", "cross_kv", "decoder")
CHELSEA = os.path.join(SAMPLES, "chelsea.jpg")
NEW_OUTPUTS = {"question.question_states", "cross_kv.cross_k", "cross_kv.cross_v", "decoder.logits"}


def _invoke(*args):
    """``edgevlm ARGS`` in-process; stdout and stderr apart (click >= 8.2)."""
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def blip_vqa(tmp_path_factory):
    """(tiny BlipForQuestionAnswering folder, its FP32 engine folder)."""
    from edgevlm.export.onnx_export import export_engine

    root = tmp_path_factory.mktemp("blip_vqa")
    model_dir = EXPORT_FAMILIES[BLIP_VQA].write_tiny(str(root / "hf"))
    export_engine(model_dir, str(root / "engine"))
    return model_dir, str(root / "engine")


@pytest.fixture(scope="module")
def engine(blip_vqa):
    with CaptionEngine(blip_vqa[1], threads=2) as opened:
        yield opened


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    """16 distinct small photos (the calibration minimum)."""
    return write_calibration_crops(str(tmp_path_factory.mktemp("calib")), 64)


def _one_image(path: str = CHELSEA) -> CalibrationSet:
    """A one-photo set without captions (feeds are generators: any length works)."""
    image = cv2.imread(path)
    return CalibrationSet([image], [[]], [path], "one")


def _ops(path: str) -> set[str]:
    return {node.op_type for node in onnx.load(path).graph.node}


# --------------------------------------------------------------------------- the questions
def test_questions_come_from_captions_or_else_are_generic():
    captions = ["a man rides a bike in the park", "two dogs play in the grass", "a black dog runs"]
    generated = {q["question"] for q in generate_questions([{"image_id": 3, "file_name": "", "captions": captions}])}
    picked = calibration_questions(captions, 3)
    assert len(picked) == QUESTIONS_PER_IMAGE == len(set(picked)) and set(picked) <= generated
    # no captions (an image folder, a video): generic questions, every one asked somewhere in a set
    asked = [calibration_questions([], index) for index in range(len(GENERIC_QUESTIONS))]
    assert all(len(q) == QUESTIONS_PER_IMAGE and set(q) <= set(GENERIC_QUESTIONS) for q in asked)
    assert {q for questions in asked for q in questions} == set(GENERIC_QUESTIONS)
    # captions no rule turns into a question fall back to the generic ones too
    assert set(calibration_questions(["zzz"], 0)) <= set(GENERIC_QUESTIONS)


def test_question_feeds_are_the_runtime_prompts_over_the_image(engine, tmp_path):
    calib = load_calibration_set(make_coco_dataset(str(tmp_path / "coco"), "train", 16, seed=2))
    feeds = list(question_feeds(engine, calib))
    assert len(feeds) == QUESTIONS_PER_IMAGE * len(calib.images)
    capacity = engine.manifest.model.cache_capacity
    expected = [engine.tokenizer.question_prompt(q, capacity)
                for index, captions in enumerate(calib.captions) for q in calibration_questions(captions, index)]
    assert [feed["question_ids"].tolist() for feed in feeds] == [[ids] for ids in expected]
    visual, _ = engine.encode(engine.preprocess(calib.images[0])[None])
    assert feeds[0]["question_ids"].dtype == np.int64
    np.testing.assert_array_equal(feeds[0]["visual_tokens"], visual)  # (1,N,D) of the image asked about


def test_cross_kv_feeds_are_the_question_graphs_states(engine):
    questions, states = list(question_feeds(engine, _one_image())), list(question_cross_kv_feeds(engine, _one_image()))
    assert len(states) == len(questions) == QUESTIONS_PER_IMAGE
    d_model = engine.manifest.model.d_model
    for question, feed in zip(questions, states):
        assert set(feed) == {"question_states"}  # VQA's answer decoder reads the question, not the image
        assert feed["question_states"].shape == (1, question["question_ids"].shape[1], d_model)
        np.testing.assert_array_equal(feed["question_states"],
                                      engine.backend.run("question", question)["question_states"])


def test_decoder_feeds_follow_the_greedy_answer_through_the_cache(engine):
    feeds = list(answer_decoder_feeds(engine, _one_image()))
    starts = [i for i, feed in enumerate(feeds) if int(feed["position"]) == 0]
    assert len(starts) == QUESTIONS_PER_IMAGE  # one answer per question, each from position 0
    bos = engine.manifest.special_tokens.bos
    image = _one_image()
    visual, _ = engine.encode(engine.preprocess(image.images[0])[None])
    for start, end, question in zip(starts, starts[1:] + [len(feeds)], calibration_questions([], 0)):
        answer = feeds[start:end]
        assert [int(f["position"]) for f in answer] == list(range(len(answer)))
        assert int(answer[0]["input_ids"][0, 0]) == bos and all(f["input_ids"].shape == (1, 1) for f in answer)
        cross_k, cross_v, _, _ = engine.hf_answer_inputs(visual, question, {})
        np.testing.assert_array_equal(answer[0]["cross_k"], cross_k)  # the answer decoder's K/V over the question
        for step, (fed, following) in enumerate(zip(answer, answer[1:])):
            out = engine.backend.run("decoder", fed)
            # teacher-forced along its own greedy answer: each next input is this step's pick...
            assert int(following["input_ids"][0, 0]) == int(out["logits"][0, -1].argmax())
            # ...and the cache it reads holds this step's keys and values (a copy per feed, not a view)
            np.testing.assert_array_equal(following["cache_k"][:, :, :, step], out["new_k"][:, :, :, 0])
            np.testing.assert_array_equal(following["cache_v"][:, :, :, step], out["new_v"][:, :, :, 0])
        fed_answer = engine.tokenizer.decode([int(f["input_ids"][0, 0]) for f in answer[1:]])
        assert engine.answer_visual(visual, [question])[0].answer.startswith(fed_answer)


def test_every_graph_has_feeds(engine):
    for graph in GRAPHS:
        assert next(iter(graph_feeds(engine, graph, _one_image())))


# --------------------------------------------------------------------------- quantize
def test_quantize_cpu_variant_through_the_cli_and_answer_with_it(blip_vqa, calib_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # calibrated ranges are cached under ~/.cache
    _, engine_dir = blip_vqa
    int8 = str(tmp_path / "int8")
    result = _invoke("quantize", engine_dir, "--calib", calib_dir, "--out", int8, "--variant", "cpu",
                     "--calib-limit", 16)
    assert result.exit_code == 0, result.output
    assert "calibrating on 16 images" in result.stderr and f"wrote {int8} (not gated" in result.stderr
    with open(os.path.join(int8, "edgevlm.json")) as f:
        manifest = json.load(f)
    assert manifest["precision"] == "int8" and manifest["model"]["family"] == BLIP_VQA
    graphs = manifest["quantization"]["graphs"]
    assert set(graphs) == set(manifest["graphs"]) == set(GRAPHS)
    # BLIP's ViT is a transformer encoder: its weight MatMuls dynamic, as the decoders'
    assert {g: graphs[g]["mode"] for g in GRAPHS} == {"vision": "dynamic", "question": "static",
                                                      "cross_kv": "dynamic", "decoder": "dynamic"}
    assert manifest["quantization"]["format"] == "QDQ (question) + dynamic MatMulInteger (vision, cross_kv, decoder)"
    # calibrated from the feeds: QDQ pairs in the graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(os.path.join(int8, "question.onnx"))
    for graph in ("vision", "cross_kv", "decoder"):
        ops = _ops(os.path.join(int8, f"{graph}.onnx"))
        assert "MatMulInteger" in ops and "QuantizeLinear" not in ops
    result = _invoke("ask", CHELSEA, "is there a dog?", "--engine", int8, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert {"answer", "model_answer", "probability", "abstained"} <= set(record)
    assert 0.0 <= record["probability"] <= 1.0 and isinstance(record["model_answer"], str)


def test_qdq_variant_calibrates_all_four_graphs_statically(blip_vqa, calib_dir, tmp_path):
    _, engine_dir = blip_vqa
    out = str(tmp_path / "int8")
    manifest = quantize_engine(engine_dir, load_calibration_set(calib_dir), out, "minmax",
                               cache_dir=str(tmp_path / "ranges"), variant="qdq")
    graphs = manifest.quantization["graphs"]
    assert manifest.precision == "int8" and set(graphs) == set(GRAPHS)
    assert all(graphs[g]["mode"] == "static" and not graphs[g]["ranges_reused"] for g in GRAPHS)
    for graph in GRAPHS:
        assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(os.path.join(out, f"{graph}.onnx"))
    with CaptionEngine(out) as int8:
        answer = int8.answer_image(cv2.imread(CHELSEA), ["what color is it?"])[0]
    assert isinstance(answer.answer, str) and 0.0 <= answer.probability <= 1.0


def test_the_caption_gate_refuses_a_vqa_only_engine_in_one_line(blip_vqa, calib_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    dev = make_coco_dataset(str(tmp_path / "dev"), "dev", 4, seed=5)
    result = _invoke("quantize", blip_vqa[1], "--calib", calib_dir, "--out", tmp_path / "int8", "--variant", "cpu",
                     "--eval", dev)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "answers questions only" in line and BLIP_VQA in line, result.stderr
    assert "without --eval" in line and not (tmp_path / "int8").exists()  # refused before any work


# --------------------------------------------------------------------------- parity
def test_validate_compares_question_states_cross_kv_and_answer_logits(blip_vqa):
    from edgevlm.export.validate import validate_engine

    model_dir, engine_dir = blip_vqa
    report = validate_engine(engine_dir, model_dir, [cv2.imread(p) for p in SAMPLE_PHOTOS[:2]])
    assert report["passed"] and report["tokens_identical"], report
    names = [check.name for check in report["outputs"]]
    assert NEW_OUTPUTS <= set(names) and len(names) == len(set(names))  # the worst of each, once
    assert len(report["answers"]) == 2 * 3  # every image, every parity question


class _DriftingQuestions:
    """A backend whose question graph's states drift by ``delta``: an export bug parity must see."""

    def __init__(self, backend, delta: float):
        self.backend, self.delta = backend, delta

    def run(self, graph: str, feeds: dict) -> dict:
        out = self.backend.run(graph, feeds)
        if graph == "question":
            out = {"question_states": out["question_states"] + np.float32(self.delta)}
        return out

    def __getattr__(self, name: str):  # everything else (decoder_stepper, close): the real backend's
        return getattr(self.backend, name)


def test_parity_fails_when_the_question_graph_drifts(blip_vqa):
    from edgevlm.export.families import export_family

    model_dir, engine_dir = blip_vqa
    with CaptionEngine(engine_dir) as drifting:
        drifting.backend = _DriftingQuestions(drifting.backend, 1e-2)
        report = export_family(BLIP_VQA).validate(drifting, model_dir, [cv2.imread(CHELSEA)], 1)
    checks = {check.name: check for check in report["outputs"]}
    assert not report["passed"] and not checks["question.question_states"].passed
    assert checks["vision.visual_tokens"].passed  # upstream of the question graph: untouched
