"""Our own captioner as an export family: EfficientNet-Lite vision graph (projector and
concept head inside), once-per-image cross K/V, decoder on a fixed-capacity cache."""

from __future__ import annotations

import re

import onnx

from edgevlm.export.families.base import ExportFamily
from edgevlm.export.graphs import GRAPH_MODULES, graph_specs
from edgevlm.model_io import CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, load_model
from edgevlm.runtime.families.captioner import NAME
from edgevlm.runtime.manifest import Concepts, ModelInfo, Novelty, Preprocess, SpecialTokens


def _recognise(model_dir: str, config) -> bool:
    """Our config.json: a ModelConfig dict (no Hugging Face ``architectures``) beside model.safetensors."""
    return isinstance(config, dict) and "architectures" not in config and "decoder" in config


def _name_cross_kv_nodes(path: str) -> None:
    """The cross-K/V graph calls each layer's ``cross_attn.kv`` outside its parents' forward,
    so the exporter names those nodes /kv/..., /kv_1/...: restore the full module path
    (quantization's --exclude patterns name nodes by it)."""
    model = onnx.load(path)
    pattern = re.compile(r"^/kv(?:_(\d+))?/")
    for node in model.graph.node:
        match = pattern.match(node.name)
        if match:
            layer = int(match.group(1) or 0)
            node.name = f"/decoder/layers.{layer}/cross_attn/kv/" + node.name[match.end():]
    onnx.save(model, path)


def _sections(model, tokenizer, capacity: int) -> dict:
    """The manifest fields this family fills (files, graphs and provenance are the exporter's)."""
    cfg = model.cfg
    d, p, c = cfg.decoder, cfg.preprocess, cfg.concepts
    vqa = tokenizer.sep_id is not None  # the tokenizer has [SEP] and the decoder takes prefix_len
    sections = {
        "model": ModelInfo(
            family=NAME, n_layers=d.n_layers, n_heads=d.n_heads, head_dim=d.head_dim, d_model=d.d_model,
            vocab_size=d.vocab_size, max_len=d.max_len, cache_capacity=capacity,
            num_visual_tokens=cfg.num_visual_tokens, pooled_dim=cfg.vision.channels, vision_feature=cfg.vision.feature,
            # The decoder graph reads a fixed-capacity cache and returns only the new rows;
            # the runtime writes them at `position` (see DESIGN.md).
            cache_layout="fixed_capacity"),
        "preprocess": Preprocess(image_size=p.image_size, mean=tuple(p.mean), std=tuple(p.std),
                                 color_order=p.color_order, resize_mode=p.resize_mode, interpolation=p.interpolation,
                                 layout="NCHW", scale=1 / 255),
        "special_tokens": SpecialTokens(bos=cfg.bos_id, eos=cfg.eos_id, pad=cfg.pad_id, unk=cfg.unk_id,
                                        sep=tokenizer.sep_id),
        "tasks": ("caption", "vqa") if vqa else ("caption",),
        "generation": cfg.search_defaults(capacity),
    }
    if c.names:  # the concept head: the runtime routes existence questions and grounds captions by these
        sections["concepts"] = Concepts(names=tuple(c.names), words={n: tuple(w) for n, w in zip(c.names, c.words)},
                                        ban_below=c.ban_below, abstain_below=c.abstain_below)
        sections["novelty"] = Novelty(unfamiliar_above=c.unfamiliar_above)
    return sections


def _validate(engine, model_dir: str, images_bgr, beam_size: int) -> dict:
    from edgevlm.export.families.captioner_parity import captioner_parity

    return captioner_parity(engine, model_dir, images_bgr, beam_size)


def _write_tiny(out_dir: str) -> str:
    from edgevlm.export.families.captioner_tiny import write_tiny_captioner

    return write_tiny_captioner(out_dir)


CAPTIONER_EXPORT = ExportFamily(
    name=NAME,
    recognise=_recognise,
    load=load_model,
    graph_modules=GRAPH_MODULES,
    graph_specs=graph_specs,
    capacity=lambda model, tokenizer: model.cfg.decoder.max_len,
    sections=_sections,
    source_files={"checkpoint_sha256": WEIGHTS_FILE, "config_sha256": CONFIG_FILE},
    tokenizer_file=TOKENIZER_FILE,
    validate=_validate,
    write_tiny=_write_tiny,
    fix_graph={"cross_kv": _name_cross_kv_nodes},
)
