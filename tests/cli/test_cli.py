"""The edgevlm command: captions, info, and one-line errors for bad input."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgevlm.cli.main import cli
from edgevlm.paths import default_model_dir
from tests.support import SAMPLES

COFFEE = os.path.join(SAMPLES, "coffee.jpg")


def _run(*args):
    """Run the real console entry point in a subprocess (as a user would)."""
    return subprocess.run([sys.executable, "-m", "edgevlm.cli.main", *args], capture_output=True, text=True)


def test_caption_json_with_a_given_model(tiny_model_dir):
    result = CliRunner().invoke(cli, ["caption", COFFEE, os.path.join(SAMPLES, "chelsea.jpg"),
                                      "--model", tiny_model_dir, "--json", "--beam", "2"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["image"] for line in lines] == [COFFEE, os.path.join(SAMPLES, "chelsea.jpg")]
    assert all(isinstance(line["caption"], str) for line in lines)


def test_caption_with_the_shipped_model_sees_the_astronaut_is_a_person():
    # Flickr8k is mostly people and dogs: a person is what the shipped model must get right.
    astronaut = os.path.join(SAMPLES, "astronaut.jpg")
    result = _run("caption", astronaut)
    assert result.returncode == 0, result.stderr
    path, caption = result.stdout.strip().split(": ", 1)
    assert path == astronaut
    assert {"man", "woman", "person", "boy", "girl", "people"} & set(caption.split()), caption


def test_caption_a_folder_gives_one_line_per_image(tiny_model_dir):
    result = CliRunner().invoke(cli, ["caption", SAMPLES, "--model", tiny_model_dir])
    assert result.exit_code == 0, result.output
    names = sorted(n for n in os.listdir(SAMPLES) if n.endswith(".jpg"))
    assert [line.split(": ")[0] for line in result.output.splitlines()] == [os.path.join(SAMPLES, n) for n in names]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: str(d / "missing.jpg"), "image not found"),
        (lambda d: (d / "notes.txt").write_text("hello") and str(d / "notes.txt"), "cannot decode image"),
        (lambda d: (d / "bad.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 20) and str(d / "bad.jpg"),
         "cannot decode image"),
    ],
)
def test_bad_images_give_one_line_and_exit_1(tmp_path, make, message, tiny_model_dir):
    result = _run("caption", make(tmp_path), "--model", tiny_model_dir)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_debug_shows_the_traceback(tmp_path):
    result = _run("--debug", "caption", str(tmp_path / "missing.jpg"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_eval_rejects_malformed_json_and_missing_images(tmp_path):
    bad = tmp_path / "captions.json"
    bad.write_text("{oops")
    result = _run("eval", "--data", str(bad))
    assert result.returncode == 1 and "is not valid JSON" in result.stderr and "Traceback" not in result.stderr
    bad.write_text(json.dumps({"images": [], "annotations": []}))
    result = _run("eval", "--data", str(bad))
    assert result.returncode == 1 and "images folder not found" in result.stderr


def test_info_json():
    result = _run("info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["default_model"] == default_model_dir()
    assert os.path.isfile(os.path.join(info["default_model"], "model.safetensors"))
    assert "CPUExecutionProvider" in info["providers"]
    assert {"version", "default_engine"} <= set(info)


def test_caption_on_the_runtime_matches_the_pytorch_path(tiny_engine_master, tiny_model_master):
    via_engine = CliRunner().invoke(cli, ["caption", COFFEE, "--engine", tiny_engine_master, "--beam", "1"])
    via_model = CliRunner().invoke(cli, ["caption", COFFEE, "--model", tiny_model_master, "--beam", "1"])
    assert via_engine.exit_code == 0 and via_model.exit_code == 0, via_engine.output + via_model.output
    assert via_engine.output == via_model.output


def test_caption_a_video_every_second_carries_timestamps(tiny_engine_master, tmp_path):
    from tests.support import make_video

    video = make_video(str(tmp_path / "clip.avi"), seconds=3.0, fps=10)
    result = CliRunner().invoke(cli, ["caption", video, "--engine", tiny_engine_master, "--every", "1", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["t"] for line in lines] == [0.0, 1.0, 2.0]
    assert [line["frame"] for line in lines] == [0, 10, 20]
    assert all(line["source"] == video and isinstance(line["caption"], str) for line in lines)


def test_caption_bad_path_is_one_line(tiny_engine_master, tmp_path):
    result = _run("caption", str(tmp_path / "nope.mp4"), "--engine", tiny_engine_master)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == f"error: source not found: {tmp_path / 'nope.mp4'}; give an image, a folder, a video, a camera index, a URL or a GStreamer pipeline"


def test_export_and_validate_commands(tiny_model_master, tmp_path):
    out = str(tmp_path / "engine")
    result = _run("export", tiny_model_master, "--out", out)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["cross_kv.onnx", "decoder.onnx", "decoder_step.onnx", "edgevlm.json",
                                       "tokenizer.json", "vision.onnx"]
    result = _run("validate", out, "--against", tiny_model_master, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] and report["tokens_identical"] and len(report["outputs"]) == 6  # + decoder_step.logits
