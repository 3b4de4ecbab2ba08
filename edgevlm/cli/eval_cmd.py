"""``edgevlm eval``: caption metrics of a model on a COCO-format caption file, or VQA
accuracy (``--vqa``) of an engine or model on a question file."""

from __future__ import annotations

import json
import time

import click

from edgevlm.errors import EdgeVLMError
from edgevlm.paths import default_model_dir

MIN_TUNING_QUESTIONS = 100  # fewer, and one lucky or unlucky answer moves the threshold
METRIC_ORDER = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "mean_length", "distinct_words", "images")


@click.command("eval")
@click.option("--model", "model_dir", default=None, type=click.Path(), help="Model folder (default: the shipped model).")
@click.option("--data", default=None, type=click.Path(), help="COCO caption file, images/ beside it.")
@click.option("--vqa", "vqa_file", default=None, type=click.Path(),
              help="VQA question file (python -m edgevlm.data.vqa_questions): exact-match accuracy instead of captions.")
@click.option("--engine", "engine_dir", default=None, type=click.Path(),
              help="With --vqa: engine folder (default: the shipped engine; --model evaluates a PyTorch folder instead).")
@click.option("--tune-abstention", is_flag=True,
              help="With --vqa and an engine: choose the \"I'm not sure\" threshold on this file and write it to the engine.")
@click.option("--images", "images_dir", default=None, type=click.Path(), help="Images folder, if not beside --data / --vqa.")
@click.option("--beam", type=click.IntRange(1, 16), default=None, help="Beam size (default: the model's).")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Score only the first N images (with --vqa: the first N questions).")
@click.option("--no-meteor", is_flag=True, help="Skip METEOR (slow; needs Java).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def command(model_dir, data, vqa_file, engine_dir, tune_abstention, images_dir, beam, limit, no_meteor, as_json):
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of generated captions against human ones; with
    --vqa, VQA exact-match accuracy overall and per type, balanced yes/no accuracy and the
    abstention rate."""
    if bool(data) == bool(vqa_file):
        raise EdgeVLMError("give --data CAPTIONS.json (caption metrics) or --vqa QUESTIONS.json (VQA accuracy)")
    if vqa_file:
        return _eval_vqa(vqa_file, model_dir, engine_dir, tune_abstention, images_dir, limit, as_json)
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


def _eval_vqa(vqa_file, model_dir, engine_dir, tune_abstention, images_dir, limit, as_json):
    from edgevlm.evaluation.vqa_eval import engine_answers, load_qa, model_answers, vqa_report, write_threshold
    from edgevlm.evaluation.vqa_metrics import choose_threshold
    from edgevlm.runtime.engine import DEFAULT_ABSTAIN_BELOW

    if model_dir and engine_dir:
        raise EdgeVLMError("--vqa evaluates either --engine DIR or --model DIR, not both")
    if tune_abstention and not engine_dir:
        raise EdgeVLMError("--tune-abstention writes the threshold into an engine: name it with --engine DIR "
                           "(the shipped engine is not changed in place)")
    entries = load_qa(vqa_file, images_dir)[:limit]
    started = time.time()
    if model_dir:
        answers, threshold, source = model_answers(model_dir, entries), None, model_dir
    else:
        from edgevlm.cli.caption_cmd import resolve_engine
        from edgevlm.runtime.engine import CaptionEngine

        source = resolve_engine(engine_dir)
        engine = CaptionEngine(source)
        answers, threshold = engine_answers(engine, entries, progress=not as_json), engine.abstain_below
    if tune_abstention:
        if len(entries) < MIN_TUNING_QUESTIONS:
            raise EdgeVLMError(f"--tune-abstention needs at least {MIN_TUNING_QUESTIONS} questions to choose a "
                               f"threshold; {vqa_file} gives {len(entries)}")
        threshold = choose_threshold(entries, answers)
        write_threshold(source, threshold, vqa_file, len(entries))
    report = vqa_report(entries, answers, DEFAULT_ABSTAIN_BELOW if threshold is None else threshold)
    report.update(source=source, seconds=round(time.time() - started, 1))
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"{'questions':>24}: {report['questions']}")
    click.echo(f"{'accuracy':>24}: {report['accuracy']:.4f}")
    for kind, value in report["by_type"].items():
        click.echo(f"{kind + ' accuracy':>24}: {value:.4f}  ({report['count_by_type'][kind]} questions)")
    click.echo(f"{'yes/no balanced accuracy':>24}: {report['yesno_balanced_accuracy']:.4f}")
    a = report["with_abstention"]
    click.echo(f"{'abstention rate':>24}: {report['abstention_rate']:.4f}  (below p={a['threshold']:.3f}"
               f"{', tuned here and written to the engine' if tune_abstention else ''})")
    click.echo(f"{'answered accuracy':>24}: {a['answered_accuracy']:.4f}  (coverage {a['coverage']:.4f})")
    click.echo(f"{'seconds':>24}: {report['seconds']}")
