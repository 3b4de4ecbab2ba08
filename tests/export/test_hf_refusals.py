"""Hugging Face folders and engines that cannot work are refused in one line naming the
problem: a folder without a tokenizer, a mismatched reference folder, manifest sections
that are malformed or ask for more positions than the cache holds."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.export.families import EXPORT_FAMILIES
from tests.support import edit_manifest


@pytest.fixture(scope="module")
def git_engine(tmp_path_factory):
    from edgevlm.export.onnx_export import export_engine

    root = tmp_path_factory.mktemp("git")
    model_dir = EXPORT_FAMILIES["git"].write_tiny(str(root / "model"))
    export_engine(model_dir, str(root / "engine"))
    return model_dir, str(root / "engine")


def _edited_engine(git_engine, tmp_path, change) -> str:
    engine = str(tmp_path / "engine")
    shutil.copytree(git_engine[1], engine)
    edit_manifest(engine, change)
    return engine


def test_a_folder_without_a_tokenizer_is_refused(git_engine, tmp_path):
    from edgevlm.export.onnx_export import export_engine

    folder = tmp_path / "model"
    shutil.copytree(git_engine[0], folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        os.remove(folder / name)
    with pytest.raises(EdgeVLMError, match="has no tokenizer"):
        export_engine(str(folder), str(tmp_path / "engine"))
    assert not (tmp_path / "engine").exists()


def test_validating_against_another_family_names_both(git_engine, tmp_path):
    from edgevlm.export.validate import validate_engine

    blip = EXPORT_FAMILIES["blip"].write_tiny(str(tmp_path / "blip"))
    blip_config = json.loads(open(os.path.join(blip, "config.json")).read())
    blip_config["architectures"] = ["GitForCausalLM"]  # recognised as GIT, holds BLIP weights
    with open(os.path.join(blip, "config.json"), "w") as f:
        json.dump(blip_config, f)
    with pytest.raises(EdgeVLMError, match="holds a 'blip' checkpoint, not 'git'"):
        validate_engine(git_engine[1], blip, [])


@pytest.mark.parametrize("change, message", [
    (lambda m: m["hf_generation"].update(num_beams=0), "hf_generation is invalid: num_beams must be at least 1"),
    (lambda m: m["image_processor"].update(resize="sideways"), "image_processor is invalid: .*resize"),
    (lambda m: m["hf_generation"].update(max_new_tokens=500), "hf_generation needs 501 decoder positions but "
                                                              "model.cache_capacity is 48"),
    (lambda m: m.pop("image_processor"), "image_processor is missing"),
])
def test_bad_hf_sections_refuse_the_engine_naming_the_field(git_engine, tmp_path, change, message):
    from edgevlm.runtime.engine import CaptionEngine

    engine = _edited_engine(git_engine, tmp_path, change)
    with pytest.raises(EdgeVLMError, match=message):
        CaptionEngine(engine, verify=False)


def test_long_questions_leave_room_for_an_answer(git_engine):
    from edgevlm.runtime.engine import HF_MAX_ANSWER_TOKENS, CaptionEngine

    with CaptionEngine(git_engine[1]) as engine:
        prompt = engine.hf_question_ids(" ".join(["dog"] * 200))
        assert len(prompt) + HF_MAX_ANSWER_TOKENS <= engine.manifest.model.cache_capacity
