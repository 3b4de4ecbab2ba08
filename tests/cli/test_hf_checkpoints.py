"""Every downstream command on engines exported from Hugging Face checkpoints, through the
real CLI: export and validate (VisionEncoderDecoder, GIT, BLIP-VQA), caption, ask, narrate,
bench and quantize on what they export, and the export refusals (custom code, pickles,
unsupported decoders and architectures) as one line each.

Each tiny random-init folder is written and exported once per module (export is the slow
part); commands run in-process through click's CliRunner, so torch and transformers are
imported once. Random-init weights caption nonsense: the tests check exit codes, output
shapes and keys, never caption words."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgevlm.cli.main import cli
from edgevlm.export.families import EXPORT_FAMILIES
from tests.support import SAMPLES, make_coco_dataset, write_calibration_crops

VED, GIT, BLIP_VQA = "vision-encoder-decoder", "git", "blip-vqa"
COFFEE, CHELSEA = os.path.join(SAMPLES, "coffee.jpg"), os.path.join(SAMPLES, "chelsea.jpg")
VIDEO = os.path.join(SAMPLES, "street.mp4")
HF_SECTIONS = ("image_processor", "hf_generation", "text")


def _invoke(*args):
    """``edgevlm ARGS`` in-process; stdout and stderr apart (click >= 8.2)."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(result, *fragments):
    """Exit 1, nothing but one ``error:`` line on stderr naming every fragment, no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    """Two small real photos (validate --images takes a folder)."""
    folder = tmp_path_factory.mktemp("photos")
    for path in (CHELSEA, COFFEE):
        shutil.copy(path, folder)
    return str(folder)


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    """family name -> its tiny save_pretrained folder, written on first use."""
    root, made = tmp_path_factory.mktemp("hf"), {}

    def get(name: str) -> str:
        if name not in made:
            made[name] = EXPORT_FAMILIES[name].write_tiny(str(root / name))
        return made[name]

    return get


@pytest.fixture(scope="module")
def exported(tmp_path_factory, hf_folders):
    """family name -> (HF folder, engine folder, the `edgevlm export` result), exported
    through the CLI once per module."""
    root, made = tmp_path_factory.mktemp("engines"), {}

    def get(name: str):
        if name not in made:
            model_dir, engine_dir = hf_folders(name), str(root / name)
            result = _invoke("export", model_dir, "--out", engine_dir)
            if result.exit_code != 0:
                pytest.fail(f"edgevlm export {name} failed: {result.output}", pytrace=False)
            made[name] = (model_dir, engine_dir, result)
        return made[name]

    return get


# --------------------------------------------------------------------------- export + validate
@pytest.mark.parametrize("name, tasks", [(VED, ["caption"]), (GIT, ["caption", "vqa"]), (BLIP_VQA, ["vqa"])])
def test_export_writes_an_engine_with_the_hf_sections(exported, name, tasks):
    model_dir, engine_dir, result = exported(name)
    assert result.stdout.startswith(f"wrote {engine_dir}: ") and "tokenizer.json" in result.stdout
    with open(os.path.join(engine_dir, "edgevlm.json")) as f:
        manifest = json.load(f)
    assert manifest["model"]["family"] == name and manifest["precision"] == "fp32"
    assert manifest["tasks"] == tasks
    for section in HF_SECTIONS:
        assert manifest.get(section), f"manifest section {section} missing or empty"
    assert manifest["source"]["model_dir"] == os.path.abspath(model_dir)
    for graph in manifest["graphs"]:
        assert os.path.isfile(os.path.join(engine_dir, f"{graph}.onnx"))


@pytest.mark.parametrize("name", [VED, GIT, BLIP_VQA])
def test_validate_passes_against_the_hf_folder(exported, images_dir, name):
    model_dir, engine_dir, _ = exported(name)
    result = _invoke("validate", engine_dir, "--against", model_dir, "--images", images_dir, "--limit", 2)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{engine_dir} vs {model_dir} on 2 images " \
                       "(pass: max_abs <= 0.0001 + 0.001 * max|ref|)"
    assert "  ok   greedy token ids identical" in lines and lines[-1] == "PASS"
    assert not any(line.lstrip().startswith("FAIL") for line in lines)
    if name != BLIP_VQA:  # caption families: a caption per photo, cross K/V and logits checked
        assert {line.split(":")[0].strip() for line in lines if ".jpg:" in line} == {"chelsea.jpg", "coffee.jpg"}
        assert any("decoder.logits" in line for line in lines)
    if name != VED:  # VQA families: their answers are compared too
        assert any(line.startswith("  Q: is there a dog? A: ") for line in lines)


@pytest.mark.parametrize("name", [VED, GIT, BLIP_VQA])
def test_validate_json_with_beam_3(exported, images_dir, name):
    model_dir, engine_dir, _ = exported(name)
    result = _invoke("validate", engine_dir, "--against", model_dir, "--images", images_dir, "--limit", 2,
                     "--beam", 3, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True and report["tokens_identical"] is True
    assert report["beam_size"] == 3 and report["images"] == 2
    assert report["outputs"] and all(output["passed"] for output in report["outputs"])
    assert {"preprocess.pixels", "vision.visual_tokens", "vision.pooled"} <= {o["name"] for o in report["outputs"]}


# --------------------------------------------------------------------------- caption / ask
@pytest.mark.parametrize("name", [VED, GIT])
def test_caption_prints_a_caption_per_image(exported, name):
    _, engine_dir, _ = exported(name)
    result = _invoke("caption", COFFEE, CHELSEA, "--engine", engine_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [COFFEE, CHELSEA]
    assert all(line.split(": ", 1)[1].strip() for line in lines), lines
    # --json and a beam the engine's generation config does not default to
    result = _invoke("caption", COFFEE, "--engine", engine_dir, "--json", "--beam", 3)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["image"] == COFFEE and isinstance(record["caption"], str) and record["caption"]


def test_a_caption_memory_is_refused_for_an_hf_engine_in_one_line(exported, tmp_path):
    _, engine_dir, _ = exported(VED)
    captions = make_coco_dataset(str(tmp_path / "data"), "train", 2)
    result = _invoke("memory", engine_dir, "--data", captions)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: the engine {engine_dir} is a Hugging Face {VED} model, which searches exactly as transformers' "
        "generate() does; a caption memory re-ranks edgevlm's own beam search (use it with edgevlm's engines)"]


def test_a_blip_vqa_engine_refuses_to_caption_in_one_line(exported):
    _, engine_dir, _ = exported(BLIP_VQA)
    result = _invoke("caption", COFFEE, "--engine", engine_dir)
    _one_line_error(result, "answers questions only", "blip-vqa")
    assert result.stdout == ""


@pytest.mark.parametrize("name", [GIT, BLIP_VQA])
def test_ask_answers_with_probability_and_abstention(exported, name):
    _, engine_dir, _ = exported(name)
    result = _invoke("ask", CHELSEA, "is there a dog?", "--engine", engine_dir, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert {"image", "question", "answer", "model_answer", "probability", "abstained"} <= set(record)
    assert record["image"] == CHELSEA and record["question"] == "is there a dog?"
    assert 0.0 <= record["probability"] <= 1.0 and isinstance(record["abstained"], bool)
    assert record["answer"] == ("I'm not sure" if record["abstained"] else record["model_answer"])
    # plain text: the answer alone
    result = _invoke("ask", CHELSEA, "is there a dog?", "--engine", engine_dir, "--abstain-below", 0)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1


def test_a_caption_only_engine_refuses_questions_in_one_line(exported):
    _, engine_dir, _ = exported(VED)
    result = _invoke("ask", CHELSEA, "is there a dog?", "--engine", engine_dir, "--json")
    _one_line_error(result, "answers no questions")
    assert result.stdout == ""


# --------------------------------------------------------------------------- narrate / bench / quantize
def test_narrate_the_sample_video_as_text(exported, tmp_path):
    _, engine_dir, _ = exported(VED)
    events = tmp_path / "events.jsonl"
    # text only: no TTS, no audio device, never read stdin; the 10 s clip runs unpaced
    result = _invoke("narrate", VIDEO, "--engine", engine_dir, "--tts", "none", "--no-speak", "--no-questions",
                     "--events", events)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    narration = [line for line in lines if line.startswith("[")]
    assert narration and narration[0].startswith("[    0.00s] ") and narration[0][len("[    0.00s] "):].strip()
    assert lines[-1].startswith("summary: ")
    summary = json.loads(lines[-1].removeprefix("summary: "))
    assert summary["frames"] > 0 and summary["captions"] >= 1 and summary["utterances"] == len(narration)
    assert summary["speech"] is False and summary["decode_errors"] == 0
    logged = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = [event["event"] for event in logged]
    assert kinds.count("frame") == summary["frames"] and kinds.count("caption") == summary["captions"]
    assert "spoken" in kinds and kinds[-1] == "summary"


GRAPH_TIMINGS = {"vision_ms", "cross_kv_ms", "decoder_step_ms"}


def test_bench_against_another_engine_prints_per_graph_timings(exported):
    _, engine_dir, _ = exported(VED)
    result = _invoke("bench", "--engine", engine_dir, "--vs-engine", engine_dir, "--images", CHELSEA,
                     "--rounds", 1, "--threads", 1)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("runtime   p50 ") and "graphs {" in lines[0]
    assert lines[1].startswith("vs_engine p50 ")
    report = json.loads(lines[-1])
    assert set(report["runtime_graphs"]) == GRAPH_TIMINGS and set(report["vs_engine_graphs"]) == GRAPH_TIMINGS
    assert report["tokens_identical"] is True and report["images"] == 1 and report["rounds"] == 1
    assert report["runtime_imported_torch"] is False


def test_bench_against_the_hf_folder_it_came_from(exported):
    """The PyTorch peer of an engine exported from a Hugging Face folder is that folder,
    generated by transformers: the same model, so the same token ids."""
    model_dir, engine_dir, _ = exported(VED)
    result = _invoke("bench", "--engine", engine_dir, "--model", model_dir, "--images", CHELSEA,
                     "--rounds", 1, "--threads", 1, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[-1])
    assert set(report["runtime_graphs"]) == GRAPH_TIMINGS
    assert report["tokens_identical"] is True and report["token_agreement"] == 1.0
    assert report["torch_ms_p50"] > 0 and report["images"] == 1


def test_bench_defaults_to_the_hf_folder_the_engine_came_from(exported):
    """Without --model the peer is the engine's own source folder (manifest source.model_dir),
    not the shipped captioner: timing another model says nothing about this engine."""
    _, engine_dir, _ = exported(VED)
    result = _invoke("bench", "--engine", engine_dir, "--images", CHELSEA, "--rounds", 1, "--threads", 1)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("runtime   p50 ") and "graphs {" in lines[0]
    assert "tokens identical: True" in lines[2], lines[2]
    assert json.loads(lines[-1])["tokens_identical"] is True


def test_quantize_to_int8_and_caption_with_it(exported, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # calibrated ranges are cached under ~/.cache
    _, engine_dir, _ = exported(VED)
    int8 = str(tmp_path / "int8")
    # No --eval: the accuracy gate compares INT8 with FP32 captions, meaningless on random-init
    # weights; without it quantize writes the engine and says it was not gated.
    calib = write_calibration_crops(str(tmp_path / "calib"), 96)
    result = _invoke("quantize", engine_dir, "--calib", calib, "--out", int8, "--calib-limit", 16)
    assert result.exit_code == 0, result.output
    assert "calibrating on 16 images" in result.stderr and f"wrote {int8} (not gated" in result.stderr
    with open(os.path.join(int8, "edgevlm.json")) as f:
        manifest = json.load(f)
    assert manifest["precision"] == "int8" and manifest["model"]["family"] == VED
    assert manifest["quantization"]["calibration"]["images"] == 16
    # a GPT-2 decoder's engine has the single-token step graph too, calibrated on per-layer feeds
    assert set(manifest["quantization"]["graphs"]) == {"vision", "cross_kv", "decoder", "decoder_step"}
    for section in HF_SECTIONS:
        assert manifest.get(section), f"INT8 manifest lost section {section}"
    # the step's word rows (token_embeddings.py) at half the bytes
    rows, full = np.load(os.path.join(int8, "token_embeddings.npy")), np.load(os.path.join(engine_dir, "token_embeddings.npy"))
    assert rows.dtype == np.float16 and full.dtype == np.float32
    np.testing.assert_allclose(rows, full, rtol=1e-3, atol=1e-4)
    result = _invoke("caption", COFFEE, CHELSEA, "--engine", int8)
    assert result.exit_code == 0, result.output
    assert [line.split(": ", 1)[0] for line in result.stdout.splitlines()] == [COFFEE, CHELSEA]


# --------------------------------------------------------------------------- export refusals
def _copy_of(hf_folders, tmp_path, name=VED):
    folder = tmp_path / "hf"
    shutil.copytree(hf_folders(name), folder)
    return folder


def _edit_config(folder, edit):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def _refused(folder, tmp_path, *fragments):
    out = tmp_path / "engine"
    result = _invoke("export", folder, "--out", out)
    line = _one_line_error(result, *fragments)
    assert not out.exists() and not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]
    return line


def test_export_refuses_custom_code(hf_folders, tmp_path):
    folder = _copy_of(hf_folders, tmp_path)
    _edit_config(folder, lambda c: c.update(auto_map={"AutoModel": "modeling_custom.CustomModel"}))
    _refused(folder, tmp_path, "auto_map", "trust_remote_code")


def test_export_refuses_a_pickle_only_checkpoint(hf_folders, tmp_path):
    folder = _copy_of(hf_folders, tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"")
    _refused(folder, tmp_path, "no model.safetensors", "pytorch_model.bin", "safetensors only")


def test_export_refuses_an_unsupported_decoder(hf_folders, tmp_path):
    folder = _copy_of(hf_folders, tmp_path)
    _edit_config(folder, lambda c: c["decoder"].update(model_type="roberta"))
    _refused(folder, tmp_path, "'roberta' decoder is not supported", "supported decoders: gpt2, bert")


def test_export_refuses_an_unknown_architecture(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["Pix2StructForConditionalGeneration"]}))
    _refused(folder, tmp_path, "cannot export architecture Pix2StructForConditionalGeneration",
             "supported families: blip, blip-vqa, edgevlm-captioner, git, vision-encoder-decoder")
