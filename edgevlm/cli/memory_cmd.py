"""``edgevlm memory ENGINE_DIR --data CAPTIONS.json``: a caption memory for consensus
re-ranking, written into the engine (the work: export/caption_memory.py)."""

from __future__ import annotations

import click

from edgevlm.cli.options import threads_option
from edgevlm.export.caption_memory import DEFAULTS


@click.command("memory")
@click.argument("engine_dir", type=click.Path())
@click.option("--data", "captions_path", required=True, type=click.Path(),
              help="COCO captions of the photos to remember (e.g. the training split).")
@click.option("--images", "images_dir", type=click.Path(), default=None,
              help="Their images folder (default: 'images' beside the captions file).")
@click.option("--neighbours", type=click.IntRange(1), default=DEFAULTS["neighbours"], show_default=True,
              help="Most similar photos whose captions vote.")
@click.option("--beam", "beam_size", type=click.IntRange(2, 16), default=DEFAULTS["beam_size"], show_default=True,
              help="The engine's default beam while the memory is used: the candidates re-ranked.")
@click.option("--logprob-weight", type=click.FloatRange(0), default=DEFAULTS["logprob_weight"], show_default=True,
              help="Weight of a candidate's own length-normalised log-probability beside its consensus.")
@click.option("--dims", type=click.IntRange(1), default=DEFAULTS["dims"], show_default=True,
              help="Embedding size kept (whitened PCA of the pooled embedding).")
@threads_option
def command(engine_dir, captions_path, images_dir, neighbours, beam_size, logprob_weight, dims, threads):
    """Embed the captioned photos with ENGINE_DIR's vision graph and store them with their
    captions in the engine: from then on a beam caption is the candidate that agrees most
    with what people said about the most similar photos (greedy captions are unchanged)."""
    from edgevlm.export.caption_memory import build_caption_memory

    manifest = build_caption_memory(engine_dir, captions_path, images_dir, neighbours=neighbours, beam_size=beam_size,
                                    logprob_weight=logprob_weight, dims=dims, threads=threads,
                                    say=lambda line: click.echo(line, err=True))
    memory = manifest.caption_memory
    click.echo(f"wrote {manifest.files['caption_memory'].path} into {engine_dir}: {memory.images} photos, "
               f"{memory.captions} captions, {memory.dims} dims; default beam {memory.beam_size}, "
               f"{memory.neighbours} neighbours vote")
