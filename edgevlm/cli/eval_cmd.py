"""``edgevlm eval``: caption metrics of a model on a COCO-format caption file."""

from __future__ import annotations

import json
import time

import click

from edgevlm.paths import default_model_dir

METRIC_ORDER = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "mean_length", "distinct_words", "images")


@click.command("eval")
@click.option("--model", "model_dir", default=None, type=click.Path(), help="Model folder (default: the shipped model).")
@click.option("--data", required=True, type=click.Path(), help="COCO caption file, images/ beside it.")
@click.option("--images", "images_dir", default=None, type=click.Path(), help="Images folder, if not beside --data.")
@click.option("--beam", type=click.IntRange(1, 16), default=None, help="Beam size (default: the model's).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Score only the first N images.")
@click.option("--no-meteor", is_flag=True, help="Skip METEOR (slow; needs Java).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def command(model_dir, data, images_dir, beam, limit, no_meteor, as_json):
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of generated captions against human ones."""
    import torch

    from edgevlm.cli.model_inputs import caption_files
    from edgevlm.data.coco import load_coco_captions
    from edgevlm.evaluation.caption_metrics import java_available, score_captions
    from edgevlm.model_io import load_model

    torch.set_num_threads(2)
    items = [i for i in load_coco_captions(data, images_dir) if i.captions][:limit]
    model, tokenizer = load_model(model_dir or default_model_dir())
    started = time.time()
    captions = caption_files(model, tokenizer, [i.path for i in items], beam, progress=not as_json)
    if not no_meteor and not java_available():
        click.echo("note: METEOR skipped: Java is not installed (apt-get install default-jre-headless)", err=True)
    scores = score_captions({i: list(it.captions) for i, it in enumerate(items)},
                            dict(enumerate(captions)), meteor=not no_meteor)
    scores.update(beam=beam or model.cfg.generation.beam_size, seconds=round(time.time() - started, 1))
    if as_json:
        click.echo(json.dumps(scores))
        return
    for key in METRIC_ORDER + ("beam", "seconds"):
        if key in scores:
            value = scores[key]
            click.echo(f"{key:>15}: {value:.4f}" if isinstance(value, float) else f"{key:>15}: {value}")
