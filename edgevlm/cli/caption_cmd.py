"""``edgevlm caption``: caption photos with a model folder (PyTorch)."""

from __future__ import annotations

import json

import click

from edgevlm.paths import default_model_dir


@click.command("caption")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--model", "model_dir", default=None, type=click.Path(), help="Model folder (default: the shipped model).")
@click.option("--beam", type=click.IntRange(1, 16), default=None, help="Beam size (default: the model's).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: image, caption.")
def command(images, model_dir, beam, as_json):
    """Caption IMAGES (files or folders): one line per image."""
    import torch

    from edgevlm.cli.model_inputs import caption_files, expand_image_paths
    from edgevlm.model_io import load_model
    from edgevlm.runtime.preprocess import read_image_bgr

    torch.set_num_threads(2)
    paths = expand_image_paths(images)
    for path in paths:  # fail on a bad file before printing anything
        read_image_bgr(path)
    model, tokenizer = load_model(model_dir or default_model_dir())
    for path, caption in zip(paths, caption_files(model, tokenizer, paths, beam)):
        click.echo(json.dumps({"image": path, "caption": caption}) if as_json else f"{path}: {caption}")
