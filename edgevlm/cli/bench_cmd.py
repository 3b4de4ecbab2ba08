"""``edgevlm bench``: per-caption latency of the runtime vs PyTorch eager, or engine vs engine."""

from __future__ import annotations

import json

import click

from edgevlm.paths import resolve_engine, sample_images_dir


def token_note(result: dict, peer: str) -> str:
    """Why the captions may differ: an INT8 engine against FP32 PyTorch is meant to (its gate
    measured by how much); an FP32 engine must not (validate proves its ids)."""
    if result["tokens_identical"]:
        return ""
    same = round(result["token_agreement"] * result["images"])
    why = ("; INT8 against FP32 PyTorch: `quantize --eval` gates the difference"
           if peer == "torch" and result.get("engine_precision") == "int8" else "")
    return f" ({same} of {result['images']} captions the same{why})"


@click.command("bench")
@click.option("--engine", "engine_dir", default=None, type=click.Path(), help="Engine to measure (default: shipped).")
@click.option("--vs-engine", "vs_engine_dir", default=None, type=click.Path(),
              help="Compare with this engine instead of PyTorch (speedup = its time / ENGINE's).")
@click.option("--spinning", "compare_spinning", is_flag=True,
              help="Also time the engine with onnxruntime's intra-op spinning on vs off (separate processes).")
@click.option("--model", "model_dir", default=None, type=click.Path(),
              help="PyTorch peer: the model folder the engine came from (default: a Hugging Face engine's "
                   "source folder, else the shipped model).")
@click.option("--images", "images", default=None, type=click.Path(), help="Image folder (default: shipped samples).")
@click.option("--rounds", type=click.IntRange(1), default=5, show_default=True)
@click.option("--beam", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--floor/--no-floor", "floor", default=True, show_default=True,
              help="Also count the graphs' ops and bytes, measure this machine's peaks and print our ratio "
                   "to the resulting floor (needs onnx and sympy: the calibrate extra).")
@click.option("--modes/--no-modes", "modes", default=True, show_default=True,
              help="Also time beam-3 captions and questions (an existence and a decoder question).")
@click.option("--json", "as_json", is_flag=True, help="Last line: one JSON object.")
def command(engine_dir, vs_engine_dir, compare_spinning, model_dir, images, rounds, beam, threads, floor, modes,
            as_json):
    """Measure per-caption latency side by side in one interleaved run, plus cold start and peak RSS,
    beam-3 and question timings, and the floor this machine puts under a caption."""
    from edgevlm.benchmark import bench
    from edgevlm.cli.bench_text import floor_lines, mode_lines
    from edgevlm.cli.model_inputs import expand_image_paths

    engine_dir = resolve_engine(engine_dir)
    paths = expand_image_paths((images or sample_images_dir(),))
    result = bench(engine_dir, paths, rounds, beam, threads, vs_engine_dir,
                   model_dir, compare_spinning, floor, modes)
    p50, p90 = result["runtime_ms_p50"], result["runtime_ms_p90"]
    peer = "vs_engine" if vs_engine_dir else "torch"
    peer_p50, peer_p90 = result[f"{peer}_ms_p50"], result[f"{peer}_ms_p90"]
    if not as_json:
        click.echo(f"runtime   p50 {p50:8.2f} ms  p90 {p90:8.2f} ms   graphs {result['runtime_graphs']}")
        click.echo(f"{peer:<9} p50 {peer_p50:8.2f} ms  p90 {peer_p90:8.2f} ms")
        click.echo(f"speedup ({peer} / runtime): {result['speedup']}x   tokens identical: {result['tokens_identical']}"
                   + token_note(result, peer))
        click.echo(f"runtime-only process: cold start {result['cold_start_s']} s (first start on this machine, "
                   f"optimizing its graphs: {result['first_start_s']} s), peak RSS {result['runtime_peak_rss_mb']} MB "
                   f"(at the end: own {result['runtime_anon_rss_mb']} MB, mapped files "
                   f"{result['runtime_file_rss_mb']} MB)")
        if compare_spinning:
            click.echo(f"intra-op spinning: off {result['spinning_off_ms_p50']} ms, on {result['spinning_on_ms_p50']} ms "
                       f"({result['spinning_cost']}x)")
        for line in mode_lines(result) + (floor_lines(result["floor"]) if floor else []):
            click.echo(line)
    click.echo(json.dumps(result))
