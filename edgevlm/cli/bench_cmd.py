"""``edgevlm bench``: per-caption latency of the runtime vs PyTorch eager, or engine vs engine."""

from __future__ import annotations

import json
import os

import click

from edgevlm.paths import default_model_dir, sample_images_dir


def _engine_size_mb(engine) -> float:
    return round(sum(f["bytes"] for f in engine.manifest.data["files"].values()) / 1e6, 2)


@click.command("bench")
@click.option("--engine", "engine_dir", default=None, type=click.Path(), help="Engine to measure (default: shipped).")
@click.option("--vs-engine", "vs_engine_dir", default=None, type=click.Path(),
              help="Compare with this engine instead of PyTorch (speedup = its time / ENGINE's).")
@click.option("--spinning", "compare_spinning", is_flag=True,
              help="Also time the engine with onnxruntime's intra-op spinning on vs off (separate processes).")
@click.option("--model", "model_dir", default=None, type=click.Path(),
              help="PyTorch peer: the model folder the engine came from (default: the shipped model).")
@click.option("--images", "images", default=None, type=click.Path(), help="Image folder (default: shipped samples).")
@click.option("--rounds", type=click.IntRange(1), default=5, show_default=True)
@click.option("--beam", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Last line: one JSON object.")
def command(engine_dir, vs_engine_dir, compare_spinning, model_dir, images, rounds, beam, threads, as_json):
    """Measure per-caption latency side by side in one interleaved run, plus cold start and peak RSS."""
    from edgevlm.benchmark import (graph_timings, interleaved, percentiles_ms, runtime_peer, runtime_process_stats,
                                   spinning_comparison, torch_peer)
    from edgevlm.cli.caption_cmd import resolve_engine
    from edgevlm.cli.model_inputs import expand_image_paths
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.preprocess import read_image_bgr

    engine_dir = resolve_engine(engine_dir)
    paths = expand_image_paths((images or sample_images_dir(),))
    frames = [read_image_bgr(p) for p in paths]
    engine = CaptionEngine(engine_dir, threads=threads)
    peers = {"runtime": runtime_peer(engine, beam)}
    if vs_engine_dir:
        other = CaptionEngine(vs_engine_dir, threads=threads)
        peers["vs_engine"] = runtime_peer(other, beam)
    else:
        peers["torch"] = torch_peer(model_dir or default_model_dir(), beam, threads)
    timed = interleaved(peers, frames, rounds)
    pixels = engine.preprocess(frames[0])[None]
    result = {"engine": engine_dir, "images": len(frames), "rounds": rounds, "beam": beam, "threads": threads}
    p50, p90 = percentiles_ms(timed["runtime"][0])
    result.update(runtime_ms_p50=p50, runtime_ms_p90=p90, runtime_graphs=graph_timings(engine, pixels))
    result["mean_tokens"] = round(sum(len(i) + 1 for i in timed["runtime"][1]) / len(frames), 2)
    peer = "vs_engine" if vs_engine_dir else "torch"
    peer_p50, peer_p90 = percentiles_ms(timed[peer][0])
    result["tokens_identical"] = timed["runtime"][1] == timed[peer][1]
    result["token_agreement"] = round(sum(a == b for a, b in zip(timed["runtime"][1], timed[peer][1])) / len(frames), 4)
    if vs_engine_dir:
        result.update(vs_engine=vs_engine_dir, vs_engine_ms_p50=peer_p50, vs_engine_ms_p90=peer_p90,
                      vs_engine_graphs=graph_timings(other, pixels),
                      engine_mb=_engine_size_mb(engine), vs_engine_mb=_engine_size_mb(other),
                      size_ratio=round(_engine_size_mb(engine) / _engine_size_mb(other), 3))
    else:
        result.update(torch_ms_p50=peer_p50, torch_ms_p90=peer_p90)
    result["speedup"] = round(peer_p50 / p50, 2)
    result.update(runtime_process_stats(engine_dir, [os.path.abspath(p) for p in paths], threads, beam))
    if compare_spinning:
        result.update(spinning_comparison(engine_dir, [os.path.abspath(p) for p in paths], threads, beam))
    if not as_json:
        click.echo(f"runtime   p50 {p50:8.2f} ms  p90 {p90:8.2f} ms   graphs {result['runtime_graphs']}")
        click.echo(f"{peer:<9} p50 {peer_p50:8.2f} ms  p90 {peer_p90:8.2f} ms")
        click.echo(f"speedup ({peer} / runtime): {result['speedup']}x   tokens identical: {result['tokens_identical']}")
        click.echo(f"runtime-only process: cold start {result['cold_start_s']} s, peak RSS {result['runtime_peak_rss_mb']} MB")
        if compare_spinning:
            click.echo(f"intra-op spinning: off {result['spinning_off_ms_p50']} ms, on {result['spinning_on_ms_p50']} ms "
                       f"({result['spinning_cost']}x)")
    click.echo(json.dumps(result))
