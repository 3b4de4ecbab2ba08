"""``edgevlm export``: a model folder -> an engine folder (the family's ONNX graphs, its
tokenizer, the manifest), written to a temp folder and renamed into place.

The model folder's family (export/families) supplies the graphs and manifest sections;
this module owns what every family shares: the ONNX export itself, file hashes, provenance.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings

import onnx
import torch

from edgevlm import __version__
from edgevlm.export.families import detect_family
from edgevlm.export.graphs import dummy_inputs
from edgevlm.fileio import atomic_dir, check_writable
from edgevlm.runtime.file_records import sha256_file
from edgevlm.runtime.manifest import SCHEMA_VERSION, FileEntry, GraphSpec, Manifest, check_engine_out

log = logging.getLogger(__name__)

OPSET = 17
TOKENIZER_NAME = "tokenizer.json"  # the engine's tokenizer file, whatever the model folder calls it


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


def _file_entry(folder: str, name: str) -> FileEntry:
    path = os.path.join(folder, name)
    return FileEntry(name, sha256_file(path), os.path.getsize(path))


@torch.no_grad()
def export_engine(model_dir: str, out_dir: str, opset: int = OPSET) -> Manifest:
    """Export MODEL_DIR to OUT_DIR; returns the manifest written. OUT_DIR appears complete or
    not at all (a staging folder beside it, removed on any error, Ctrl-C or SIGTERM); files
    in an older OUT_DIR that the export does not write (a README) are kept."""
    check_engine_out(out_dir, inputs=(model_dir,))
    check_writable(out_dir)  # before the model loads and the graphs export, not after
    family = detect_family(model_dir)
    model, parts = family.load(model_dir)  # parts: the tokenizer (ours) or the folder's tokenizer and configs (HF)
    capacity = family.capacity(model, parts)
    specs = family.graph_specs(model, capacity)
    with atomic_dir(out_dir) as tmp:
        files, graphs = {}, {}
        for name, module_cls in family.graph_modules.items():
            if name not in specs:  # an optional graph this model's specs leave out
                continue
            file_name = f"{name}.onnx"
            log.info("exporting %s", file_name)
            _export_graph(module_cls(model).eval(), specs[name], os.path.join(tmp, file_name), opset)
            if name in family.fix_graph:
                family.fix_graph[name](os.path.join(tmp, file_name))
            graphs[name] = GraphSpec(name, tuple(specs[name]["inputs"]), tuple(specs[name]["outputs"]))
            files[name] = _file_entry(tmp, file_name)
        if family.write_tokenizer is not None:
            family.write_tokenizer(parts, os.path.join(tmp, TOKENIZER_NAME))
        else:
            shutil.copyfile(os.path.join(model_dir, family.tokenizer_file), os.path.join(tmp, TOKENIZER_NAME))
        files["tokenizer"] = _file_entry(tmp, TOKENIZER_NAME)
        if family.write_files is not None:  # e.g. the rows a step graph takes as input (token_embeddings.py)
            files |= {key: _file_entry(tmp, name) for key, name in family.write_files(model, tmp).items()}
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            files=files,
            graphs=graphs,
            precision="fp32",
            **family.sections(model, parts, capacity),
            source={"model_dir": os.path.abspath(model_dir)}
            | {key: sha256_file(os.path.join(model_dir, name)) for key, name in family.source_files.items()
               if os.path.isfile(os.path.join(model_dir, name))},  # a sharded checkpoint has an index instead
            exporter={
                "edgevlm": __version__, "torch": torch.__version__, "onnx": onnx.__version__, "opset": opset,
                "onnxruntime_min": "1.17", "exporter": "torch.onnx (TorchScript)",
            },
        )
        manifest.save(tmp)
    return manifest
