"""Train the concept head (object existence) on a trained model's frozen encoder features
and tune its thresholds on dev; the decoder is untouched, so captions and other answers stay
exactly as they were.

Labels come from the human captions through the object lexicon: present (most captions
name it), absent (none names it nor leaves it open), unknown (masked out of the loss).
The loss is BCE on the natural label balance (calibrated), and the head's final bias
is then shifted by each category's log prior odds, so that 0.5 means "the picture is as
much evidence for as against" whatever Flickr8k's base rate for the category. With hard
negatives, a category's absent pairs share its negative weight by how expected it is in
the photo (``hard_negative_weights``), its total unchanged, so the prior shift still
roughly calibrates it (the weighting lowers P where the category is expected, raises it
elsewhere).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from edgevlm.config import ConceptConfig
from edgevlm.data.coco import CaptionedImage
from edgevlm.data.object_lexicon import CATEGORIES, PRESENT_MIN, image_labels
from edgevlm.errors import EdgeVLMError
from edgevlm.metrics.vqa_metrics import DEFAULT_WRONG_COST, abstention_rule, choose_threshold
from edgevlm.models.captioner import Captioner
from edgevlm.models.concept_head import ConceptHead
from edgevlm.runtime.mirror_view import with_mirror_view

log = logging.getLogger(__name__)

UNKNOWN = -1


def concept_labels(items: list[CaptionedImage], names: tuple[str, ...], present_min: int = PRESENT_MIN) -> np.ndarray:
    """-> (N, K) int8: 1 present (named by at least ``present_min`` captions), 0 absent, -1 unknown."""
    out = np.full((len(items), len(names)), UNKNOWN, np.int8)
    for row, item in enumerate(items):
        for name, present in image_labels(list(item.captions), present_min).items():
            if name in names:
                out[row, names.index(name)] = int(present)
    return out


def balanced_accuracy(probs: np.ndarray, labels: np.ndarray, min_positives: int = 5) -> dict[str, float]:
    """probs (N,K) and labels (N,K) -> per-concept mean of recall on present and on absent at
    0.5 (concepts with fewer than ``min_positives`` present images are left out)."""
    out = {}
    for k in range(labels.shape[1]):
        pos, neg = labels[:, k] == 1, labels[:, k] == 0
        if pos.sum() >= min_positives and neg.sum():
            out[k] = 0.5 * ((probs[pos, k] >= 0.5).mean() + (probs[neg, k] < 0.5).mean())
    return out


def _views(train_x: np.ndarray, mirror_x: np.ndarray | None, rows: np.ndarray, rng) -> torch.Tensor:
    """The batch's features, each row from the photo or (half of them, at random) its mirror
    image. The mirror's own features, not the photo's grid flipped: the head scores cells one
    by one and pools them, so a flipped grid is the same input to it."""
    x = train_x[rows].astype(np.float32)
    if mirror_x is not None:
        mirrored = rng.random(len(rows)) < 0.5
        x[mirrored] = mirror_x[rows[mirrored]]
    return torch.from_numpy(x)


def hard_negative_weights(labels: np.ndarray, strength: float, cap: float = 5.0) -> np.ndarray:
    """labels (N,K) -> loss weights (N,K) float32: 1 on present and unknown pairs; on a
    category's absent pairs 1 + strength x (how expected the category is in that photo,
    relative to its other absent photos), capped at ``cap`` and rescaled to mean 1.

    "How expected" is POPE's adversarial score (``pope_questions.adversarial_negatives``)
    on the training labels: the sum, over the categories present in the photo, of
    P(category | that one). A head trained on the natural balance sees few of the photos
    where a frisbee is expected and absent (a dog in a park without one) and learns "dog
    and grass -> frisbee"; weighting them teaches it to look. The mean of 1 keeps each
    category's total negative weight, so the prior shift still roughly calibrates it.
    Strengths measured: MODEL_CARD.md ("Stop 36")."""
    if not (math.isfinite(strength) and strength >= 0):
        raise EdgeVLMError(f"hard-negative strength must be a finite number >= 0, not {strength}")
    if not (math.isfinite(cap) and cap >= 1):
        raise EdgeVLMError(f"the hard-negative weight cap must be a finite number >= 1, not {cap}")
    present = (labels == 1).astype(np.float64)
    given = present.T @ present / np.maximum(present.sum(0), 1)[:, None]  # given[p, c] = P(c | p)
    np.fill_diagonal(given, 0.0)
    expected = present @ given  # (N, K)
    weights = np.ones(labels.shape, np.float64)
    for k in range(labels.shape[1]):
        absent = labels[:, k] == 0
        if not absent.any():
            continue
        score = expected[absent, k] / max(expected[absent, k].mean(), 1e-12)
        w = np.minimum(1.0 + strength * score, cap)
        weights[absent, k] = w / w.mean()
    return weights.astype(np.float32)


def train_head(head: ConceptHead, train_x: np.ndarray, train_y: np.ndarray, epochs: int = 25, lr: float = 1e-3,
               batch: int = 128, seed: int = 0, weight_decay: float = 0.05,
               mirror_x: np.ndarray | None = None, weights: np.ndarray | None = None) -> list[float]:
    """Fit ``head`` on cached features (N,C,h,w) float16 and labels (N,K) in place; shift its
    bias by the log prior odds. ``mirror_x`` (N,C,h,w): the mirror images' features, drawn
    for half of each batch's rows; ``weights`` (N,K): each pair's loss weight (default 1).
    -> mean loss per epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(train_x) / batch)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.1)
    if weights is not None and weights.shape != train_y.shape:
        raise EdgeVLMError(f"concept loss weights must have the labels' shape {train_y.shape}, not {weights.shape}")
    labels = torch.from_numpy(train_y.astype(np.float32))
    known = labels >= 0
    pair_weights = known.float() * (1.0 if weights is None else torch.from_numpy(weights.astype(np.float32)))
    head.bias_shift.zero_()
    history = []
    for epoch in range(epochs):
        head.train()
        order, total = rng.permutation(len(train_x)), 0.0
        for start in range(0, len(order), batch):
            rows = np.sort(order[start : start + batch])
            x = _views(train_x, mirror_x, rows, rng)
            y, mask = labels[rows], known[rows]
            loss = F.binary_cross_entropy_with_logits(head(x), y.clamp_min(0), reduction="none")
            loss = (loss * pair_weights[rows]).sum() / mask.sum().clamp_min(1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(rows)
        history.append(total / len(train_x))
        log.info("concept head epoch %d/%d: loss %.4f", epoch + 1, epochs, history[-1])
    with torch.no_grad():
        head.bias_shift.copy_(torch.from_numpy(prior_shift(train_y)).float())
    return history


PRIOR_PSEUDOCOUNT = 30.0


def prior_shift(labels: np.ndarray, pseudocount: float = PRIOR_PSEUDOCOUNT) -> np.ndarray:
    """labels (N,K) -> the log prior odds (K,) subtracted from the head's logits.

    Shrunk towards even odds by ``pseudocount`` images on each side: a category seen in 14
    training photos (cat) would otherwise get a +6 logit boost, and its head, which could
    not learn much from 14 photos, would say "yes" on any odd picture. Measured on dev
    (macro balanced accuracy over 42 categories / worst category): pseudocount 1: 0.887 /
    0.699; 10: 0.892 / 0.725; 30: 0.890 / 0.740; 100: 0.869 / 0.559."""
    present = (labels == 1).sum(0) + pseudocount
    absent = (labels == 0).sum(0) + pseudocount
    return np.log(present / absent)


@torch.no_grad()
def predict(head: ConceptHead, features: np.ndarray, batch: int = 256) -> np.ndarray:
    head.eval()
    return np.concatenate([torch.sigmoid(head(torch.from_numpy(features[i : i + batch].astype(np.float32)))).numpy()
                           for i in range(0, len(features), batch)])


def concept_config(names: tuple[str, ...] | None = None, **kwargs) -> ConceptConfig:
    """The lexicon's categories (or ``names`` among them) with their word groups."""
    names = tuple(names or CATEGORIES)
    return ConceptConfig(names=names, words=tuple(tuple(CATEGORIES[n]) for n in names),
                         **kwargs)


def attach_heads(model: Captioner, concepts: ConceptConfig) -> Captioner:
    """Give ``model`` a fresh concept head for ``concepts`` (in place)."""
    model.cfg = dataclasses.replace(model.cfg, concepts=concepts)
    channels = model.cfg.vision.channels
    model.concepts = ConceptHead(channels, len(concepts.names), concepts.hidden, concepts.sharpness)
    return model


def existence_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The "I'm not sure" threshold on the answer's probability (max(p, 1-p)) that maximises
    right minus DEFAULT_WRONG_COST (2) x wrong answers over every labelled (image, concept)
    pair, each concept weighted equally on both answers (balanced, as the POPE-style
    evaluation)."""
    questions, answers = [], {}
    for k in range(labels.shape[1]):
        for truth in (0, 1):
            rows = np.flatnonzero(labels[:, k] == truth)
            for row in rows[:40]:  # as many per concept and answer as the evaluation set asks
                qid = len(questions)
                questions.append({"question_id": qid, "answers": ["yes" if truth else "no"]})
                p = float(probs[row, k])
                answers[qid] = ("yes", p) if p >= 0.5 else ("no", 1 - p)
    return choose_threshold(questions, answers, DEFAULT_WRONG_COST)


def train_concepts(model_dir: str, data_dir: str, out: str, cache_dir: str, epochs: int = 8, lr: float = 1e-3,
                   unfamiliar_quantile: float = 0.98, ban_below: float = 0.6,
                   seed: int = 0, hidden: int = 256, sharpness: float = 0.5,
                   present_min: int = PRESENT_MIN, mirror_views: bool = False, hard_negatives: float = 0.0) -> dict:
    """MODEL_DIR + the dataset's train/dev captions -> OUT: the same model with a trained
    concept head and its thresholds tuned on dev. ``present_min``: captions that must name a
    category for a training photo to count as showing it (dev keeps the lexicon's rule);
    ``mirror_views``: train each batch row on the photo's or, half the time, its mirror image's
    features; ``hard_negatives``: the strength of ``hard_negative_weights`` (0: none). Dev is
    scored on both views' averaged log-odds either way, as questions are answered.
    -> report dict."""
    import os

    from edgevlm.data.coco import load_coco_captions
    from edgevlm.model_io import load_model, save_model
    from edgevlm.features import cached_features

    model, tokenizer = load_model(model_dir)
    cfg = concept_config(ban_below=ban_below, hidden=hidden,
                         sharpness=sharpness)
    attach_heads(model, cfg)
    splits = {}
    for split in ("train", "dev"):
        items = load_coco_captions(os.path.join(data_dir, f"captions_{split}.json"))
        paths = [i.path for i in items]
        features = cached_features(paths, model.encoder, model.cfg, cache_dir, split)
        mirrors = (cached_features(paths, model.encoder, model.cfg, cache_dir, split, flip=True)
                   if mirror_views or split == "dev" else None)
        splits[split] = (features, mirrors, concept_labels(items, cfg.names, present_min if split == "train" else PRESENT_MIN))
    (train_x, train_mirror, train_y), (dev_x, dev_mirror, dev_y) = splits["train"], splits["dev"]
    weights = hard_negative_weights(train_y, hard_negatives) if hard_negatives > 0 else None
    history = train_head(model.concepts, train_x, train_y, epochs=epochs, lr=lr, seed=seed,
                         mirror_x=train_mirror, weights=weights)
    photo_probs = predict(model.concepts, dev_x)
    # questions read both views (the runtime's question_sight): the existence threshold and the
    # dev report from their averaged log-odds
    dev_probs = with_mirror_view(photo_probs, predict(model.concepts, dev_mirror))
    per_concept = {cfg.names[k]: round(float(v), 4) for k, v in balanced_accuracy(dev_probs, dev_y).items()}
    abstain = existence_threshold(dev_probs, dev_y)
    # Hedge captions of the few dev photos (1 - quantile) that show nothing the head knows:
    # the photo's own novelty, as the vision graph gives it to every caption.
    unfamiliar = float(np.quantile(1.0 - photo_probs.max(axis=1), unfamiliar_quantile))
    model.cfg = dataclasses.replace(model.cfg, concepts=dataclasses.replace(
        cfg, abstain_below=round(abstain, 4), unfamiliar_above=round(unfamiliar, 4)))
    macro = float(np.mean(list(per_concept.values()))) if per_concept else None  # None: too few dev photos
    report = {"dev_macro_balanced_accuracy": None if macro is None else round(macro, 4),
              "dev_concepts_scored": len(per_concept), "dev_per_concept": per_concept,
              "abstain_below": round(abstain, 4), "abstain_rule": abstention_rule(DEFAULT_WRONG_COST),
              "unfamiliar_above": round(unfamiliar, 4),
              "ban_below": ban_below, "loss": [round(x, 4) for x in history], "epochs": epochs, "lr": lr,
              "hidden": hidden, "sharpness": sharpness, "present_min": present_min, "mirror_views": mirror_views,
              "hard_negatives": hard_negatives,
              "init_from": os.path.abspath(model_dir)}
    save_model(model, tokenizer, out, dtype=torch.float16, extra={"concepts": report})
    return report
