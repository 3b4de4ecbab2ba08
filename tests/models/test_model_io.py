import json
import os

import pytest
import torch

from edgevlm.errors import EdgeVLMError
from edgevlm.model_io import load_model, save_model


@torch.no_grad()
def test_save_load_round_trip_gives_identical_logits(tiny_model_dir, tmp_path):
    model, tokenizer = load_model(tiny_model_dir)
    features = torch.randn(2, model.cfg.vision.channels, 2, 2)
    ids = torch.tensor([[2, 5, 6], [2, 7, 8]])
    again = str(tmp_path / "again")
    save_model(model, tokenizer, again)
    reloaded, _ = load_model(again)
    torch.testing.assert_close(model(features, ids), reloaded(features, ids), atol=0, rtol=0)
    assert sorted(os.listdir(again)) == ["config.json", "model.safetensors", "tokenizer.json"]


@torch.no_grad()
def test_float16_folder_loads_as_float32_within_half_precision(tiny_model_dir, tmp_path):
    model, tokenizer = load_model(tiny_model_dir)
    half = str(tmp_path / "half")
    save_model(model, tokenizer, half, dtype=torch.float16)
    reloaded, _ = load_model(half)
    assert os.path.getsize(os.path.join(half, "model.safetensors")) < 0.6 * os.path.getsize(
        os.path.join(tiny_model_dir, "model.safetensors"))
    features = torch.randn(1, model.cfg.vision.channels, 2, 2)
    ids = torch.tensor([[2, 5, 6]])
    torch.testing.assert_close(model(features, ids), reloaded(features, ids), atol=2e-2, rtol=2e-2)


def test_bad_model_folders_are_refused(tmp_path, tiny_model_dir):
    with pytest.raises(EdgeVLMError, match="model folder not found"):
        load_model(str(tmp_path / "nowhere"))
    os.remove(os.path.join(tiny_model_dir, "model.safetensors"))
    with pytest.raises(EdgeVLMError, match="model.safetensors is missing"):
        load_model(tiny_model_dir)


def test_truncated_weights_are_refused(tiny_model_dir):
    path = os.path.join(tiny_model_dir, "model.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(EdgeVLMError, match="cannot read"):
        load_model(tiny_model_dir)


def test_config_fields_are_validated(tiny_model_dir):
    path = os.path.join(tiny_model_dir, "config.json")
    cfg = json.load(open(path))
    cfg["decoder"]["n_heads"] = 5
    json.dump(cfg, open(path, "w"))
    with pytest.raises(EdgeVLMError, match="d_model=32 must divide by n_heads=5"):
        load_model(tiny_model_dir)
