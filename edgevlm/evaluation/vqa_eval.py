"""Answer a VQA question file with an engine (torch-free) or a PyTorch model folder, and
score it: the body of ``edgevlm eval --vqa``."""

from __future__ import annotations

import os

import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.evaluation.vqa_metrics import score_answers

QUESTION_KEYS = {"question_id", "image", "question", "answers", "type"}


def load_qa(path: str, images_dir: str | None) -> list[dict]:
    """A VQA-style file (the generator's output): entries with QUESTION_KEYS, "path" added."""
    from edgevlm.cli.ask_cmd import load_questions

    entries = load_questions(path, images_dir)
    for index, entry in enumerate(entries):
        missing = QUESTION_KEYS - set(entry)
        if missing or not isinstance(entry["answers"], list) or not entry["answers"] or not all(
                isinstance(a, str) for a in entry["answers"]):
            raise EdgeVLMError(f"{path}: entry [{index}] needs {sorted(QUESTION_KEYS)} with a non-empty "
                               "'answers' list of strings (make one with python -m edgevlm.data.vqa_questions)")
    return entries


def engine_answers(engine, entries: list[dict], progress: bool = False) -> dict:
    """question_id -> (answer text, probability), never abstaining (thresholds are applied
    when scoring, so one pass serves every threshold)."""
    from edgevlm.cli.ask_cmd import answer_entries

    pairs = answer_entries(engine, entries, abstain_below=0.0)
    if progress:
        from tqdm import tqdm

        pairs = tqdm(pairs, total=len(entries), desc="answering", unit="question")
    return {entry["question_id"]: (answer.answer, answer.probability) for entry, answer in pairs}


def model_answers(model_dir: str, entries: list[dict]) -> dict:
    """The same with the PyTorch model (one photo at a time, as the engine)."""
    import torch

    from edgevlm.generate import answer_from_visual, search_settings
    from edgevlm.model_io import load_model
    from edgevlm.training.features import load_pixels

    model, tokenizer = load_model(model_dir)
    banned = search_settings(model.cfg).banned_ids  # pad, unk, bos, [SEP]: as the engine's manifest
    out = {}
    with torch.no_grad():
        for entry in entries:
            visual, _ = model.encode(torch.from_numpy(load_pixels(entry["path"], model.cfg)[None]))
            prompt = tokenizer.question_prompt(entry["question"], model.cfg.decoder.max_len)
            found = answer_from_visual(model, visual, np.array([prompt], np.int64), banned)[0]
            out[entry["question_id"]] = (tokenizer.decode(found.ids), found.probability)
    return out


def vqa_report(entries: list[dict], answers: dict, threshold: float) -> dict:
    """Exact match with every question answered, and the same with abstention at ``threshold``."""
    raw = score_answers(entries, answers, 0.0)
    abstaining = score_answers(entries, answers, threshold)
    return {
        "questions": raw["questions"], "accuracy": raw["accuracy"], "by_type": raw["by_type"],
        "count_by_type": raw["count_by_type"], "yesno_balanced_accuracy": raw["yesno_balanced_accuracy"],
        "abstention_rate": abstaining["abstention_rate"],
        "with_abstention": {k: abstaining[k] for k in ("threshold", "coverage", "answered_accuracy", "accuracy",
                                                        "yesno_balanced_accuracy", "by_type")},
    }


def write_threshold(engine_dir: str, threshold: float, tuned_on: str, questions: int) -> None:
    """Record the abstention threshold in the engine manifest (atomically; the manifest is
    not among the hashed files)."""
    from edgevlm.fileio import read_json, write_json
    from edgevlm.runtime.manifest import MANIFEST_FILE

    path = os.path.join(engine_dir, MANIFEST_FILE)
    data = read_json(path, "an edgevlm engine manifest")
    # The exact float (JSON keeps it): rounding up would abstain on the answer it was tuned to give.
    data["vqa"] = {"abstain_below": threshold, "tuned_on": os.path.basename(tuned_on),
                   "tuned_questions": questions, "rule": "maximise right - wrong answers (abstain scores 0)"}
    try:
        write_json(path, data)
    except OSError as exc:
        raise EdgeVLMError(f"cannot write the threshold into {path}: {exc.strerror}; copy the engine somewhere "
                           "writable and pass --engine") from exc
