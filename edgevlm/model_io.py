"""A model folder: ``config.json`` + ``model.safetensors`` + ``tokenizer.json``.

The config alone rebuilds the module; weights load from safetensors (no pickles).
"""

from __future__ import annotations

import dataclasses
import json
import os

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from edgevlm.config import ModelConfig
from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import atomic_dir, check_replaceable, read_json
from edgevlm.models.captioner import Captioner
from edgevlm.runtime.text import CaptionTokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a config is a few KB (the concept words included)


def save_model(model: Captioner, tokenizer: CaptionTokenizer, path: str, dtype: torch.dtype = torch.float32,
               extra: dict | None = None) -> None:
    """Write the folder atomically; ``dtype`` float16 halves the file (weights upcast on load)."""
    check_replaceable(path, CONFIG_FILE, "a model folder")
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    with atomic_dir(path) as tmp:
        with open(os.path.join(tmp, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(model.cfg.to_dict() | {"training": extra or {}}, f, indent=2)
        save_file(state, os.path.join(tmp, WEIGHTS_FILE))
        tokenizer.tokenizer.save(os.path.join(tmp, TOKENIZER_FILE))


def load_config(path: str) -> ModelConfig:
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isdir(path):
        raise EdgeVLMError(f"model folder not found: {path}")
    if not os.path.isfile(config_path):
        raise EdgeVLMError(f"{path} is not a model folder: {CONFIG_FILE} is missing")
    data = read_json(config_path, "a model config", MAX_CONFIG_BYTES)
    if not isinstance(data, dict):
        raise EdgeVLMError(f"{config_path} holds a JSON {type(data).__name__}, not a model config object")
    data.pop("training", None)
    return ModelConfig.from_dict(data)


def _check_weights(weights: str, model: Captioner) -> None:
    """Compare the tensors a safetensors file declares (its header: names, shapes) with the
    module config.json builds, before any tensor is read: a mismatch, or a header that does
    not parse, is one EdgeVLMError naming the first tensor at fault."""
    try:
        with safe_open(weights, framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for bad or truncated headers
        raise EdgeVLMError(f"cannot read {weights}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                           "not a safetensors file or cut short: copy the model folder again") from exc
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise EdgeVLMError(f"{weights} does not match config.json: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, shape in expected.items():
        if shapes[name] != shape:
            raise EdgeVLMError(f"{weights} does not match config.json: tensor {name} is {list(shapes[name])}, "
                               f"the config makes it {list(shape)}; use the config.json saved with these weights")


def load_model(path: str) -> tuple[Captioner, CaptionTokenizer]:
    """Model folder -> (Captioner in eval mode, float32; tokenizer)."""
    cfg = load_config(path)
    weights = os.path.join(path, WEIGHTS_FILE)
    if not os.path.isfile(weights):
        raise EdgeVLMError(f"{path} is not a model folder: {WEIGHTS_FILE} is missing")
    model = Captioner(cfg)
    _check_weights(weights, model)
    try:
        state = load_file(weights)
    except Exception as exc:  # safetensors raises its own error types for truncated files
        raise EdgeVLMError(f"cannot read {weights}: {exc}") from exc
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    tokenizer = CaptionTokenizer.load(os.path.join(path, TOKENIZER_FILE))
    if tokenizer.sep_id != cfg.sep_id:
        raise EdgeVLMError(f"{path}: tokenizer's [SEP] id {tokenizer.sep_id} does not match config sep_id {cfg.sep_id}")
    if tokenizer.vocab_size != cfg.decoder.vocab_size:
        raise EdgeVLMError(f"{path}: tokenizer has {tokenizer.vocab_size} tokens but config says {cfg.decoder.vocab_size}")
    return model.eval(), tokenizer


def resize_vocab(model: Captioner, vocab_size: int) -> None:
    """Grow the (tied) token embedding to ``vocab_size`` rows in place: old rows kept, new
    rows initialised as at training start. For a tokenizer extended by ``add_words``."""
    old = model.decoder.tok_emb
    if vocab_size == old.num_embeddings:
        return
    if vocab_size < old.num_embeddings:
        raise EdgeVLMError(f"cannot shrink the vocabulary from {old.num_embeddings} to {vocab_size}")
    new = torch.nn.Embedding(vocab_size, old.embedding_dim)
    with torch.no_grad():
        torch.nn.init.normal_(new.weight, std=0.02)
        new.weight[: old.num_embeddings] = old.weight
    model.decoder.tok_emb = new
    decoder_cfg = dataclasses.replace(model.cfg.decoder, vocab_size=vocab_size)
    model.decoder.cfg = decoder_cfg
    model.cfg = dataclasses.replace(model.cfg, decoder=decoder_cfg)
