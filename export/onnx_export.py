"""``edgevlm export``: a model folder -> an engine folder (three ONNX graphs, tokenizer,
manifest), written to a temp folder and renamed into place.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import warnings

import onnx
import torch

from edgevlm import __version__
from edgevlm.export.graphs import GRAPH_MODULES, dummy_inputs, graph_specs
from edgevlm.fileio import atomic_dir, check_replaceable, write_json
from edgevlm.model_io import TOKENIZER_FILE, WEIGHTS_FILE, load_model
from edgevlm.runtime.manifest import MANIFEST_FILE, SCHEMA_VERSION, sha256_file

log = logging.getLogger(__name__)

OPSET = 17


def _export_graph(module: torch.nn.Module, specs: dict, path: str, opset: int) -> None:
    inputs, outputs = specs["inputs"], specs["outputs"]
    dynamic_axes = {
        spec.name: {axis: dim for axis, dim in enumerate(spec.shape) if isinstance(dim, str)}
        for spec in inputs + outputs
    }
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but keeps module paths as node names
        # ("/decoder/layers.0/cross_attn/q/MatMul"), which quantization exclusions rely on.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, dummy_inputs(inputs), path, dynamo=False, opset_version=opset,
            input_names=[s.name for s in inputs], output_names=[s.name for s in outputs],
            dynamic_axes={k: v for k, v in dynamic_axes.items() if v}, do_constant_folding=True,
        )
    onnx.checker.check_model(path, full_check=True)


def _name_cross_kv_nodes(path: str) -> None:
    """The cross-K/V graph calls each layer's ``cross_attn.kv`` outside its parents' forward,
    so the exporter names those nodes /kv/..., /kv_1/...: restore the full module path."""
    model = onnx.load(path)
    pattern = re.compile(r"^/kv(?:_(\d+))?/")
    for node in model.graph.node:
        match = pattern.match(node.name)
        if match:
            layer = int(match.group(1) or 0)
            node.name = f"/decoder/layers.{layer}/cross_attn/kv/" + node.name[match.end():]
    onnx.save(model, path)


def _spec_json(specs) -> list[dict]:
    return [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in specs]


def _concepts_manifest(cfg) -> dict:
    """The concept head's categories, their words and the tuned thresholds (nothing for a
    model without one): the runtime routes existence questions and grounds captions by these."""
    c = cfg.concepts
    out = {}
    if c.names:
        out["concepts"] = {"names": list(c.names), "words": {n: list(w) for n, w in zip(c.names, c.words)},
                           "ban_below": c.ban_below, "abstain_below": c.abstain_below}
        out["novelty"] = {"unfamiliar_above": c.unfamiliar_above}
    return out


@torch.no_grad()
def export_engine(model_dir: str, out_dir: str, opset: int = OPSET) -> dict:
    """Export MODEL_DIR to OUT_DIR; returns the manifest dict."""
    check_replaceable(out_dir, MANIFEST_FILE, "an edgevlm engine", inputs=(model_dir,))
    model, tokenizer = load_model(model_dir)
    cfg = model.cfg
    capacity = cfg.decoder.max_len
    specs = graph_specs(model, capacity)
    with atomic_dir(out_dir) as tmp:
        files, graphs = {}, {}
        for name, module_cls in GRAPH_MODULES.items():
            file_name = f"{name}.onnx"
            log.info("exporting %s", file_name)
            _export_graph(module_cls(model).eval(), specs[name], os.path.join(tmp, file_name), opset)
            if name == "cross_kv":
                _name_cross_kv_nodes(os.path.join(tmp, file_name))
            graphs[name] = {"file": name, "inputs": _spec_json(specs[name]["inputs"]),
                            "outputs": _spec_json(specs[name]["outputs"])}
        shutil.copyfile(os.path.join(model_dir, TOKENIZER_FILE), os.path.join(tmp, TOKENIZER_FILE))
        for name in list(GRAPH_MODULES) + ["tokenizer"]:
            file_name = TOKENIZER_FILE if name == "tokenizer" else f"{name}.onnx"
            path = os.path.join(tmp, file_name)
            files[name] = {"path": file_name, "sha256": sha256_file(path), "bytes": os.path.getsize(path)}
        d = cfg.decoder
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "files": files,
            "graphs": graphs,
            "model": {
                "family": "edgevlm-captioner",
                "n_layers": d.n_layers, "n_heads": d.n_heads, "head_dim": d.head_dim, "d_model": d.d_model,
                "vocab_size": d.vocab_size, "max_len": d.max_len, "cache_capacity": capacity,
                "num_visual_tokens": cfg.num_visual_tokens, "pooled_dim": cfg.vision.channels,
                "vision_feature": cfg.vision.feature,
                # The decoder graph reads a fixed-capacity cache and returns only the new
                # rows; the runtime writes them at `position` (see DESIGN.md).
                "cache_layout": "fixed_capacity",
            },
            "preprocess": {
                "image_size": cfg.preprocess.image_size, "mean": list(cfg.preprocess.mean),
                "std": list(cfg.preprocess.std), "color_order": cfg.preprocess.color_order,
                "resize_mode": cfg.preprocess.resize_mode, "interpolation": cfg.preprocess.interpolation,
                "layout": "NCHW", "scale": 1 / 255,
            },
            "special_tokens": {"bos": cfg.bos_id, "eos": cfg.eos_id, "pad": cfg.pad_id, "unk": cfg.unk_id}
            | ({"sep": tokenizer.sep_id} if tokenizer.sep_id is not None else {}),
            # "vqa": the tokenizer has [SEP] and the decoder takes prefix_len (prefix-LM prefill)
            "tasks": ["caption", "vqa"] if tokenizer.sep_id is not None else ["caption"],
            "generation": {
                "beam_size": cfg.generation.beam_size, "max_new_tokens": min(cfg.generation.max_new_tokens, capacity - 1),
                "no_repeat_ngram": cfg.generation.no_repeat_ngram, "length_penalty": cfg.generation.length_penalty,
                "no_repeat_word": True,
                "banned_ids": [cfg.pad_id, cfg.unk_id, cfg.bos_id] + ([cfg.sep_id] if cfg.sep_id is not None else []),
            },
            "precision": "fp32",
            **_concepts_manifest(cfg),
            "source": {
                "model_dir": os.path.abspath(model_dir),
                "checkpoint_sha256": sha256_file(os.path.join(model_dir, WEIGHTS_FILE)),
                "config_sha256": sha256_file(os.path.join(model_dir, "config.json")),
            },
            "exporter": {
                "edgevlm": __version__, "torch": torch.__version__, "onnx": onnx.__version__, "opset": opset,
                "onnxruntime_min": "1.17", "exporter": "torch.onnx (TorchScript)",
            },
        }
        write_json(os.path.join(tmp, MANIFEST_FILE), manifest)
    return manifest
