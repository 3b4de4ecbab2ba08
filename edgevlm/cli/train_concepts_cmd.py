"""``edgevlm train-concepts``: give a trained model its concept head (existence answers,
grounded captions, out-of-domain hedging), on frozen encoder features."""

from __future__ import annotations

import json
import os

import click

from edgevlm.data.object_lexicon import PRESENT_MIN


@click.command("train-concepts")
@click.argument("model_dir", type=click.Path())
@click.option("--data", required=True, type=click.Path(), help="Folder with captions_train.json, captions_dev.json and images/.")
@click.option("--out", required=True, type=click.Path(), help="New model folder (the input model plus the heads).")
@click.option("--epochs", type=click.IntRange(1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True)
@click.option("--unfamiliar-quantile", type=click.FloatRange(0.5, 1.0), default=0.98, show_default=True,
              help="Hedge captions above this quantile of the dev photos' novelty (1 - largest concept probability).")
@click.option("--ban-below", type=click.FloatRange(0.0, 1.0), default=0.6, show_default=True,
              help="A caption may not name a concept whose probability is below this.")
@click.option("--cache-dir", default=os.path.join("~", ".cache", "edgevlm", "features"), show_default=True,
              help="Where encoder features are cached (shared with edgevlm train).")
@click.option("--hidden", type=click.IntRange(0), default=256, show_default=True,
              help="Hidden width of the per-cell MLP (0: a linear probe per cell).")
@click.option("--sharpness", type=click.FloatRange(0, min_open=True), default=0.5, show_default=True,
              help="Log-sum-exp pooling over the grid: ~mean pooling near 0, ~max pooling when large.")
@click.option("--present-min", type=click.IntRange(1, 5), default=PRESENT_MIN, show_default=True,
              help="Training photos count as showing a category when this many of their captions name it "
                   f"(dev and `eval --pope` keep {PRESENT_MIN}: most captions).")
@click.option("--mirror-views", is_flag=True,
              help="Train each batch row on the photo's or, at random half the time, its mirror image's features "
                   "(cached once more). Dev is scored on both views either way, as questions are answered.")
@click.option("--hard-negatives", type=click.FloatRange(0.0, 100.0), default=0.0, show_default=True,
              help="Strength S: an absent photo's loss weighs 1 + S x how expected the category is there (POPE's "
                   "adversarial score, relative to its other absent photos), capped at 5, rescaled to mean 1 per "
                   "category; 0: every pair alike. The shipped head: 1 (MODEL_CARD.md).")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
def command(model_dir, data, out, epochs, lr, unfamiliar_quantile, ban_below, hidden, sharpness,
            present_min, mirror_views, hard_negatives, cache_dir, threads):
    """Train MODEL_DIR's concept head on the dataset's captions (the decoder is unchanged) and
    write the result to OUT; prints the dev report as JSON."""
    import torch

    from edgevlm.fileio import check_replaceable, check_writable
    from edgevlm.model_io import CONFIG_FILE
    from edgevlm.training.concept_training import train_concepts

    check_writable(out)  # before the training, not when the result is written
    check_replaceable(out, CONFIG_FILE, "a model folder")  # as save_model will, but before the training
    torch.set_num_threads(threads)
    report = train_concepts(model_dir, data, out, os.path.expanduser(cache_dir), epochs, lr, unfamiliar_quantile,
                            ban_below, hidden=hidden, sharpness=sharpness, present_min=present_min,
                            mirror_views=mirror_views, hard_negatives=hard_negatives)
    click.echo(json.dumps(report))
