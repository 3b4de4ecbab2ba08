"""``edgevlm caption``: captions of photos, folders, videos, cameras and streams.

Runs on the torch-free runtime (the shipped engine by default). ``--model DIR`` captions
image files with a PyTorch model folder instead (needs the training extras).
"""

from __future__ import annotations

import json

import click

from edgevlm.cli.options import engine_option, provider_option, threads_option
from edgevlm.paths import resolve_engine


def _caption_with_model(sources, model_dir, beam, as_json):
    import torch

    from edgevlm.cli.model_inputs import expand_image_paths
    from edgevlm.generate import caption_files
    from edgevlm.model_io import load_model
    from edgevlm.runtime.preprocess import read_image_bgr

    torch.set_num_threads(2)
    paths = expand_image_paths(sources)
    for path in paths:  # fail on a bad file before printing anything
        read_image_bgr(path)
    model, tokenizer = load_model(model_dir)
    for path, caption in zip(paths, caption_files(model, tokenizer, paths, beam)):
        click.echo(json.dumps({"image": path, "caption": caption}) if as_json else f"{path}: {caption}")


@click.command("caption")
@click.argument("sources", nargs=-1, required=True)
@engine_option
@click.option("--model", "model_dir", default=None, type=click.Path(),
              help="Caption image files with a PyTorch model folder instead of an engine.")
@provider_option
@click.option("--beam", type=click.IntRange(1, 16), default=None, help="Beam size (default: the engine's).")
@click.option("--every", type=click.FloatRange(min=0.0, min_open=True), default=2.0, show_default=True,
              help="For videos and cameras: one caption per this many seconds of stream time.")
@threads_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def command(sources, engine_dir, model_dir, provider, beam, every, threads, as_json):
    """Caption SOURCES: image files, folders, video files, camera indexes or /dev/videoN,
    rtsp:// or http:// URLs, GStreamer pipelines (ending in appsink)."""
    if model_dir:
        return _caption_with_model(sources, model_dir, beam, as_json)
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.sources import FrameSource, source_kind

    for spec in sources:  # a missing file fails before any output
        source_kind(spec)
    engine = CaptionEngine(resolve_engine(engine_dir), provider, threads)
    for spec in sources:
        with FrameSource(spec) as source:
            stream = source.kind in ("video", "camera", "url", "gstreamer")
            for frame in source.frames(every if stream else None):
                caption = engine.caption_images([frame.image], beam)[0]
                if as_json:
                    record = {"image": frame.label, "caption": caption}
                    if stream:
                        record.update(source=spec, t=round(frame.t, 3), frame=frame.index)
                    click.echo(json.dumps(record))
                else:
                    click.echo(f"{spec} [{frame.t:7.2f}s]: {caption}" if stream else f"{frame.label}: {caption}")

