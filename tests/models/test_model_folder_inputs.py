"""Model folders from users (issue 16): safetensors headers checked against config.json
before any tensor is read; configs checked for size and shape."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from edgevlm.errors import EdgeVLMError
from edgevlm.model_io import load_model


def test_a_tensor_whose_shape_disagrees_with_the_config_is_named(tiny_model_dir):
    path = os.path.join(tiny_model_dir, "model.safetensors")
    state = load_file(path)
    name = next(k for k, v in state.items() if v.dim() == 2)
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    save_file(state, path)
    with pytest.raises(EdgeVLMError, match=rf"does not match config.json: tensor {name} is \[\d+, \d+\], the config makes it"):
        load_model(tiny_model_dir)


def test_missing_and_extra_tensors_are_named(tiny_model_dir):
    path = os.path.join(tiny_model_dir, "model.safetensors")
    state = load_file(path)
    state["surprise"] = torch.zeros(1)
    save_file(state, path)
    with pytest.raises(EdgeVLMError, match=r"does not match config.json: missing \[\], unexpected \['surprise'\]"):
        load_model(tiny_model_dir)


@pytest.mark.parametrize("content", [b"", b"\xff" * 8 + b"{}", b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!"])
def test_a_broken_safetensors_header_is_one_line(tiny_model_dir, content):
    path = os.path.join(tiny_model_dir, "model.safetensors")
    with open(path, "wb") as f:
        f.write(content)
    with pytest.raises(EdgeVLMError) as caught:
        load_model(tiny_model_dir)
    assert str(caught.value).startswith(f"cannot read {path}: ") and "\n" not in str(caught.value)


def test_a_config_that_is_not_an_object_is_refused(tiny_model_dir):
    with open(os.path.join(tiny_model_dir, "config.json"), "w") as f:
        json.dump([1, 2], f)
    with pytest.raises(EdgeVLMError, match="config.json holds a JSON list, not a model config object"):
        load_model(tiny_model_dir)
