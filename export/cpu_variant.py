"""``edgevlm add-variant ENGINE_DIR VARIANT_DIR``: carry an INT8 engine made for another CPU
inside an engine, so that the runtime runs it on that CPU (runtime/cpu_variants.py).

A variant is only worth carrying when it is the same model, made for other int8 kernels,
and judged on them. So before anything is written, both engines are verified (sha256s) and
the variant is refused when:
- either is not a ``--variant cpu`` INT8 engine (no ``quantization.target``);
- it was quantized from another checkpoint, or has another tokenizer or model shape (the
  runtime would answer with another model on another CPU);
- its gate did not pass, or was measured on a CPU with another int8 layout (the gate would
  have judged the wrong arithmetic: calibration/cpu_layouts.py);
- the top engine's CPU layout is the same (it already runs there), or it carries variants
  of its own;
- the top engine has something the variant lacks that changes what a user hears: a tuned
  "I'm not sure" threshold (``concepts.tuned_on``, ``vqa``) or a caption memory.

The variant's files (those its manifest lists, and the manifest) are copied into
``ENGINE_DIR/variants/<target>`` through a staging folder, then the top manifest lists it,
written atomically: an interruption leaves the engine as it was, or with an unlisted folder
that nothing reads.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import atomic_dir
from edgevlm.runtime.cpu_isa import same_layout
from edgevlm.runtime.manifest import (Manifest, check_engine_out, engine_file_names, is_engine_dir, load_manifest,
                                      update_manifest)


def variant_folder(target: str) -> str:
    """The folder, relative to the top engine, that holds the variant for ``target``."""
    return f"variants/{target}"


def _refuse_unless_cpu_engine(manifest: Manifest, role: str) -> str:
    if manifest.cpu_target is None:
        raise EdgeVLMError(f"{role} {manifest.root} is not an INT8 engine made for a CPU (no quantization.target); "
                           "make one with `edgevlm quantize FP32_ENGINE --variant cpu --target TARGET ...`")
    return manifest.cpu_target


def _refuse_other_model(top: Manifest, variant: Manifest) -> None:
    """Same checkpoint, tokenizer, model shape and tasks, or a one-line refusal naming what differs."""
    def checkpoint(m: Manifest):
        return (m.source or {}).get("checkpoint_sha256")

    differs = []
    if checkpoint(top) and checkpoint(variant) and checkpoint(top) != checkpoint(variant):
        differs.append("checkpoint (source.checkpoint_sha256)")
    if top.files["tokenizer"].sha256 != variant.files["tokenizer"].sha256:
        differs.append("tokenizer")
    if top.model != variant.model:
        differs.append("model shape (model)")
    if top.tasks != variant.tasks:
        differs.append(f"tasks ({list(variant.tasks)} vs {list(top.tasks)})")
    if differs:
        raise EdgeVLMError(f"{variant.root} is not the same model as {top.root}: its {', '.join(differs)} differ; "
                           "quantize the variant from the FP32 export of the same model folder")


def _refuse_ungated(variant: Manifest, target: str) -> dict:
    if variant.source.get("emulates"):
        raise EdgeVLMError(f"{variant.root} is an emulation of {variant.source['emulates']} (float arithmetic, for "
                           "measuring on another CPU); add the INT8 engine itself")
    gate = (variant.quantization or {}).get("gate")
    if not gate:
        raise EdgeVLMError(f"{variant.root} has no accuracy gate result; quantize it again with --eval DEV_CAPTIONS "
                           f"(on a CPU with {target}'s kernels, or on another, which gates its emulation)")
    if not gate.get("passed"):
        raise EdgeVLMError(f"{variant.root} failed its accuracy gate (CIDEr drop {gate.get('cider_drop_relative')} > "
                           f"{gate.get('max_cider_drop')}); only a variant that passed may be shipped")
    measured_on = gate.get("measured_on")
    if measured_on is None or not same_layout(measured_on, target):
        raise EdgeVLMError(f"{variant.root} is made for {target} but its gate was measured on "
                           f"{measured_on or 'an unrecorded CPU'}, whose int8 kernels compute other results; quantize it again with "
                           f"--target {target} (on another CPU the gate runs its emulation)")
    return gate


def _refuse_untuned(top: Manifest, variant: Manifest) -> None:
    """What the top engine tunes or remembers, the variant must too: else a user on the other
    CPU hears other abstentions or plainer captions than the engine promises."""
    missing = []
    if top.concepts is not None and top.concepts.tuned_on and (variant.concepts is None or not variant.concepts.tuned_on):
        missing.append(f"a tuned existence threshold (`edgevlm eval --pope POPE.json --engine {variant.root} "
                       "--tune-abstention`)")
    if top.vqa is not None and variant.vqa is None:
        missing.append(f"a tuned answer threshold (`edgevlm eval --vqa QA.json --engine {variant.root} "
                       "--tune-abstention`)")
    if top.caption_memory is not None and variant.caption_memory is None:
        missing.append(f"a caption memory (`edgevlm memory {variant.root} --data TRAIN_CAPTIONS`)")
    if missing:
        raise EdgeVLMError(f"{variant.root} lacks what {top.root} has: {'; '.join(missing)}")


def _listed_files(engine_dir: str) -> set[str]:
    """The files the engine at ``engine_dir`` lists (its manifest included), whether or not
    they are whole (paths the manifest parser confines to the folder); none where there is no
    engine there, or its manifest cannot be read."""
    if not is_engine_dir(engine_dir):
        return set()
    try:
        return set(engine_file_names(load_manifest(engine_dir, verify=False)))
    except EdgeVLMError:
        return set()


def add_variant(engine_dir: str, variant_dir: str) -> tuple[Manifest, str, dict]:
    """Copy the engine at VARIANT_DIR into ENGINE_DIR/variants/<its target> and list it in
    ENGINE_DIR's manifest -> (the top manifest, the variant's target, its gate report)."""
    top = load_manifest(engine_dir, verify=True)
    variant = load_manifest(variant_dir, verify=True)
    top_target = _refuse_unless_cpu_engine(top, "ENGINE_DIR")
    target = _refuse_unless_cpu_engine(variant, "VARIANT_DIR")
    if same_layout(top_target, target):
        raise EdgeVLMError(f"{engine_dir} is made for {top_target}, which has the same int8 layout as {target}: "
                           "it already runs there; a variant is for another CPU")
    if variant.cpu_variants:
        raise EdgeVLMError(f"{variant_dir} carries variants of its own; add the engines one by one")
    _refuse_other_model(top, variant)
    gate = _refuse_ungated(variant, target)
    _refuse_untuned(top, variant)

    folder = variant_folder(target)
    destination = os.path.join(top.root, folder)
    if os.path.realpath(variant.root) != os.path.realpath(destination):
        check_engine_out(destination)
        # atomic_dir keeps an older folder's files it does not write: those only the variant
        # being replaced listed (its caption memory, named by its content) would stay as dead weight
        stale = _listed_files(destination) - set(engine_file_names(variant))
        with atomic_dir(destination) as staging:
            for name in engine_file_names(variant):
                shutil.copyfile(os.path.join(variant.root, name), os.path.join(staging, name))
        load_manifest(destination, verify=True)  # the copy is whole before it is listed
        for name in stale:
            with contextlib.suppress(FileNotFoundError):  # gone already: nothing left behind
                os.remove(os.path.join(destination, name))

    def listed(manifest: Manifest) -> Manifest:
        quantization = dict(manifest.quantization or {})
        quantization["variants"] = dict(quantization.get("variants") or {}) | {target: folder}
        return manifest.replace(quantization=quantization)

    return update_manifest(engine_dir, listed, "the variant's listing"), target, gate
