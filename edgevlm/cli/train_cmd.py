"""``edgevlm train``: train the captioner on a COCO-format dataset (train + dev splits)."""

from __future__ import annotations

import dataclasses
import json
import os

import click

from edgevlm.cli.options import dataclass_options, pick
from edgevlm.config import DecoderConfig, ModelConfig, VisionConfig
from edgevlm.training.settings import TrainSettings


@click.command("train")
@click.option("--data", required=True, type=click.Path(),
              help="Folder with captions_train.json, captions_dev.json and images/.")
@click.option("--out", required=True, type=click.Path(), help="Run folder: checkpoint.pt, history.json, best/.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--init-from", type=click.Path(), default=None,
              help="Start from this model folder (its config and tokenizer), e.g. to fine-tune encoder blocks.")
@click.option("--fresh-decoder", is_flag=True,
              help="With --init-from: keep its encoder (and concept head), train a new projector and decoder.")
@click.option("--cache-dir", default=os.path.join("~", ".cache", "edgevlm", "features"), show_default=True,
              help="Where encoder features are cached (reused while images and config are unchanged).")
@click.option("--vision-feature", type=click.Choice(["head", "block15", "block10"]), default=None,
              help="Encoder tap used as visual tokens (default head: 1280 x 7x7).")
@dataclass_options(DecoderConfig, prefix="decoder-", skip=("vocab_size",))
@dataclass_options(TrainSettings)
def command(data, out, resume, init_from, fresh_decoder, cache_dir, vision_feature, **kwargs):
    """Train a captioning model; the best epoch by dev CIDEr is written to OUT/best."""
    from edgevlm.fileio import check_writable
    from edgevlm.training.trainer import Trainer, checkpoint_state

    check_writable(out, inside=True)  # before hours of work, not at the first checkpoint
    state = checkpoint_state(out) if resume else None  # a bad checkpoint fails before the features are cached
    cfg = ModelConfig(decoder=DecoderConfig(**pick(DecoderConfig, kwargs, "decoder_")))
    if vision_feature:
        cfg = dataclasses.replace(cfg, vision=VisionConfig(feature=vision_feature))
    settings = TrainSettings(**pick(TrainSettings, kwargs))
    trainer = Trainer(data, out, cfg, settings, os.path.expanduser(cache_dir), init_from,
                      dropout=kwargs.get("decoder_dropout"), fresh_decoder=fresh_decoder)
    if resume:
        trainer.resume(state)
    click.echo(json.dumps(trainer.run()))
