"""``edgevlm export`` and ``edgevlm validate``: model folder -> ONNX engine, and parity."""

from __future__ import annotations

import json
import os

import click


@click.command("export")
@click.argument("model_dir", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Engine folder to write.")
@click.option("--opset", type=click.IntRange(17), default=17, show_default=True)
def export_command(model_dir, out_dir, opset):
    """Export MODEL_DIR to ONNX: vision.onnx, cross_kv.onnx, decoder.onnx, tokenizer.json, edgevlm.json."""
    from edgevlm.export.onnx_export import export_engine

    manifest = export_engine(model_dir, out_dir, opset)
    names = ", ".join(entry.path for entry in manifest.files.values())
    click.echo(f"wrote {out_dir}: {names} ({manifest.total_bytes / 1e6:.1f} MB)")


@click.command("validate")
@click.argument("engine_dir", type=click.Path())
@click.option("--against", "model_dir", required=True, type=click.Path(), help="The PyTorch model folder it came from.")
@click.option("--images", "images", default=None, type=click.Path(), help="Image folder (default: the shipped samples).")
@click.option("--limit", type=click.IntRange(1), default=16, show_default=True, help="Images to compare.")
@click.option("--beam", "beam_size", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Beam width of the search whose token ids must be identical (1: greedy).")
@click.option("--json", "as_json", is_flag=True)
def validate_command(engine_dir, model_dir, images, limit, beam_size, as_json):
    """Compare ENGINE_DIR with the PyTorch model it came from (ours or a Hugging Face folder): per-output
    errors and token ids. Exit 0 only on pass."""
    import torch

    from edgevlm.cli.model_inputs import expand_image_paths
    from edgevlm.export.validate import ATOL, RTOL, validate_engine
    from edgevlm.paths import sample_images_dir
    from edgevlm.runtime.preprocess import read_image_bgr

    torch.set_num_threads(2)
    paths = expand_image_paths((images or sample_images_dir(),))[:limit]
    report = validate_engine(engine_dir, model_dir, [read_image_bgr(p) for p in paths], beam_size)
    if as_json:
        click.echo(json.dumps({"passed": report["passed"], "tokens_identical": report["tokens_identical"], "images": len(paths),
                               "beam_size": beam_size,
                               "outputs": [vars(c) for c in report["outputs"]]}))
    else:
        click.echo(f"{engine_dir} vs {model_dir} on {len(paths)} images (pass: max_abs <= {ATOL} + {RTOL} * max|ref|)")
        for c in report["outputs"]:
            click.echo(f"  {'ok  ' if c.passed else 'FAIL'} {c.name:<24} max_abs {c.max_abs:.2e}  max_rel {c.max_rel:.2e}")
        search = "greedy" if beam_size == 1 else f"beam {beam_size}"
        click.echo(f"  {'ok  ' if report['tokens_identical'] else 'FAIL'} {search} token ids identical")
        for path, (ours, theirs) in zip(paths, report["captions"]):
            mark = "" if ours == theirs else f"   (reference: {theirs})"
            click.echo(f"  {os.path.basename(path)}: {ours}{mark}")
        for question, ours, theirs in report.get("answers", []):
            mark = "" if ours == theirs else f"   (reference: {theirs})"
            click.echo(f"  Q: {question} A: {ours}{mark}")
        click.echo("PASS" if report["passed"] else "FAIL")
    raise SystemExit(0 if report["passed"] else 1)
