"""What a model family tells the exporter (torch side); its runtime side is
``edgevlm.runtime.families``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class ExportFamily:
    name: str  # model.family in the manifest: the runtime dispatches on it
    recognise: Callable  # (model_dir, config.json dict) -> True when this family exports the folder
    load: Callable  # (model_dir) -> (torch model, parts: its tokenizer, or an HF folder's tokenizer and configs)
    graph_modules: dict  # graph name -> (model) -> nn.Module, in the order they run
    graph_specs: Callable  # (model, cache capacity) -> graph -> {"inputs": [TensorSpec], "outputs": [...]}
    capacity: Callable  # (model, parts) -> self-attention cache slots
    sections: Callable  # (model, parts, capacity) -> manifest fields: model, preprocess, special_tokens, ...
    source_files: dict  # manifest.source key -> file of the model folder whose sha256 it records
    tokenizer_file: str  # copied into the engine as "tokenizer" (unless write_tokenizer is set)
    validate: Callable  # (engine, model_dir, images_bgr, beam_size) -> parity report (export.validate)
    write_tiny: Callable  # (out_dir) -> a tiny random-init model folder: tests round-trip every family
    fix_graph: dict = field(default_factory=dict)  # graph -> (onnx path) -> None, run after export
    write_tokenizer: Callable | None = None  # (parts, out path): writes the engine's tokenizer.json
    write_files: Callable | None = None  # (model, out folder) -> {manifest file key: name}: files beside the graphs
