"""``edgevlm eval``: caption metrics, hallucination and self-consistency of a model or
engine on a COCO-format caption file, VQA accuracy (``--vqa``) of an engine or model on a
question file beside a prior-only baseline, object-existence scores (``--pope``) on a
POPE-style set, or an engine's behaviour on out-of-domain images (``--ood``).

This module checks the options and runs the evaluation; ``edgevlm.cli.eval_report_text``
turns each report into the text printed without ``--json``."""

from __future__ import annotations

import json
import math
import time

import click
from click.core import ParameterSource

from edgevlm.cli.eval_report_text import caption_text, ood_text, pope_text, vqa_text
from edgevlm.errors import EdgeVLMError
from edgevlm.metrics.vqa_metrics import DEFAULT_WRONG_COST, abstention_rule
from edgevlm.paths import default_model_dir, resolve_engine

MIN_TUNING_QUESTIONS = 100  # fewer, and one lucky or unlucky answer moves the threshold
EMULATED = "edgevlm.eval.emulated"  # click context meta: engine folder -> its emulated copy for this run


@click.command("eval")
@click.option("--model", "model_dir", default=None, type=click.Path(), help="Model folder (default: the shipped model).")
@click.option("--data", default=None, type=click.Path(), help="COCO caption file, images/ beside it.")
@click.option("--vqa", "vqa_file", default=None, type=click.Path(),
              help="VQA question file (python -m edgevlm.scripts.vqa_questions): exact-match accuracy instead of captions.")
@click.option("--pope", "pope_file", default=None, type=click.Path(),
              help="POPE-style existence file (python -m edgevlm.scripts.pope_questions): balanced yes/no scores per "
                   "sampling, category and wording.")
@click.option("--prior-from", "prior_file", default=None, type=click.Path(),
              help="With --vqa: training question file for the prior-only baseline, made by the same "
                   "vqa_questions command as the --vqa file, so the guesser knows the same mix of answers "
                   "(default: leave-one-image-out on the --vqa file).")
@click.option("--engine", "engine_dir", default=None, type=click.Path(),
              help="Engine folder (--vqa, --pope, --ood: default the shipped engine; --data: captions from this "
                   "engine instead of a PyTorch --model folder).")
@click.option("--ood", "ood_dir", default=None, type=click.Path(),
              help="With --data: out-of-domain image folder with ood.json (python -m edgevlm.scripts.ood_images DIR): "
                   "the engine's novelty AUROC and confident person/dog claims, against the --data photos.")
@click.option("--no-consistency", is_flag=True,
              help="With --data: skip asking the model about the objects its captions name (saves time).")
@click.option("--tune-abstention", is_flag=True,
              help="With --vqa or --pope and an engine: choose the \"I'm not sure\" threshold on this file (the "
                   "decoder's, or with --pope the concept head's) and write it, with its rule, to the engine.")
@click.option("--wrong-cost", type=click.FloatRange(0.0, 100.0, min_open=True), default=DEFAULT_WRONG_COST,
              show_default=True,
              help="With --tune-abstention: what a wrong answer costs against a right one's 1 (an \"I'm not sure\" "
                   "costs 0); the threshold maximises right - COST x wrong answers, so with calibrated "
                   "probabilities an answer is given where P(right) >= COST/(1+COST).")
@click.option("--emulate", is_flag=True,
              help="With --engine: run an INT8 engine made for another CPU (e.g. ENGINE/variants/avx512-vnni on an "
                   "AVX2 machine) on its emulation, that CPU's integer arithmetic computed in float (about 2x slower); "
                   "--tune-abstention then writes to the engine itself.")
@click.option("--images", "images_dir", default=None, type=click.Path(),
              help="Images folder, if not beside --data / --vqa / --pope.")
@click.option("--beam", type=click.IntRange(1, 16), default=None, help="Beam size (default: the model's).")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Score only the first N images (with --vqa or --pope: the first N questions; with --ood: the "
                   "first N dev photos, every OOD image).")
@click.option("--no-meteor", is_flag=True, help="Skip METEOR (slow; needs Java).")
@click.option("--no-memory", is_flag=True,
              help="With --data and an engine: plain beam search, not re-ranked by the engine's caption memory.")
@click.option("--stability", is_flag=True,
              help="With --pope and an engine: answer every question again on the photo shifted by one pixel and "
                   "report how often the spoken answer stays the same, and how often it flips between yes and no.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def command(model_dir, data, vqa_file, pope_file, prior_file, engine_dir, ood_dir, no_consistency, tune_abstention,
            wrong_cost, emulate, images_dir, beam, limit, no_meteor, no_memory, stability, as_json):
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of generated captions against human ones, with
    CHAIR hallucination, repeated words and self-consistency; with --vqa, VQA exact-match
    accuracy overall and per type beside a prior-only baseline, balanced yes/no accuracy and
    the abstention rate; with --pope, balanced yes/no scores per sampling, category and
    wording; with --ood, how an engine's novelty score and hedging hold up on images unlike
    its training photos."""
    if ood_dir and not data:
        raise EdgeVLMError("--ood OOD_DIR compares out-of-domain images with dev photos: give --data "
                           "CAPTIONS_DEV.json too")
    given = [name for name, value in (("--data", data), ("--vqa", vqa_file), ("--pope", pope_file)) if value]
    if not given:
        raise EdgeVLMError("give --data CAPTIONS.json (caption metrics), --vqa QUESTIONS.json (VQA accuracy) or "
                           "--pope POPE.json (object existence)")
    if len(given) > 1:
        raise EdgeVLMError(f"{' and '.join(given)} are separate evaluations: give one of them per run")
    if prior_file and not vqa_file:
        raise EdgeVLMError("--prior-from goes with --vqa (--pope has its own prior-only figures built in)")
    if stability and (not pope_file or model_dir):
        raise EdgeVLMError("--stability goes with --pope and an engine (the shipped one, or --engine DIR): it "
                           "answers the file's questions again on each photo shifted by one pixel")
    if no_consistency and not data:
        raise EdgeVLMError("--no-consistency goes with --data (caption consistency); drop it for --vqa and --pope")
    if not math.isfinite(wrong_cost):  # FloatRange lets NaN through: every comparison with it is false
        raise EdgeVLMError(f"--wrong-cost must be a finite number > 0, not {wrong_cost}")
    given = click.get_current_context().get_parameter_source("wrong_cost") is not ParameterSource.DEFAULT
    if given and not tune_abstention:
        raise EdgeVLMError("--wrong-cost weighs wrong answers when choosing the \"I'm not sure\" threshold: give "
                           "--tune-abstention too")
    if emulate:
        _emulate_for_this_run(engine_dir, model_dir)
    if vqa_file:
        return _eval_vqa(vqa_file, prior_file, model_dir, engine_dir, tune_abstention, images_dir, limit, as_json,
                         wrong_cost)
    if pope_file:
        return _eval_pope(pope_file, model_dir, engine_dir, tune_abstention, images_dir, limit, as_json,
                          wrong_cost, stability)
    if tune_abstention:
        flag = "--ood" if ood_dir else "--data"
        raise EdgeVLMError(f"--tune-abstention goes with --vqa or --pope: tune the threshold there, then run {flag}")
    if model_dir and engine_dir:
        raise EdgeVLMError("--data evaluates either --engine DIR or --model DIR, not both")
    if ood_dir:
        if model_dir:
            raise EdgeVLMError("--ood evaluates an engine (its novelty score and hedging): give --engine DIR or "
                               "nothing for the shipped engine, not --model")
        return _eval_ood(ood_dir, data, engine_dir, images_dir, beam, limit, as_json)
    return _eval_captions(data, model_dir, engine_dir, images_dir, beam, limit, no_meteor, no_consistency, as_json,
                          use_memory=not no_memory)


def _eval_captions(data, model_dir, engine_dir, images_dir, beam, limit, no_meteor, no_consistency, as_json,
                   use_memory=True):
    from edgevlm.data.coco import load_coco_captions
    from edgevlm.evaluation.caption_eval import caption_report
    from edgevlm.metrics.caption_metrics import java_available, score_captions

    items = [i for i in load_coco_captions(data, images_dir) if i.captions][:limit]
    paths = [i.path for i in items]
    started = time.time()
    if engine_dir:
        from edgevlm.evaluation.caption_eval import engine_ask, engine_captions

        source, engine = _open_engine(engine_dir, use_memory)
        ask = None if no_consistency else engine_ask(engine, paths)  # before captioning: fail in a second
        captions = engine_captions(engine, paths, beam, progress=not as_json)
        settings = engine.settings(beam)
        beam_used = getattr(settings, "beam_size", None) or settings.num_beams  # ours, or an HF engine's
        reranked = engine.reranks and beam_used > 1
    else:
        import torch

        from edgevlm.generate import caption_files
        from edgevlm.evaluation.caption_eval import model_ask
        from edgevlm.model_io import load_model

        torch.set_num_threads(2)
        source = model_dir or default_model_dir()
        model, tokenizer = load_model(source)
        ask = None if no_consistency else model_ask(model, tokenizer, paths)
        captions = caption_files(model, tokenizer, paths, beam, progress=not as_json)
        beam_used = beam or model.cfg.generation.beam_size
        reranked = False  # a model folder has no caption memory
    if not no_meteor and not java_available():
        click.echo("note: METEOR skipped: Java is not installed (apt-get install default-jre-headless)", err=True)
    scores = score_captions({i: list(it.captions) for i, it in enumerate(items)},
                            dict(enumerate(captions)), meteor=not no_meteor)
    scores.update(beam=beam_used, reranked=reranked, seconds=round(time.time() - started, 1))
    asked = time.time()
    scores.update(caption_report(items, captions, ask, progress=not as_json))
    scores.update(source=source, consistency_seconds=None if ask is None else round(time.time() - asked, 1))
    _echo_report(scores, as_json, caption_text)


def _echo_report(report: dict, as_json: bool, render) -> None:
    """Print ``report`` as one JSON object, or as the text ``render(report)`` gives."""
    click.echo(json.dumps(report) if as_json else render(report))


def _open_engine(engine_dir, use_memory: bool = True):
    """-> (the engine folder used: engine_dir or the shipped engine, its CaptionEngine: on
    the folder's emulation with --emulate; thresholds tuned are written to the folder)."""
    from edgevlm.runtime.engine import CaptionEngine

    source = resolve_engine(engine_dir)
    emulated = click.get_current_context().meta.get(EMULATED, {}).get(source)
    if emulated:
        return source, CaptionEngine(emulated, use_memory=use_memory, pick_variant=False)
    return source, CaptionEngine(source, use_memory=use_memory)


def _emulate_for_this_run(engine_dir, model_dir) -> None:
    """--emulate: the engine's emulated copy (calibration/int8_emulation.py) in a temporary
    folder removed when the command ends, however it ends."""
    if not engine_dir or model_dir:
        raise EdgeVLMError("--emulate runs an INT8 engine made for another CPU: give --engine DIR (e.g. "
                           "ENGINE/variants/avx512-vnni), not --model")
    from edgevlm.calibration.int8_emulation import emulated_copy  # without onnx: one line naming the extra
    source = resolve_engine(engine_dir)
    ctx = click.get_current_context()
    emulated = ctx.with_resource(emulated_copy(source))  # left when the command ends
    click.echo(f"note: {source} runs on its emulation (integer arithmetic in float, as the CPU it was made for "
               "computes it)", err=True)
    ctx.meta[EMULATED] = {source: emulated}


def _ood_questions(engine, entries: list[dict]) -> dict:
    """Person/dog questions about every OOD image (evaluation/ood_questions.py), or
    {"available": False} for an engine that only captions."""
    from edgevlm.evaluation.ood_questions import ood_question_report, question_entries
    from edgevlm.runtime.question_file import answer_entries

    if not engine.answers_questions:
        return {"available": False, "note": "this engine does not answer questions"}
    asked = question_entries(entries)
    return {"available": True, **ood_question_report(asked, [answer for _, answer in answer_entries(engine, asked)])}


def _eval_ood(ood_dir, data, engine_dir, images_dir, beam, limit, as_json):
    from edgevlm.data.coco import load_coco_captions
    from edgevlm.evaluation.ood_eval import describe_files, load_ood, ood_report

    entries = load_ood(ood_dir)  # both inputs checked before the engine runs
    dev = load_coco_captions(data, images_dir)[:limit]
    if not dev:
        raise EdgeVLMError(f"{data} lists no images: --ood needs dev photos to compare with")
    source, engine = _open_engine(engine_dir)
    started = time.time()
    progress = None if as_json else "OOD images"
    ood, ood_novelty = describe_files(engine, [e["path"] for e in entries], beam, progress=progress)
    dev_described, dev_novelty = describe_files(engine, [i.path for i in dev], beam,
                                                progress=None if as_json else "dev photos")
    report = ood_report([e["group"] for e in entries], ood, dev_described, ood_novelty, dev_novelty,
                        engine.unfamiliar_above, [e["file"] for e in entries])
    report["questions"] = _ood_questions(engine, entries)
    report.update(source=source, ood_dir=ood_dir, seconds=round(time.time() - started, 1))
    _echo_report(report, as_json, ood_text)


def _answers(entries, model_dir, engine_dir, flag, progress):
    """-> (question_id -> (answer, probability), abstention threshold or None for a model
    folder, question_id -> that question's own threshold or None, the folder used, the
    question_ids held back at any threshold: vqa_eval.engine_answers; none for a model folder)."""
    from edgevlm.evaluation.vqa_eval import engine_answers, model_answers

    if model_dir and engine_dir:
        raise EdgeVLMError(f"{flag} evaluates either --engine DIR or --model DIR, not both")
    # Answers from the concept head (existence, and "none" to "how many") have its own
    # threshold; the rest the decoder's (a model folder's: DEFAULT_ABSTAIN_BELOW, as its
    # engine before any tuning).
    if model_dir:
        answers, sources, existence = model_answers(model_dir, entries)
        threshold, source, held_back = None, model_dir, set()
    else:
        source, engine = _open_engine(engine_dir)
        answers, sources, held_back = engine_answers(engine, entries, progress=progress)
        threshold = engine.abstain_below
        existence = engine.existence_abstain_below if engine.manifest.concepts is not None else None
    per_question = {qid: existence for qid, by in sources.items() if by == "concepts"}
    return answers, threshold, per_question, source, held_back


def _eval_vqa(vqa_file, prior_file, model_dir, engine_dir, tune_abstention, images_dir, limit, as_json,
              wrong_cost=DEFAULT_WRONG_COST):
    from edgevlm.evaluation.prior_baseline import load_training_answers, prior_report
    from edgevlm.evaluation.vqa_eval import load_qa, vqa_report, write_threshold
    from edgevlm.metrics.vqa_metrics import choose_threshold
    from edgevlm.runtime.engine import DEFAULT_ABSTAIN_BELOW

    if tune_abstention and not engine_dir:
        raise EdgeVLMError("--tune-abstention writes the threshold into an engine: name it with --engine DIR "
                           "(the shipped engine is not changed in place)")
    everything = load_qa(vqa_file, images_dir)
    entries = everything[:limit]
    # Read before answering, so a bad --prior-from fails in a second, not after the whole file.
    training = load_training_answers(prior_file) if prior_file else None
    started = time.time()
    answers, threshold, per_question, source, held_back = _answers(entries, model_dir, engine_dir, "--vqa",
                                                                   progress=not as_json)
    if tune_abstention:
        # The decoder's threshold, on the decoder's answers: existence answers have the concept
        # head's own (tuned with --pope --tune-abstention).
        decoder_entries = [e for e in entries if e["question_id"] not in per_question]
        if len(decoder_entries) < MIN_TUNING_QUESTIONS:
            raise EdgeVLMError(f"--tune-abstention needs at least {MIN_TUNING_QUESTIONS} questions the decoder "
                               f"answers to choose a threshold; {vqa_file} gives {len(decoder_entries)}")
        threshold = choose_threshold(decoder_entries, answers, wrong_cost, held_back)
        write_threshold(source, threshold, vqa_file, len(decoder_entries), wrong_cost)
    report = vqa_report(entries, answers, DEFAULT_ABSTAIN_BELOW if threshold is None else threshold, per_question,
                        held_back)
    report.update(source=source, seconds=round(time.time() - started, 1))
    if tune_abstention:
        report["abstention_rule"] = abstention_rule(wrong_cost)
    if training is not None:
        report["prior"] = prior_report(entries, report, training, False, f"training answers in {prior_file}")
    else:  # the whole file, even with --limit: more other images to learn each question's answer from
        report["prior"] = prior_report(entries, report, everything, True, f"leave-one-image-out on {vqa_file}")
    _echo_report(report, as_json, lambda r: vqa_text(r, tuned=tune_abstention))


def _pope_stability(entries, engine_dir, answers, threshold, per_question, held_back, progress) -> dict:
    """The same questions on every photo shifted by one pixel, against ``answers``."""
    from edgevlm.evaluation.answer_stability import shifted, stability_report
    from edgevlm.evaluation.vqa_eval import engine_answers

    _, engine = _open_engine(engine_dir)
    moved, _, moved_held_back = engine_answers(engine, entries, progress=progress, transform=shifted,
                                               desc="shifted by 1 pixel")
    return stability_report(entries, answers, moved, threshold, per_question, (held_back, moved_held_back))


def _eval_pope(pope_file, model_dir, engine_dir, tune_abstention, images_dir, limit, as_json,
               wrong_cost=DEFAULT_WRONG_COST, stability=False):
    from edgevlm.evaluation.pope_metrics import check_pope_entries, pope_report
    from edgevlm.evaluation.vqa_eval import load_qa, write_existence_threshold
    from edgevlm.metrics.vqa_metrics import choose_threshold
    from edgevlm.runtime.engine import DEFAULT_ABSTAIN_BELOW

    if tune_abstention and not engine_dir:
        raise EdgeVLMError("--pope --tune-abstention writes the concept head's threshold into an engine: name it "
                           "with --engine DIR (the shipped engine is not changed in place)")
    entries = load_qa(pope_file, images_dir)
    check_pope_entries(entries, pope_file)
    entries = entries[:limit]
    started = time.time()
    answers, threshold, per_question, source, held_back = _answers(entries, model_dir, engine_dir, "--pope",
                                                                   progress=not as_json)
    if tune_abstention:
        if not per_question:
            raise EdgeVLMError(f"--pope --tune-abstention tunes the concept head's threshold, and {source} has no "
                               "concept head (make one with edgevlm train-concepts, then export it)")
        if len(entries) < MIN_TUNING_QUESTIONS:
            raise EdgeVLMError(f"--tune-abstention needs at least {MIN_TUNING_QUESTIONS} questions to choose a "
                               f"threshold; {pope_file} gives {len(entries)}")
        existence = choose_threshold(entries, answers, wrong_cost, held_back)
        write_existence_threshold(source, existence, pope_file, len(entries), wrong_cost)
        per_question = {qid: existence for qid in per_question}
    if per_question:  # every POPE question is an existence question: show the concept head's threshold
        threshold = next(iter(per_question.values()))
    threshold = DEFAULT_ABSTAIN_BELOW if threshold is None else threshold
    report = pope_report(entries, answers, threshold, per_question, held_back)
    if stability:
        report["stability"] = _pope_stability(entries, engine_dir, answers, threshold, per_question, held_back,
                                              not as_json)
    report.update(source=source, seconds=round(time.time() - started, 1))
    if tune_abstention:
        report["abstention_rule"] = abstention_rule(wrong_cost)
    _echo_report(report, as_json, pope_text)
