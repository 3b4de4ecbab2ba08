"""``edgevlm quantize``: FP32 engine -> INT8 (QDQ) engine, with the accuracy gate built in."""

from __future__ import annotations

import json
import os

import click


@click.command("quantize")
@click.argument("engine_dir", type=click.Path())
@click.option("--calib", "calib_source", required=True, type=click.Path(),
              help="Calibration data: an image folder, a COCO caption file or a video.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="INT8 engine folder to write.")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True)
@click.option("--variant", type=click.Choice(["qdq", "cpu"]), default="qdq", show_default=True,
              help="qdq: static symmetric QDQ for TensorRT; cpu: the faster layout for onnxruntime on CPU.")
@click.option("--target", default=None, metavar="auto|avx2|avx512-vnni|amx|arm-dotprod",
              help="--variant cpu: the CPU the engine is for (its int8 layout); auto (default): this CPU.")
@click.option("--exclude", "patterns", multiple=True, help="Keep nodes matching this glob in float (repeatable).")
@click.option("--auto-exclude", is_flag=True, help="Return the most damaging nodes to float until the gate passes.")
@click.option("--eval", "eval_path", type=click.Path(), default=None,
              help="COCO captions (e.g. the dev split) for the accuracy gate; never used for calibration.")
@click.option("--eval-limit", type=click.IntRange(1), default=None, help="Gate on the first N images only.")
@click.option("--max-cider-drop", type=click.FloatRange(0, 1), default=0.02, show_default=True,
              help="Largest relative CIDEr drop the gate accepts.")
@click.option("--calib-limit", type=click.IntRange(1), default=200, show_default=True, help="Calibration images.")
@click.option("--json", "as_json", is_flag=True, help="Print the gate report as one JSON object.")
def command(engine_dir, calib_source, out_dir, method, variant, target, patterns, auto_exclude, eval_path, eval_limit, max_cider_drop,
            calib_limit, as_json):
    """Quantize ENGINE_DIR's vision, cross-K/V and decoder graphs to static INT8."""
    from edgevlm.calibration.cpu_layouts import resolve_target
    from edgevlm.calibration.gate import format_report
    from edgevlm.calibration.gated_quantize import held_out_names, load_eval_set, quantize_gated
    from edgevlm.calibration.quantize import check_output, check_target_variant
    from edgevlm.calibration.sources import load_calibration_set
    from edgevlm.errors import EdgeVLMError

    check_target_variant(variant, target)
    # A plain string, not click.Choice: an unknown target is refused in one line like every error.
    target = resolve_target(target) if variant == "cpu" else None
    check_output(out_dir, engine_dir)  # before any image is read
    if auto_exclude and not eval_path:
        raise EdgeVLMError("--auto-exclude needs --eval CAPTIONS.json: the gate decides when to stop")
    eval_set = load_eval_set(eval_path, eval_limit) if eval_path else None
    calib = load_calibration_set(calib_source, calib_limit, exclude=held_out_names(eval_set))
    click.echo(f"calibrating on {len(calib.images)} images from {calib_source}"
               + (f" for CPU target {target}" if target else ""), err=True)
    report = quantize_gated(engine_dir, calib, out_dir, method, variant, list(patterns), eval_set, max_cider_drop,
                            auto_exclude, {"calibration_source": os.path.abspath(calib_source)},
                            say=lambda line: click.echo(line, err=True), target=target)
    if _has_caption_memory(engine_dir):
        click.echo(f"the caption memory of {engine_dir} was not copied (its keys are FP32 embeddings); rebuild it: "
                   f"edgevlm memory {out_dir} --data CAPTIONS.json", err=True)
    if report is None:
        click.echo(f"wrote {out_dir} (not gated: pass --eval CAPTIONS.json to check accuracy)", err=True)
        return
    click.echo(json.dumps(report) if as_json else format_report(report))
    if report["auto_excluded"]:
        click.echo("returned to float: " + ", ".join(item["node"] for item in report["auto_excluded"]), err=True)
    if not report["passed"]:
        raise SystemExit(1)


def _has_caption_memory(engine_dir: str) -> bool:
    from edgevlm.runtime.manifest import load_manifest

    return load_manifest(engine_dir, verify=False).caption_memory is not None
