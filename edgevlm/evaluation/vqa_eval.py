"""Answer a VQA question file with an engine (torch-free) or a PyTorch model folder, and
score it: the body of ``edgevlm eval --vqa``."""

from __future__ import annotations

import os

import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.metrics.calibration import calibration_report
from edgevlm.metrics.vqa_metrics import abstention_rule, answer_is_right, score_answers

QUESTION_KEYS = {"question_id", "image", "question", "answers", "type"}


def load_qa(path: str, images_dir: str | None) -> list[dict]:
    """A VQA-style file (the generator's output): entries with QUESTION_KEYS, "path" added."""
    from edgevlm.runtime.question_file import load_questions

    entries = load_questions(path, images_dir)
    for index, entry in enumerate(entries):
        missing = QUESTION_KEYS - set(entry)
        if missing or not isinstance(entry["answers"], list) or not entry["answers"] or not all(
                isinstance(a, str) for a in entry["answers"]):
            raise EdgeVLMError(f"{path}: entry [{index}] needs {sorted(QUESTION_KEYS)} with a non-empty "
                               "'answers' list of strings (make one with python -m edgevlm.scripts.vqa_questions)")
    return entries


def engine_answers(engine, entries: list[dict], progress: bool = False, transform=None,
                   desc: str = "answering") -> tuple[dict, dict, set]:
    """-> (question_id -> (answer text, probability), question_id -> the answer's source,
    "decoder" or "concepts": which abstention threshold applies, the question_ids the engine
    holds back whatever the threshold: "I'm not sure" at threshold 0, as about a thing it
    never learnt or a claim on an unfamiliar image, engine.unless_sure), asked at threshold 0
    (thresholds are applied when scoring, so one pass serves every threshold); ``transform``:
    applied to every photo first (answer_stability.shifted)."""
    from edgevlm.runtime.question_file import answer_entries

    pairs = answer_entries(engine, entries, abstain_below=0.0, transform=transform)
    if progress:
        from tqdm import tqdm

        pairs = tqdm(pairs, total=len(entries), desc=desc, unit="question")
    answers, sources, held_back = {}, {}, set()
    for entry, answer in pairs:
        answers[entry["question_id"]] = (answer.answer, answer.probability)
        sources[entry["question_id"]] = answer.source
        if answer.abstained:  # at threshold 0: held back for a reason no threshold changes
            held_back.add(entry["question_id"])
    return answers, sources, held_back


class ModelAnswerer:
    """The PyTorch model answering questions about one photo, routed as the engine routes
    them: existence questions ("is there a dog?") from the concept head where the model has
    one, questions about something they take to be there ("how many dogs", "what color is
    the dog?") from the decoder weighed by the head's P(present) ("none" to a count of
    nothing), no answer (p 0.5) to an existence question about a thing no concept names,
    everything else from the decoder. Never abstains: thresholds are the caller's. (The
    engine's bar on unfamiliar images, engine.unless_sure, reads its manifest's novelty
    limit, which a model folder lacks: a model is scored without it.)"""

    def __init__(self, model, tokenizer):
        from edgevlm.generate import search_settings
        from edgevlm.runtime.grounding import ExistenceQuestions

        self.model, self.tokenizer = model, tokenizer
        self.banned = search_settings(model.cfg).banned_ids  # pad, unk, bos, [SEP]: as the engine's manifest
        c = model.cfg.concepts
        self.existence = ExistenceQuestions(c.names, c.words) if model.concepts is not None else None

    def __call__(self, pixels: np.ndarray, questions: list[str]) -> list[tuple[str, float, str]]:
        """pixels (3,S,S) of one photo -> (answer, probability 0..1, source) per question;
        source is "concepts", "decoder" or "unknown_object", as VQAAnswer.source."""
        import torch

        from edgevlm.generate import answer_from_visual, concept_probs
        from edgevlm.runtime.grounding import UNKNOWN_OBJECT_PROBABILITY, existence_answer, grounded_answer
        from edgevlm.runtime.mirror_view import with_mirror_view

        with torch.no_grad():
            features = self.model.encoder_features(torch.from_numpy(pixels[None]))  # once per photo
            probs = concept_probs(self.model, features)  # (1, K) or None
            if probs is not None and any(self.existence.reads_head(question) for question in questions):
                # as the engine's question_sight: the head's view averaged with the mirrored photo's
                mirrored = self.model.encoder_features(torch.from_numpy(np.ascontiguousarray(pixels[None, ..., ::-1])))
                probs = with_mirror_view(probs, concept_probs(self.model, mirrored))
            visual = None
            out = []
            for question in questions:
                k = self.existence.concept_of(question) if self.existence is not None else None
                if k is not None:
                    out.append(existence_answer(float(probs[0, k])) + ("concepts",))
                    continue
                if self.existence is not None and self.existence.unknown_object(question) is not None:
                    out.append(("", UNKNOWN_OBJECT_PROBABILITY, "unknown_object"))  # as engine.unknown_object_answer
                    continue
                if visual is None:
                    visual = self.model.projector(features)  # (1, N, d)
                prompt = self.tokenizer.question_prompt(question, self.model.cfg.decoder.max_len)
                found = answer_from_visual(self.model, visual, np.array([prompt], np.int64), self.banned)[0]
                text = self.tokenizer.decode(found.ids)
                assumed = self.existence.presupposition(question) if self.existence is not None else None
                out.append((text, found.probability, "decoder") if assumed is None else grounded_answer(
                    float(probs[0, list(assumed.concepts)].max()), text, found.probability, assumed.absent_answer))
        return out


def model_answers(model_dir: str, entries: list[dict]) -> tuple[dict, dict, float | None]:
    """The same with the PyTorch model (one photo at a time, each encoded once for all its
    questions, as the engine): -> (answers, sources, the concept head's "I'm not sure"
    threshold or None for a model without one)."""
    from edgevlm.model_io import load_model
    from edgevlm.features import load_pixels

    model, tokenizer = load_model(model_dir)
    answer = ModelAnswerer(model, tokenizer)
    by_path: dict[str, list[dict]] = {}
    for entry in entries:
        by_path.setdefault(entry["path"], []).append(entry)
    out, sources = {}, {}
    for path, group in by_path.items():
        found = answer(load_pixels(path, model.cfg), [entry["question"] for entry in group])
        for entry, (text, probability, source) in zip(group, found):
            out[entry["question_id"]] = (text, probability)
            sources[entry["question_id"]] = source
    concepts = model.cfg.concepts
    order = [entry["question_id"] for entry in entries]  # the file's order
    return ({qid: out[qid] for qid in order}, {qid: sources[qid] for qid in order},
            None if concepts is None else float(concepts.abstain_below))


def vqa_report(entries: list[dict], answers: dict, threshold: float, per_question: dict | None = None,
               held_back: frozenset | set = frozenset()) -> dict:
    """Exact match with every question answered, and the same with abstention at ``threshold``
    (or each question's own in ``per_question``; ``held_back`` questions always abstain:
    engine_answers); ``calibration`` of every answer's
    probability, over all questions and per source ("concepts": the questions in
    ``per_question``, "decoder": the rest; metrics/calibration.py)."""
    raw = score_answers(entries, answers, 0.0)
    by_source: dict[str, tuple[list, list]] = {"all": ([], [])}
    for entry in entries:
        text, probability = answers[entry["question_id"]]
        source = "concepts" if per_question and entry["question_id"] in per_question else "decoder"
        for key in ("all", source):
            probabilities, right = by_source.setdefault(key, ([], []))
            probabilities.append(probability)
            right.append(answer_is_right(text, entry["answers"]))
    abstaining = score_answers(entries, answers, threshold, per_question, held_back)
    return {
        "questions": raw["questions"], "accuracy": raw["accuracy"], "by_type": raw["by_type"],
        "count_by_type": raw["count_by_type"], "yesno_balanced_accuracy": raw["yesno_balanced_accuracy"],
        "number_split": raw["number_split"],
        "abstention_rate": abstaining["abstention_rate"],
        "with_abstention": {k: abstaining[k] for k in ("threshold", "coverage", "answered_accuracy", "accuracy",
                                                        "yesno_balanced_accuracy", "by_type")},
        "calibration": {key: calibration_report(*pair) for key, pair in by_source.items()},
    }


def write_existence_threshold(engine_dir: str, threshold: float, tuned_on: str, questions: int,
                              wrong_cost: float) -> None:
    """Record the concept head's "I'm not sure" threshold (existence answers) in the engine
    manifest, as ``write_threshold`` does the decoder's."""
    import dataclasses

    from edgevlm.runtime.manifest import update_manifest

    def change(manifest):
        if manifest.concepts is None:
            raise EdgeVLMError(f"{engine_dir} has no concept head: there is no existence threshold to tune")
        return manifest.replace(concepts=dataclasses.replace(
            manifest.concepts, abstain_below=threshold, tuned_on=os.path.basename(tuned_on), tuned_questions=questions,
            rule=abstention_rule(wrong_cost)))

    update_manifest(engine_dir, change, "the threshold")


def write_threshold(engine_dir: str, threshold: float, tuned_on: str, questions: int, wrong_cost: float) -> None:
    """Record the decoder's abstention threshold in the engine manifest."""
    from edgevlm.runtime.manifest import VQAThreshold, update_manifest

    # The exact float (JSON keeps it): rounding up would abstain on the answer it was tuned to give.
    threshold_section = VQAThreshold(abstain_below=threshold, tuned_on=os.path.basename(tuned_on),
                                     tuned_questions=questions, rule=abstention_rule(wrong_cost))
    update_manifest(engine_dir, lambda manifest: manifest.replace(vqa=threshold_section), "the threshold")
