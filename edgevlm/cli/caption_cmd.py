"""``edgevlm caption``: captions of photos, folders, videos, cameras and streams.

Runs on the torch-free runtime (the shipped engine by default). ``--model DIR`` captions
image files with a PyTorch model folder instead (needs the training extras).

A batch keeps going: a file that cannot be captioned (empty, corrupt, too many pixels) or a
source that fails is an ``error:`` line on stderr (with ``--json``, also ``{"image": ...,
"error": ...}`` on stdout in its place), the rest are captioned, and the exit code is 1 at
the end if anything failed. A source that does not exist fails before any output.
"""

from __future__ import annotations

import json

import click

from edgevlm.cli.options import backend_option, engine_option, provider_option, rebuild_option, threads_option
from edgevlm.errors import EdgeVLMError
from edgevlm.paths import resolve_engine

class _Outcomes:
    """Prints each item's caption or error in order, and counts the failures."""

    def __init__(self, as_json: bool):
        self.as_json, self.failed = as_json, 0

    def caption(self, label: str, caption: str, text_line: str | None = None, **stream) -> None:
        if self.as_json:
            click.echo(json.dumps({"image": label, "caption": caption} | stream))
        else:
            click.echo(text_line or f"{label}: {caption}")

    def error(self, label: str, exc: EdgeVLMError, **stream) -> None:
        self.failed += 1
        click.echo(f"error: {exc}", err=True)
        if self.as_json:
            click.echo(json.dumps({"image": label} | stream | {"error": str(exc)}))

    def exit(self) -> None:
        if self.failed:
            raise SystemExit(1)


def _caption_with_model(sources, model_dir, beam, out: _Outcomes) -> None:
    """Image files (folders expanded) with a PyTorch model folder, batch by batch; a bad file
    is reported and its batch-mates still captioned."""
    import torch

    from edgevlm.cli.model_inputs import expand_image_paths
    from edgevlm.generate import iter_file_captions
    from edgevlm.model_io import load_model

    torch.set_num_threads(2)
    paths = expand_image_paths(sources)
    model, tokenizer = load_model(model_dir)
    for path, result in iter_file_captions(model, tokenizer, paths, beam, keep_going=True):
        if isinstance(result, EdgeVLMError):
            out.error(path, result)
        else:
            out.caption(path, result)


def _caption_source(engine, spec: str, beam, every: float, out: _Outcomes) -> None:
    """One SOURCE on the engine: image files one by one (a bad file is reported, the folder
    goes on); a stream until it ends (a failure reports the source and ends it)."""
    from edgevlm.runtime.preprocess import read_image_bgr
    from edgevlm.runtime.sources import FrameSource, images_in, source_kind

    kind = source_kind(spec)
    if kind in ("image", "images"):
        try:
            paths = [spec] if kind == "image" else images_in(spec)
        except EdgeVLMError as exc:  # a folder without images
            return out.error(spec, exc)
        for path in paths:
            try:
                caption = engine.caption_images([read_image_bgr(path)], beam)[0]
            except EdgeVLMError as exc:
                out.error(path, exc)
                continue
            out.caption(path, caption)
        return
    try:
        with FrameSource(spec) as source:
            for frame in source.frames(every):
                caption = engine.caption_images([frame.image], beam)[0]
                out.caption(frame.label, caption, f"{spec} [{frame.t:7.2f}s]: {caption}",
                            source=spec, t=round(frame.t, 3), frame=frame.index)
    except EdgeVLMError as exc:
        out.error(spec, exc, source=spec)


@click.command("caption")
@click.argument("sources", nargs=-1, required=True)
@engine_option
@click.option("--model", "model_dir", default=None, type=click.Path(),
              help="Caption image files with a PyTorch model folder instead of an engine.")
@provider_option
@backend_option
@rebuild_option
@click.option("--beam", type=click.IntRange(1, 16), default=None, help="Beam size (default: the engine's).")
@click.option("--every", type=click.FloatRange(min=0.0, min_open=True), default=2.0, show_default=True,
              help="For videos and cameras: one caption per this many seconds of stream time.")
@threads_option
@click.option("--no-memory", is_flag=True, help="Plain beam search, not re-ranked by the engine's caption memory.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def command(sources, engine_dir, model_dir, provider, backend, rebuild, beam, every, threads, no_memory, as_json):
    """Caption SOURCES: image files, folders, video files, camera indexes or /dev/videoN,
    rtsp:// or http:// URLs, GStreamer pipelines (ending in appsink). A file or source that
    fails is reported on stderr and the others go on; the exit code is then 1."""
    from edgevlm.runtime.preprocess import max_image_pixels

    max_image_pixels()  # a bad EDGEVLM_MAX_IMAGE_PIXELS fails once, before any output
    out = _Outcomes(as_json)
    if model_dir:
        _caption_with_model(sources, model_dir, beam, out)
        return out.exit()
    from edgevlm.runtime.backends import configured_backend
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.sources import source_kind

    for spec in sources:  # a missing file fails before any output
        source_kind(spec)
    engine = CaptionEngine(resolve_engine(engine_dir), provider, threads, backend=configured_backend(backend, rebuild),
                           use_memory=not no_memory)
    engine.check_captions()  # a question-only engine (BLIP VQA) fails once, not once per image
    for spec in sources:
        _caption_source(engine, spec, beam, every, out)
    out.exit()
