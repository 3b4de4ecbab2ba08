"""The concept head end to end on a tiny model: training, the model folder, the exported
vision graph's extra outputs, and the engine answering existence questions from it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgevlm.data.coco import CaptionedImage
from edgevlm.data.object_lexicon import CATEGORIES


def test_labels_are_present_absent_or_unknown():
    from edgevlm.training.concept_training import UNKNOWN, concept_labels

    items = [CaptionedImage(1, "a.jpg", ("a dog runs", "a puppy plays", "a brown dog", "a dog on grass", "a dog")),
             CaptionedImage(2, "b.jpg", ("a man rides", "a person rides", "a man", "a man on a bike", "a man"))]
    labels = concept_labels(items, ("dog", "man", "grass"))
    assert labels[0].tolist() == [1, 0, UNKNOWN]  # grass: named once only (not most captions)
    assert labels[1].tolist() == [0, 1, 0]


def test_training_labels_can_count_a_category_named_by_fewer_captions():
    from edgevlm.training.concept_training import UNKNOWN, concept_labels

    items = [CaptionedImage(1, "a.jpg", ("a dog on grass", "a dog on the grass", "a dog", "a dog runs", "a dog"))]
    assert concept_labels(items, ("dog", "grass"))[0].tolist() == [1, UNKNOWN]  # the lexicon's rule: 3 of 5
    assert concept_labels(items, ("dog", "grass"), present_min=2)[0].tolist() == [1, 1]


def test_the_head_learns_from_the_mirror_views_it_is_given():
    """The class shows in channel 0 of the photos' features and in channel 1 of their
    mirrors': only a head that was shown the mirror rows can tell the classes apart on them."""
    import torch

    from edgevlm.models.concept_head import ConceptHead
    from edgevlm.training.concept_training import predict, train_head

    rng = np.random.default_rng(0)
    y = (rng.random((200, 1)) < 0.5).astype(np.int8)
    sign = 3.0 * (2 * y[:, :, None] - 1)  # one channel: LayerNorm would erase a shift of them all
    photos, mirrors = rng.normal(size=(200, 8, 2, 2)), rng.normal(size=(200, 8, 2, 2))
    photos[:, 0] += sign
    mirrors[:, 1] += sign
    photos, mirrors = photos.astype(np.float16), mirrors.astype(np.float16)
    accuracy = {}
    for given in (None, mirrors):
        torch.manual_seed(0)
        head = ConceptHead(8, 1, hidden=4)
        train_head(head, photos, y, epochs=20, lr=3e-2, mirror_x=given)
        accuracy[given is not None] = [((predict(head, x) >= 0.5) == (y == 1)).mean() for x in (photos, mirrors)]
    assert accuracy[False][1] < 0.8, accuracy  # never shown the mirrors: no better than chance on them
    assert min(accuracy[True]) > 0.95, accuracy  # shown both: right on both (not the mirrors only)


def test_hard_negatives_weigh_the_photos_where_the_category_is_expected():
    """Frisbees come with dogs: of the photos without one, those with a dog weigh more for
    "frisbee" than those without, each category's absent pairs keep a mean weight of 1 (the
    prior shift still calibrates), and present and unknown pairs weigh 1."""
    from edgevlm.training.concept_training import UNKNOWN, hard_negative_weights

    # columns: dog, frisbee, cat
    labels = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1], [0, UNKNOWN, 1]], np.int8)
    w = hard_negative_weights(labels, strength=1.0)
    frisbee_absent = labels[:, 1] == 0
    assert w[2, 1] == w[3, 1] > 1.0 > w[4, 1] == w[5, 1]  # dog photos vs cat photos
    assert w[frisbee_absent, 1].mean() == pytest.approx(1.0)
    assert (w[labels == 1] == 1.0).all() and w[6, 1] == 1.0  # present, unknown
    assert (hard_negative_weights(labels, strength=0.0) == 1.0).all()
    capped = hard_negative_weights(labels, strength=100.0, cap=2.0)
    assert capped[frisbee_absent, 1].max() / capped[frisbee_absent, 1].min() == pytest.approx(2.0)
    assert capped[frisbee_absent, 1].mean() == pytest.approx(1.0)  # rescaled after the cap


@pytest.mark.parametrize("strength, cap, message", [
    (float("inf"), 5.0, "hard-negative strength must be a finite number >= 0, not inf"),
    (float("nan"), 5.0, "hard-negative strength must be a finite number >= 0, not nan"),
    (-1.0, 5.0, "hard-negative strength must be a finite number >= 0, not -1.0"),
    (1.0, 0.5, "the hard-negative weight cap must be a finite number >= 1, not 0.5"),
])
def test_hard_negative_weights_refuse_strengths_that_break_the_loss(strength, cap, message):
    from edgevlm.errors import EdgeVLMError
    from edgevlm.training.concept_training import hard_negative_weights

    with pytest.raises(EdgeVLMError, match=message.replace(".", r"\.")):
        hard_negative_weights(np.array([[1, 0], [0, 1]], np.int8), strength, cap)


def test_train_head_refuses_weights_of_another_shape():
    from edgevlm.errors import EdgeVLMError
    from edgevlm.models.concept_head import ConceptHead
    from edgevlm.training.concept_training import train_head

    x, y = np.zeros((4, 8, 2, 2), np.float16), np.zeros((4, 2), np.int8)
    with pytest.raises(EdgeVLMError, match=r"must have the labels' shape \(4, 2\), not \(2,\)"):
        train_head(ConceptHead(8, 2, hidden=0), x, y, epochs=1, weights=np.ones(2, np.float32))


def test_weights_scale_each_pairs_loss():
    """A weight of 0 on a pair removes it from training: a concept whose every pair weighs
    0 keeps its initial outputs, while the other concept learns."""
    import torch

    from edgevlm.models.concept_head import ConceptHead
    from edgevlm.training.concept_training import predict, train_head

    rng = np.random.default_rng(0)
    y = (rng.random((100, 2)) < 0.5).astype(np.int8)
    x = rng.normal(size=(100, 8, 2, 2))
    x[:, 0] += 3.0 * (2 * y[:, 0, None, None] - 1)
    x[:, 1] += 3.0 * (2 * y[:, 1, None, None] - 1)
    weights = np.ones((100, 2), np.float32)
    weights[:, 1] = 0.0
    torch.manual_seed(0)
    head = ConceptHead(8, 2, hidden=0)  # linear: the two concepts share no weights
    before = head.mlp.weight[1].detach().clone()
    train_head(head, x.astype(np.float16), y, epochs=20, lr=3e-2, weight_decay=0.0, weights=weights)
    accuracy = ((predict(head, x.astype(np.float16)) >= 0.5) == (y == 1)).mean(0)
    assert accuracy[0] > 0.95, accuracy
    assert torch.equal(head.mlp.weight[1].detach(), before)


def test_bias_shift_makes_half_mean_even_odds():
    """A head that learned nothing but the base rate scores ~0.5 after the prior shift
    (exactly 0.5 but for the shrinkage of rare categories towards even odds)."""
    import torch

    from edgevlm.models.concept_head import ConceptHead
    from edgevlm.training.concept_training import predict, train_head

    # The head's initial weights come from torch's global generator: seeded here, or the result
    # depends on what earlier tests drew from it (a head fit to pure noise can overfit it: the
    # mean drifted 0.004-0.07 from the shifted base rate over seeds 0-7, and 0.15 in one order).
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8, 2, 2)).astype(np.float16)  # no signal at all
    y = (rng.random((200, 2)) < np.array([0.1, 0.7])).astype(np.int8)  # rare and common concept
    head = ConceptHead(8, 2, hidden=4)
    train_head(head, x, y, epochs=30, lr=3e-2)
    probs = predict(head, x)
    pos, neg = y.sum(0), (1 - y).sum(0)
    # Base rate only, shifted by the shrunk prior: even odds but for the 30-image shrinkage.
    expected = 1 / (1 + np.exp(-(np.log(pos / neg) - np.log((pos + 30) / (neg + 30)))))
    assert np.abs(probs.mean(0) - expected).max() < 0.05, (probs.mean(0), expected)
    present, absent = y.sum(0) + 30, (1 - y).sum(0) + 30  # shrunk by 30 images a side, as the shift
    assert np.allclose(head.bias_shift.numpy(), np.log(present / absent), atol=1e-5)


def test_unfamiliarity_is_high_when_no_concept_is_clearly_there():
    import torch

    from edgevlm.models.concept_head import unfamiliarity

    probs = torch.tensor([[0.98, 0.1, 0.3], [0.2, 0.1, 0.3]])
    assert torch.allclose(unfamiliarity(probs), torch.tensor([0.02, 0.7]))


@pytest.fixture(scope="module")
def concept_model(tiny_model_master, tmp_path_factory):
    """The tiny model with both heads trained for 2 epochs (built once: it is read only)."""
    from edgevlm.training.concept_training import train_concepts
    from tests.support import make_coco_dataset

    root = tmp_path_factory.mktemp("concepts")
    data = str(root / "data")
    make_coco_dataset(data, "train", 6, seed=0)
    make_coco_dataset(data, "dev", 3, seed=1)
    out = str(root / "with_concepts")
    report = train_concepts(tiny_model_master, data, out, str(root / "cache"), epochs=2)
    return out, report


def test_train_concepts_writes_a_model_with_both_heads(concept_model):
    from edgevlm.model_io import load_model

    path, report = concept_model
    model, _ = load_model(path)
    assert model.cfg.concepts.names == tuple(CATEGORIES)
    assert model.cfg.concepts.words[model.cfg.concepts.names.index("dog")] == CATEGORIES["dog"]
    assert model.concepts is not None
    assert 0.5 <= report["abstain_below"] <= 1.0 + 1e-6 and report["unfamiliar_above"] > 0


def test_train_concepts_on_mirror_views_with_hard_negatives_caches_the_mirrors_and_reports_its_recipe(tiny_model_master, tmp_path):
    import glob

    from edgevlm.model_io import load_model
    from edgevlm.training.concept_training import train_concepts
    from tests.support import make_coco_dataset

    data = str(tmp_path / "data")
    make_coco_dataset(data, "train", 6, seed=0)
    make_coco_dataset(data, "dev", 3, seed=1)
    cache = tmp_path / "cache"
    report = train_concepts(tiny_model_master, data, str(tmp_path / "out"), str(cache), epochs=1, present_min=2,
                            mirror_views=True, hard_negatives=1.0)
    assert report["present_min"] == 2 and report["mirror_views"] is True and report["hard_negatives"] == 1.0
    assert len(glob.glob(str(cache / "features-train-*.npy"))) == 2  # the photos' and the mirrors'
    assert len(glob.glob(str(cache / "features-dev-*.npy"))) == 2  # dev is scored on both views
    assert load_model(str(tmp_path / "out"))[0].concepts is not None


def test_engine_answers_existence_from_the_head_and_grounds_captions(concept_model, tmp_path):
    from edgevlm.export.onnx_export import export_engine
    from edgevlm.runtime.engine import CaptionEngine

    model_dir, _ = concept_model
    engine_dir = str(tmp_path / "engine")
    manifest = export_engine(model_dir, engine_dir)
    assert [o.name for o in manifest.graph("vision").outputs] == [
        "visual_tokens", "pooled", "concept_probs", "novelty"]
    assert manifest.concepts.names[0] == "person" and manifest.concepts.ban_below > 0
    engine = CaptionEngine(engine_dir)
    rng = np.random.default_rng(0)
    image = (rng.integers(0, 255, size=(64, 64, 3))).astype(np.uint8)
    sight = engine.see(engine.preprocess(image)[None])
    assert sight.concepts.shape == (1, len(CATEGORIES)) and ((sight.concepts >= 0) & (sight.concepts <= 1)).all()
    assert sight.novelty.shape == (1,)
    dog = manifest.concepts.names.index("dog")
    existence, other = engine.answer_sight(sight, ["is there a dog?", "what color is the dog?"], abstain_below=0.0)
    assert existence.source == "concepts" and other.source == "decoder"
    p = float(sight.concepts[0, dog])
    assert existence.answer == ("yes" if p >= 0.5 else "no")
    assert existence.probability == pytest.approx(max(p, 1 - p), abs=1e-6)
    # "how many dogs": the decoder's count (as it answers alone) weighed against the head's "none".
    count = engine.answer_visual(sight.visual, ["how many dogs are there?"], abstain_below=0.0)[0]
    counted = engine.answer_sight(sight, ["how many dogs are there?"], abstain_below=0.0)[0]
    if p < 0.5:  # "is there a dog?" says no
        assert (counted.answer, counted.source) == ("none", "concepts")
        assert counted.probability == pytest.approx(1 - p, abs=1e-6)
    else:
        assert (counted.answer, counted.source) == (count.answer, "decoder")
        assert counted.probability == pytest.approx(p * count.probability, abs=1e-6)
    # The same image with the head made sure there is no dog / a dog: "none" / the count.
    for p_dog, expected in ((0.01, "none"), (1.0, count.answer)):
        sure = dataclasses.replace(sight, concepts=np.where(np.arange(len(CATEGORIES)) == dog, p_dog, sight.concepts))
        assert engine.answer_sight(sure, ["how many dogs are there?"], abstain_below=0.0)[0].answer == expected
    # "what color is the dog?": the decoder's colour at P(dog) x P(colour | dog), never "I don't
    # see"; its "no" to "is the dog black?" at 1 - P(dog) + P(dog) x P(no | dog). The tiny
    # decoder never ends an answer (probability 0), so the decoder is given fixed answers here.
    from edgevlm.runtime.engine import VQAAnswer

    decoded = {"what color is the dog?": VQAAnswer("black", "black", 0.8, False),
               "is the dog black?": VQAAnswer("no", "no", 0.7, False)}
    engine.answer_visual = lambda visual, questions, abstain_below=None: [decoded[q] for q in questions]
    for p_dog in (0.01, 0.9):
        sure = dataclasses.replace(sight, concepts=np.where(np.arange(len(CATEGORIES)) == dog, p_dog, sight.concepts))
        colour, no = engine.answer_sight(sure, ["what color is the dog?", "is the dog black?"], abstain_below=0.0)
        assert (colour.answer, colour.source, no.answer, no.source) == ("black", "decoder", "no", "decoder")
        assert colour.probability == pytest.approx(p_dog * 0.8) and no.probability == pytest.approx(1 - p_dog * 0.3)
    del engine.answer_visual
    # "none" at 0.55 is below an existence threshold of 0.6: not said.
    engine.manifest = engine.manifest.replace(concepts=dataclasses.replace(engine.manifest.concepts, abstain_below=0.6))
    below = engine.answer_sight(dataclasses.replace(sight, concepts=np.full_like(sight.concepts, 0.45)),
                                ["how many dogs are there?"])[0]
    assert below.abstained and below.text == "I'm not sure" and below.answer == "none"
    assert below.probability == pytest.approx(0.55, abs=1e-6)
    # Every concept banned: the caption cannot name any of them.
    engine.manifest = engine.manifest.replace(concepts=dataclasses.replace(engine.manifest.concepts, ban_below=1.01))
    caption = engine.describe_sight(sight)[0].caption
    named = set(caption.split()) & {w for group in CATEGORIES.values() for w in group}
    assert not named, caption


def test_engine_admits_what_it_never_learnt_and_claims_on_unfamiliar_images_only_when_sure(concept_model, tmp_path):
    from edgevlm.export.onnx_export import export_engine
    from edgevlm.runtime.engine import CaptionEngine, VQAAnswer
    from edgevlm.runtime.manifest import Novelty

    model_dir, _ = concept_model
    engine_dir = str(tmp_path / "engine")
    export_engine(model_dir, engine_dir)
    engine = CaptionEngine(engine_dir)
    image = np.random.default_rng(0).integers(0, 255, size=(64, 64, 3)).astype(np.uint8)
    sight = engine.see(engine.preprocess(image)[None])

    def no_decoder(visual, questions, abstain_below=None):
        raise AssertionError(f"the decoder was asked {questions}")

    # "is there a unicorn?": no concept names it, so "I'm not sure" and why, p 0.5, the decoder never run
    engine.answer_visual = no_decoder
    for question, thing in (("is there a unicorn?", "a unicorn"), ("do you see my keys?", "keys")):
        for threshold in (None, 0.0):
            answer = engine.answer_sight(sight, [question], abstain_below=threshold)[0]
            assert answer == VQAAnswer(f"I'm not sure: I have not learned to recognise {thing}", "", 0.5, True,
                                       "unknown_object")
    # An unfamiliar image (novelty above the manifest's limit): "yes" only when sure, "no" as ever.
    dog = engine.manifest.concepts.names.index("dog")
    engine.manifest = engine.manifest.replace(novelty=Novelty(unfamiliar_above=0.5), concepts=dataclasses.replace(
        engine.manifest.concepts, abstain_below=0.6))
    decoded = {"what is the dog doing?": VQAAnswer("running", "running", 0.99, False),
               "what is this?": VQAAnswer("a ball", "a ball", 0.85, False),
               "is it sunny?": VQAAnswer("no", "no", 0.8, False)}
    engine.answer_visual = lambda visual, questions, abstain_below=None: [decoded[q] for q in questions]
    questions = ["is there a dog?", "what is this?", "is it sunny?", "what is the dog doing?"]
    for p_dog, familiar, unfamiliar in (
            (0.8, ["yes", "a ball", "no", "running"], ["I'm not sure", "I'm not sure", "no", "I'm not sure"]),
            (0.95, ["yes", "a ball", "no", "running"], ["yes", "I'm not sure", "no", "running"]),  # 0.95 x 0.99 = 0.94
            (0.2, ["no", "a ball", "no", "I'm not sure"], ["no", "I'm not sure", "no", "I'm not sure"])):
        concepts = np.where(np.arange(sight.concepts.shape[1]) == dog, p_dog, 0.01).astype(np.float32)[None]
        for novelty, expected in ((0.1, familiar), (0.9, unfamiliar)):
            seen = dataclasses.replace(sight, concepts=concepts, novelty=np.array([novelty], np.float32))
            answers = engine.answer_sight(seen, questions)
            assert [a.text for a in answers] == expected, (p_dog, novelty)
            assert [a.answer for a in answers] == [("yes" if p_dog >= 0.5 else "no"), "a ball", "no", "running"]
    # The eval asks at threshold 0: what is held back then is held back at any threshold.
    seen = dataclasses.replace(sight, concepts=concepts * 0 + 0.8, novelty=np.array([0.9], np.float32))
    assert [a.abstained for a in engine.answer_sight(seen, questions, abstain_below=0.0)] == [True, True, False, True]


def test_validate_checks_the_heads_and_grounded_tokens(concept_model, tmp_path):
    from edgevlm.export.onnx_export import export_engine
    from edgevlm.export.validate import validate_engine

    model_dir, _ = concept_model
    engine_dir = str(tmp_path / "engine")
    export_engine(model_dir, engine_dir)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, size=(64, 80, 3)).astype(np.uint8) for _ in range(2)]
    report = validate_engine(engine_dir, model_dir, images)
    names = [c.name for c in report["outputs"]]
    assert "vision.concept_probs" in names and "vision.novelty" in names
    assert report["passed"], report
