"""A Hugging Face ``save_pretrained`` folder, read safely: what every HF export family shares.

Loading is safetensors only (a pickle checkpoint can run code when unpickled) and folders
that need ``trust_remote_code`` (an ``auto_map`` in config.json: the model's own Python
files) are refused: an engine is built only from code this package ships.
"""

from __future__ import annotations

import os

from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import read_json

SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")  # fast, WordPiece, BPE
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


def read_config(model_dir: str) -> dict:
    return read_json(os.path.join(model_dir, "config.json"), "a Hugging Face model config")


def architectures(config: dict) -> tuple[str, ...]:
    names = config.get("architectures") if isinstance(config, dict) else None
    return tuple(names) if isinstance(names, list) else ()


def check_loadable(model_dir: str, config: dict) -> None:
    """Refuse custom code and pickle-only checkpoints with one line naming the fix."""
    if "auto_map" in config:
        raise EdgeVLMError(f"{model_dir}/config.json has an auto_map: the model needs its own Python code "
                           "(trust_remote_code), which edgevlm never runs; export a model built from transformers' "
                           "own classes")
    if not any(os.path.isfile(os.path.join(model_dir, name)) for name in SAFETENSORS):
        pickles = [name for name in PICKLES if os.path.isfile(os.path.join(model_dir, name))]
        found = f"it has only {', '.join(pickles)}" if pickles else "it has no weights file"
        raise EdgeVLMError(f"{model_dir} has no model.safetensors ({found}); edgevlm loads safetensors only. "
                           "Convert it with `model.save_pretrained(DIR, safe_serialization=True)`")


def load_pretrained(model_cls, model_dir: str):
    """``model_cls.from_pretrained`` on the CPU in float32 with eager attention (the
    reference every graph is checked against), safetensors only, no remote code."""
    import torch

    from safetensors import SafetensorError

    config = read_config(model_dir)
    check_loadable(model_dir, config)
    expected = model_cls.config_class.model_type
    if config.get("model_type") != expected:
        raise EdgeVLMError(f"{model_dir} holds a {config.get('model_type')!r} checkpoint, not {expected!r}; "
                           "pass the folder the engine was exported from")
    try:
        model = model_cls.from_pretrained(model_dir, use_safetensors=True, attn_implementation="eager",
                                          dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeVLMError(f"transformers cannot load {model_dir} as {model_cls.__name__}: {first}") from exc
    return model.eval()


def load_tokenizer(model_dir: str):
    """The folder's tokenizer through transformers (fast: it has a tokenizer.json to copy)."""
    from transformers import AutoTokenizer

    # Without its files, transformers 5 builds an empty tokenizer and the engine would say nothing
    if not any(os.path.isfile(os.path.join(model_dir, name)) for name in TOKENIZER_FILES):
        raise EdgeVLMError(f"{model_dir} has no tokenizer ({' or '.join(TOKENIZER_FILES)}); save it with "
                           "`AutoTokenizer.from_pretrained(...).save_pretrained(DIR)`")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeVLMError(f"cannot load the tokenizer of {model_dir}: {first}; save it with "
                           "`AutoTokenizer.from_pretrained(...).save_pretrained(DIR)`") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise EdgeVLMError(f"{model_dir}: its tokenizer has no fast (tokenizers) version; edgevlm's runtime reads "
                           "tokenizer.json only")
    return tokenizer


def tokenizer_json(tokenizer) -> str:
    """The folder's tokenizer as tokenizer.json text (what the torch-free runtime loads)."""
    return tokenizer.backend_tokenizer.to_str()


def read_optional_json(model_dir: str, name: str, what: str) -> dict:
    path = os.path.join(model_dir, name)
    return read_json(path, what) if os.path.isfile(path) else {}


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
