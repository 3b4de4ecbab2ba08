"""``edgevlm quantize``: FP32 engine -> INT8 (QDQ) engine, with the accuracy gate built in."""

from __future__ import annotations

import json
import os

import click


def _load_eval_set(path: str, limit: int | None):
    from edgevlm.calibration.gate import EvalSet
    from edgevlm.data.coco import load_coco_captions
    from edgevlm.runtime.preprocess import read_image_bgr

    items = [i for i in load_coco_captions(path) if i.captions][:limit]
    if not items:
        from edgevlm.errors import EdgeVLMError

        raise EdgeVLMError(f"--eval {path} has no captioned images to gate on")
    return EvalSet([read_image_bgr(i.path) for i in items], [list(i.captions) for i in items], [i.path for i in items])


@click.command("quantize")
@click.argument("engine_dir", type=click.Path())
@click.option("--calib", "calib_source", required=True, type=click.Path(),
              help="Calibration data: an image folder, a COCO caption file or a video.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="INT8 engine folder to write.")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True)
@click.option("--variant", type=click.Choice(["qdq", "cpu"]), default="qdq", show_default=True,
              help="qdq: static symmetric QDQ for TensorRT; cpu: the faster layout for onnxruntime on CPU.")
@click.option("--exclude", "patterns", multiple=True, help="Keep nodes matching this glob in float (repeatable).")
@click.option("--auto-exclude", is_flag=True, help="Return the most damaging nodes to float until the gate passes.")
@click.option("--eval", "eval_path", type=click.Path(), default=None,
              help="COCO captions (e.g. the dev split) for the accuracy gate; never used for calibration.")
@click.option("--eval-limit", type=click.IntRange(1), default=None, help="Gate on the first N images only.")
@click.option("--max-cider-drop", type=click.FloatRange(0, 1), default=0.02, show_default=True,
              help="Largest relative CIDEr drop the gate accepts.")
@click.option("--calib-limit", type=click.IntRange(1), default=200, show_default=True, help="Calibration images.")
@click.option("--json", "as_json", is_flag=True, help="Print the gate report as one JSON object.")
def command(engine_dir, calib_source, out_dir, method, variant, patterns, auto_exclude, eval_path, eval_limit, max_cider_drop,
            calib_limit, as_json):
    """Quantize ENGINE_DIR's vision, cross-K/V and decoder graphs to static INT8."""
    from edgevlm.calibration.gate import compare_engines, format_report
    from edgevlm.calibration.quantize import GRAPHS, match_nodes, quantize_engine
    from edgevlm.calibration.sensitivity import node_sensitivity
    from edgevlm.calibration.sources import load_calibration_set
    from edgevlm.errors import EdgeVLMError
    from edgevlm.fileio import write_json
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.manifest import MANIFEST_FILE

    if auto_exclude and not eval_path:
        raise EdgeVLMError("--auto-exclude needs --eval CAPTIONS.json: the gate decides when to stop")
    if auto_exclude and variant != "qdq":
        raise EdgeVLMError("--auto-exclude ranks nodes of the static QDQ variant; use it with --variant qdq")
    eval_set = _load_eval_set(eval_path, eval_limit) if eval_path else None
    held_out = {os.path.abspath(n) for n in eval_set.names} if eval_set else None
    calib = load_calibration_set(calib_source, calib_limit, exclude=held_out)
    click.echo(f"calibrating on {len(calib.images)} images from {calib_source}", err=True)
    fp32 = CaptionEngine(engine_dir, threads=2)
    exclude = {g: match_nodes(fp32.manifest.path(g), list(patterns)) for g in GRAPHS}
    extra = {"calibration_source": os.path.abspath(calib_source), "patterns_excluded": list(patterns)}
    quantize_engine(engine_dir, calib, out_dir, method, exclude, extra_manifest=extra, variant=variant)
    if eval_set is None:
        click.echo(f"wrote {out_dir} (not gated: pass --eval CAPTIONS.json to check accuracy)", err=True)
        return
    fp32_cache: dict = {}
    report = compare_engines(fp32, CaptionEngine(out_dir, threads=2), eval_set, max_cider_drop, fp32_cache)
    auto = []
    if not report["passed"] and auto_exclude:
        click.echo(format_report(report) + "\nrunning sensitivity analysis...", err=True)
        ranked = [(g, node, damage) for g in GRAPHS for node, damage in node_sensitivity(fp32, g, calib, method,
                  os.path.expanduser(os.path.join("~", ".cache", "edgevlm", "calibration")))]
        ranked.sort(key=lambda item: -item[2])
        count = 1
        while not report["passed"] and count <= len(ranked):
            auto = ranked[:count]
            for g, node, _ in auto:
                if node not in exclude[g]:
                    exclude[g].append(node)
            quantize_engine(engine_dir, calib, out_dir, method, exclude,
                            extra_manifest=extra | {"auto_excluded": [n for _, n, _ in auto]})
            report = compare_engines(fp32, CaptionEngine(out_dir, threads=2), eval_set, max_cider_drop, fp32_cache)
            click.echo(f"  {count} node(s) in float: CIDEr drop {report['cider_drop_relative']:+.2%}", err=True)
            count *= 2
    report["auto_excluded"] = [{"graph": g, "node": n, "damage": round(d, 5)} for g, n, d in auto]
    manifest_path = os.path.join(out_dir, MANIFEST_FILE)
    manifest = json.load(open(manifest_path, encoding="utf-8"))
    manifest["quantization"]["gate"] = report
    write_json(manifest_path, manifest)
    click.echo(json.dumps(report) if as_json else format_report(report))
    if auto:
        click.echo("returned to float: " + ", ".join(n for _, n, _ in auto), err=True)
    if not report["passed"]:
        raise SystemExit(1)
