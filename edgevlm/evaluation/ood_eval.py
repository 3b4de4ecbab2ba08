"""Out-of-domain behaviour of an engine: the body of ``edgevlm eval --ood``.

On images nothing like its training photos (``python -m edgevlm.scripts.ood_images DIR``: no
person and no dog in any of them) a captioner still says "a man ..." or "a dog ...". What
protects a blind user is that such captions are hedged ("I'm not sure what this is; it may
be ...") or replaced by a frame message ("It is too dark to see."). This measures:

- how well the engine's novelty score separates OOD images (positives) from dev photos
  (negatives): AUROC, overall and per OOD group;
- the rate of *confident person/dog claims*: captions naming the person or dog category,
  neither hedged nor a frame message, on OOD images (overall and per group; every one is
  invented) and on dev photos (for reference: there most are true);
- how often the engine hedges dev photos (false alarms) at its own threshold.

Torch-free: only the engine runs.
"""

from __future__ import annotations

import json
import os

import numpy as np

from edgevlm.data.object_lexicon import mentioned
from edgevlm.errors import EdgeVLMError

OOD_LISTING = "ood.json"
CLAIM_CATEGORIES = frozenset({"person", "dog"})  # what a blind user most needs to be right about
MAX_EXAMPLES = 10
MAKE_SET = "make one with python -m edgevlm.scripts.ood_images OOD_DIR"


def load_ood(ood_dir: str) -> list[dict]:
    """OOD_DIR/ood.json -> its entries ({"file", "group", ...}) with "path" added."""
    listing = os.path.join(ood_dir, OOD_LISTING)
    if not os.path.isfile(listing):
        raise EdgeVLMError(f"{ood_dir} has no {OOD_LISTING}: not an OOD image set ({MAKE_SET})")
    try:
        with open(listing, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError) as exc:
        raise EdgeVLMError(f"cannot read {listing}: {exc} ({MAKE_SET})") from exc
    if not isinstance(entries, list) or not entries:
        raise EdgeVLMError(f'{listing} must hold a non-empty JSON list of {{"file", "group"}} objects ({MAKE_SET})')
    out = []
    for index, entry in enumerate(entries):
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str) and entry[k] for k in ("file", "group"))):
            raise EdgeVLMError(f'{listing}: entry [{index}] needs "file" and "group" strings ({MAKE_SET})')
        path = os.path.join(ood_dir, entry["file"])
        if not os.path.isfile(path):
            raise EdgeVLMError(f"{listing}: entry [{index}]: {path} not found; rebuild the set ({MAKE_SET})")
        out.append(dict(entry, path=path))
    return out


# --------------------------------------------------------------------------- scores
def auroc(positives, negatives) -> float | None:
    """Area under the ROC curve of scores where positives should score higher: the chance
    that a random positive outscores a random negative, ties counting half
    (Mann-Whitney U / (n_pos * n_neg) from average ranks). None when either side is empty."""
    pos = np.asarray(positives, np.float64).ravel()
    neg = np.asarray(negatives, np.float64).ravel()
    if not len(pos) or not len(neg):
        return None
    scores = np.concatenate([pos, neg])
    if np.isnan(scores).any():
        raise ValueError("auroc: NaN among the scores")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of each distinct score's last copy
    ranks = ((ends - counts + 1 + ends) / 2.0)[inverse]  # tied scores share their average rank
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def is_confident_claim(description) -> bool:
    """A caption that names a person or a dog and is said as fact: not hedged, not a frame
    message (``Description.issue``)."""
    return (description.issue is None and not description.hedged
            and bool(mentioned(description.caption) & CLAIM_CATEGORIES))


def claim_counts(descriptions: list) -> dict:
    """Descriptions -> images, confident_claims, confident_claim_rate (over all images),
    hedged, hedged_rate, frame_issues (0 rates over zero images)."""
    n = len(descriptions)
    claims = sum(is_confident_claim(d) for d in descriptions)
    hedged = sum(bool(d.hedged) for d in descriptions)
    return {
        "images": n,
        "confident_claims": claims,
        "confident_claim_rate": claims / max(n, 1),
        "hedged": hedged,
        "hedged_rate": hedged / max(n, 1),
        "frame_issues": sum(d.issue is not None for d in descriptions),
    }


def ood_report(groups: list[str], ood: list, dev: list, ood_novelty: np.ndarray | None,
               dev_novelty: np.ndarray | None, unfamiliar_above: float, files: list[str] | None = None) -> dict:
    """groups[i] is OOD image i's group, ood[i] its Description, ood_novelty[i] its novelty
    score (None: the engine has no novelty output); dev / dev_novelty the same for the dev
    photos. ``unfamiliar_above``: the engine's hedging threshold (0: never hedges).

    Returns:
        ood_images, dev_photos
        novelty: {available, auroc, auroc_by_group, ood_median, dev_median} (None where
        not computable), or {available: False, note: "no novelty output", ...}
        hedging: {unfamiliar_above, dev_false_alarm_rate (dev photos hedged), ood_hedged_rate}
        confident_claims: {ood: claim_counts() + by_group, dev: claim_counts()}
        examples: up to MAX_EXAMPLES OOD descriptions, confident claims first, groups in turn
    """
    if not (len(groups) == len(ood) and (files is None or len(files) == len(ood))):
        raise ValueError("ood_report: one group (and file) per OOD description")
    names = sorted(set(groups))
    by_group = {g: [d for d, gg in zip(ood, groups) if gg == g] for g in names}
    ood_counts = claim_counts(ood)
    dev_counts = claim_counts(dev)
    return {
        "ood_images": len(ood),
        "dev_photos": len(dev),
        "novelty": _novelty(groups, names, ood_novelty, dev_novelty),
        "hedging": {"unfamiliar_above": unfamiliar_above, "dev_false_alarm_rate": dev_counts["hedged_rate"],
                    "ood_hedged_rate": ood_counts["hedged_rate"]},
        "confident_claims": {"ood": {**ood_counts, "by_group": {g: claim_counts(by_group[g]) for g in names}},
                             "dev": dev_counts},
        "examples": _examples(groups, ood, files),
    }


def _novelty(groups: list[str], names: list[str], ood: np.ndarray | None, dev: np.ndarray | None) -> dict:
    if ood is None or dev is None:
        return {"available": False, "note": "no novelty output", "auroc": None, "auroc_by_group": {},
                "ood_median": None, "dev_median": None}
    ood, dev = np.asarray(ood, np.float64), np.asarray(dev, np.float64)
    labels = np.asarray(groups)
    return {
        "available": True,
        "auroc": auroc(ood, dev),
        "auroc_by_group": {g: auroc(ood[labels == g], dev) for g in names},
        "ood_median": _median(ood),
        "dev_median": _median(dev),
    }


def _median(scores: np.ndarray) -> float | None:
    """Median score, None where empty or not finite (JSON has no infinity). A median, not a
    mean: one far-off image would move a mean of novelty scores anywhere."""
    value = float(np.median(scores)) if len(scores) else float("nan")
    return value if np.isfinite(value) else None


def _examples(groups: list[str], ood: list, files: list[str] | None) -> list[dict]:
    """Confident claims first (the failures to read), then the rest; within each, taking
    the groups in turn (so one large group cannot fill the list), each in file order."""
    claims = [is_confident_claim(d) for d in ood]
    seen: dict[tuple[bool, str], int] = {}
    turn = []  # how many earlier images share this one's group and claim status
    for claim, group in zip(claims, groups):
        turn.append(seen.get((claim, group), 0))
        seen[(claim, group)] = turn[-1] + 1
    order = sorted(range(len(ood)), key=lambda i: (not claims[i], turn[i], i))[:MAX_EXAMPLES]
    return [{"file": files[i] if files else None, "group": groups[i], "text": ood[i].text,
             "confident_claim": is_confident_claim(ood[i]), "hedged": ood[i].hedged, "issue": ood[i].issue}
            for i in order]


# --------------------------------------------------------------------------- running the engine
def has_novelty(engine) -> bool:
    """Does the engine's vision graph output a novelty score?"""
    return engine.manifest.graph("vision").gives("novelty")


def describe_files(engine, paths: list[str], beam_size: int | None, batch_size: int = 32,
                   progress: str | None = None) -> tuple[list, np.ndarray | None]:
    """Image files -> (a Description per file as ``describe_images`` gives it, novelty (N,)
    float64 of every file or None). The novelty score comes from one more vision run over
    every image, frames with nothing to see included (describe_images skips them)."""
    from edgevlm.runtime.preprocess import read_image_bgr

    novel = has_novelty(engine)
    descriptions: list = []
    scores: list[np.ndarray] = []
    batches = range(0, len(paths), batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=progress, unit="batch")
    for start in batches:
        images = [read_image_bgr(p) for p in paths[start : start + batch_size]]
        descriptions.extend(engine.describe_images(images, beam_size))
        if novel:
            sight = engine.see(np.stack([engine.preprocess(image) for image in images]))
            scores.append(np.asarray(sight.novelty, np.float64).reshape(-1))  # (batch,)
    return descriptions, (np.concatenate(scores) if novel and scores else None)
