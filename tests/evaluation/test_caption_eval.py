"""Caption hallucination and consistency in ``eval --data``: the report on hand-made
captions, the new JSON keys from a tiny model and engine, and the PyTorch model grounding
captions and answering existence questions with its concept head exactly as the engine."""

import dataclasses
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from edgevlm.cli.main import cli
from edgevlm.data.coco import CaptionedImage
from edgevlm.errors import EdgeVLMError
from edgevlm.evaluation.caption_eval import caption_report
from tests.support import SAMPLES

DOG_REFS = ("a dog runs on the grass", "a brown dog plays on a lawn", "a dog in a green field")
ITEMS = [CaptionedImage(1, "a.jpg", DOG_REFS), CaptionedImage(2, "b.jpg", DOG_REFS),
         CaptionedImage(3, "c.jpg", DOG_REFS)]
CAPTIONS = ["a dog and a cat on the grass", "a dog on the green green grass", "something blue"]
PHOTOS = [os.path.join(SAMPLES, n) for n in ("coffee.jpg", "chelsea.jpg", "astronaut.jpg")]


def test_report_has_chair_repeats_and_consistency_from_ask():
    asked = []

    def ask(key, questions):
        asked.append((key, questions))
        return [("no" if "cat" in q else "yes", 0.9, False) for q in questions]

    report = caption_report(ITEMS, CAPTIONS, ask)
    assert report["chair"]["mentions_hallucinated"] == 1 and report["chair"]["hallucinated_by_category"] == {"cat": 1}
    assert report["repeated_words"]["repeated"] == 1 and report["repeated_words"]["examples"] == [CAPTIONS[1]]
    # The caption naming nothing is not asked about; keys are the items' indexes.
    assert [key for key, _ in asked] == [0, 1]
    assert asked[0][1] == ["is there a cat?", "is there a dog?", "is there grass?"]
    c = report["consistency"]
    assert c["questions"] == 5 and c["yes"] == 4 and c["consistency"] == pytest.approx(4 / 5)
    assert c["inconsistent_examples"] == [{"key": 0, "caption": CAPTIONS[0], "question": "is there a cat?",
                                           "answer": "no"}]


def test_without_ask_consistency_is_none_and_lengths_must_match():
    assert caption_report(ITEMS, CAPTIONS)["consistency"] is None
    with pytest.raises(ValueError, match="2 captions for 3 images"):
        caption_report(ITEMS, CAPTIONS[:2])


@pytest.mark.parametrize("source", ["--model", "--engine"])
def test_eval_data_json_has_the_new_keys(tiny_dataset, tiny_model_dir, tiny_engine_dir, source):
    data = os.path.join(tiny_dataset, "captions_dev.json")
    folder = tiny_model_dir if source == "--model" else tiny_engine_dir
    result = CliRunner().invoke(cli, ["eval", "--data", data, source, folder, "--no-meteor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"CIDEr", "BLEU-4", "beam", "seconds", "images"} <= set(report)  # the old keys stay
    assert report["source"] == folder and report["images"] == 3
    assert {"chair_i", "chair_s", "person_dog_hallucination_rate"} <= set(report["chair"])
    assert report["repeated_words"]["captions"] == 3
    assert report["consistency"]["captions"] == 3 and report["consistency_seconds"] >= 0
    skipped = CliRunner().invoke(cli, ["eval", "--data", data, source, folder, "--no-meteor", "--json",
                                       "--no-consistency", "--limit", "1"])
    assert skipped.exit_code == 0, skipped.output
    report = json.loads(skipped.stdout)
    assert report["consistency"] is None and report["consistency_seconds"] is None and report["images"] == 1


def test_eval_data_text_output(tiny_dataset, tiny_engine_dir):
    data = os.path.join(tiny_dataset, "captions_dev.json")
    result = CliRunner().invoke(cli, ["eval", "--data", data, "--engine", tiny_engine_dir, "--no-meteor",
                                      "--no-consistency"])
    assert result.exit_code == 0, result.output
    assert "CHAIR-i:" in result.stdout and "repeated words:" in result.stdout
    assert "consistency: skipped (--no-consistency)" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "M", "--engine", "E"], "--data evaluates either --engine DIR or --model DIR, not both"),
    (["--tune-abstention"], "--tune-abstention goes with --vqa"),
])
def test_eval_data_bad_combinations(tiny_dataset, args, message):
    data = os.path.join(tiny_dataset, "captions_dev.json")
    result = CliRunner().invoke(cli, ["eval", "--data", data] + args)
    assert result.exit_code == 1 and f"error: {message}" in result.output


def test_no_consistency_goes_with_data(tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--vqa", str(tmp_path / "q.json"), "--no-consistency"])
    assert result.exit_code == 1 and "error: --no-consistency goes with --data" in result.output


def test_a_captioning_only_model_needs_no_consistency(tmp_path):
    from edgevlm.config import DecoderConfig, ModelConfig, PreprocessConfig
    from edgevlm.evaluation.caption_eval import model_ask
    from edgevlm.models.captioner import Captioner
    from edgevlm.tokenizer_training import train_tokenizer
    from tests.support import CAPTIONS as TRAIN

    tokenizer = train_tokenizer(TRAIN, 1)  # no [SEP]: never taught to answer
    cfg = ModelConfig(decoder=DecoderConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_layers=1, n_heads=2,
                                            d_ff=32, max_len=12), preprocess=PreprocessConfig(image_size=64))
    with pytest.raises(EdgeVLMError, match="answers no questions.*--no-consistency"):
        model_ask(Captioner(cfg), tokenizer, PHOTOS)


# --------------------------------------------------------------------------- concept head parity
@pytest.fixture(scope="module")
def concept_pair(tmp_path_factory, tiny_model_master):
    """A tiny model with a concept head (and novelty), and its engine."""
    from edgevlm.export.onnx_export import export_engine
    from edgevlm.training.concept_training import train_concepts
    from tests.support import make_coco_dataset

    root = tmp_path_factory.mktemp("concept_pair")
    make_coco_dataset(str(root / "data"), "train", 6, seed=0)
    make_coco_dataset(str(root / "data"), "dev", 3, seed=1)
    model_dir = str(root / "model")
    train_concepts(tiny_model_master, str(root / "data"), model_dir, str(root / "cache"), epochs=2)
    engine_dir = str(root / "engine")
    export_engine(model_dir, engine_dir)
    return model_dir, engine_dir


def _with_ban(model, engine, ban_below):
    c = model.cfg.concepts
    model.cfg = dataclasses.replace(model.cfg, concepts=dataclasses.replace(c, ban_below=ban_below))
    engine.manifest = engine.manifest.replace(concepts=dataclasses.replace(engine.manifest.concepts, ban_below=ban_below))


@pytest.mark.parametrize("beam", [1, 2])
def test_pytorch_captions_are_grounded_as_the_engine(concept_pair, beam):
    from edgevlm.generate import caption_files
    from edgevlm.data.object_lexicon import CATEGORIES
    from edgevlm.evaluation.caption_eval import engine_captions
    from edgevlm.model_io import load_model
    from edgevlm.runtime.engine import CaptionEngine

    model_dir, engine_dir = concept_pair
    model, tokenizer = load_model(model_dir)
    engine = CaptionEngine(engine_dir)
    assert model.concepts is not None
    for ban_below in (model.cfg.concepts.ban_below, 1.01):  # as trained, then every concept banned
        _with_ban(model, engine, ban_below)
        ours = caption_files(model, tokenizer, PHOTOS, beam)
        assert ours == engine_captions(engine, PHOTOS, beam)
    concept_words = {w for group in CATEGORIES.values() for w in group}
    assert not any(set(c.split()) & concept_words for c in ours), ours


def test_pytorch_answers_existence_from_the_head_as_the_engine(concept_pair, tmp_path):
    import torch

    from edgevlm.evaluation.caption_eval import engine_ask, model_ask
    from edgevlm.evaluation.vqa_eval import ModelAnswerer, model_answers
    from edgevlm.model_io import load_model
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.preprocess import read_image_bgr
    from edgevlm.features import load_pixels

    model_dir, engine_dir = concept_pair
    model, tokenizer = load_model(model_dir)
    questions = ["is there a dog?", "do you see any cars?", "what color is the dog?", "how many dogs are there?",
                 "is there a unicorn?"]
    pixels = load_pixels(PHOTOS[1], model.cfg)
    found = ModelAnswerer(model, tokenizer)(pixels, questions)
    assert [source for _, _, source in found[:3]] == ["concepts", "concepts", "decoder"]
    assert found[4] == ("", 0.5, "unknown_object")  # no concept names it: no answer, the decoder not asked
    with torch.no_grad():
        p = torch.sigmoid(model.concepts(model.encoder_features(torch.from_numpy(pixels[None]))))[0]
    dog = model.cfg.concepts.names.index("dog")
    assert found[0][0] == ("yes" if p[dog] >= 0.5 else "no")
    assert found[0][1] == pytest.approx(max(float(p[dog]), 1 - float(p[dog])))
    entries = [{"question_id": i, "question": q, "path": PHOTOS[1]} for i, q in enumerate(questions)]
    answers, sources, existence = model_answers(model_dir, entries)
    assert answers == {i: (a, prob) for i, (a, prob, _) in enumerate(found)}
    assert sources == {i: source for i, (_, _, source) in enumerate(found)}
    assert existence == model.cfg.concepts.abstain_below
    # "how many dogs": "none" exactly where "is there a dog?" says "no", else the decoder's count.
    assert (found[3][0] == "none") == (found[0][0] == "no") and found[3][2] == ("concepts" if found[0][0] == "no"
                                                                               else "decoder")
    # The engine answers every question as the PyTorch model (ids, routing; probabilities within 1e-4).
    for (text, probability, source), theirs in zip(found, CaptionEngine(engine_dir).answer_image(
            read_image_bgr(PHOTOS[1]), questions, abstain_below=0.0)):
        assert (text, source) == (theirs.answer, theirs.source) and probability == pytest.approx(theirs.probability, abs=1e-4)
    # The consistency asks of model and engine agree, abstentions included.
    engine = CaptionEngine(engine_dir)
    ours, theirs = model_ask(model, tokenizer, PHOTOS)(1, questions), engine_ask(engine, PHOTOS)(1, questions)
    for (t1, p1, a1), (t2, p2, a2) in zip(ours, theirs):
        assert (t1, a1) == (t2, a2) and p1 == pytest.approx(p2, abs=1e-4)


def test_grounded_probabilities_are_the_same_in_pytorch_and_the_engine(concept_pair, monkeypatch):
    """The tiny decoder never ends an answer (probability 0, which any scaling keeps 0): both
    paths' decoders are given the same answer at 0.8, so the head's weighting is compared."""
    import math

    import edgevlm.generate
    import edgevlm.runtime.engine
    from edgevlm.evaluation.vqa_eval import ModelAnswerer
    from edgevlm.features import load_pixels
    from edgevlm.model_io import load_model
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.preprocess import read_image_bgr
    from edgevlm.runtime.search import Answer

    model_dir, engine_dir = concept_pair
    model, tokenizer = load_model(model_dir)
    word = next(i for i in range(tokenizer.eos_id + 1, tokenizer.vocab_size) if tokenizer.decode([i]).isalpha())
    fixed = lambda *args, **kwargs: [Answer([word], math.log(0.8))]  # noqa: E731
    monkeypatch.setattr(edgevlm.generate, "answer_from_visual", fixed)
    monkeypatch.setattr(edgevlm.runtime.engine, "answer_search", fixed)
    questions = ["what color is the dog?", "how many men are there?", "what is happening?"]
    ours = ModelAnswerer(model, tokenizer)(load_pixels(PHOTOS[1], model.cfg), questions)
    theirs = CaptionEngine(engine_dir).answer_image(read_image_bgr(PHOTOS[1]), questions, abstain_below=0.0)
    for (text, probability, source), answer in zip(ours, theirs):
        assert (text, source) == (answer.answer, answer.source)
        assert probability == pytest.approx(answer.probability, abs=1e-4)
    assert ours[2][1] == pytest.approx(0.8)  # nothing presupposed: the decoder's own
    assert ours[0][1] < 0.8  # weighed by P(dog) < 1


def test_a_model_without_a_head_captions_as_before(tiny_model_master):
    import torch

    from edgevlm.generate import TorchStepper, concept_word_ids, generate_from_pixels, search_settings
    from edgevlm.model_io import load_model
    from edgevlm.runtime.search import beam_search
    from edgevlm.features import load_pixels

    model, tokenizer = load_model(tiny_model_master)
    assert model.concepts is None and concept_word_ids(model, tokenizer) is None
    pixels = torch.from_numpy(np.stack([load_pixels(p, model.cfg) for p in PHOTOS]))
    settings = search_settings(model.cfg, 2)
    with torch.no_grad():
        visual, _ = model.encode(pixels)
        before = beam_search(TorchStepper(model, visual, 2, settings.max_new_tokens), len(PHOTOS),
                             model.cfg.bos_id, model.cfg.eos_id, settings)
    assert generate_from_pixels(model, pixels, settings, concept_word_ids(model, tokenizer)) == before



def test_questions_read_the_head_on_the_photo_and_its_mirror_image_in_pytorch_and_the_engine(concept_pair, monkeypatch):
    """Existence answers come from the photo's and its mirror image's P(present), log-odds
    averaged (grounding.with_mirror_view), alike in PyTorch and the engine; a question that
    reads no concept costs no second vision run. The tiny random encoder's features barely
    change with the picture, so the mirror view's probabilities are replaced by fixed ones
    (after checking it was the mirror image that was seen)."""
    import torch

    import edgevlm.generate
    from edgevlm.evaluation.vqa_eval import ModelAnswerer
    from edgevlm.features import load_pixels
    from edgevlm.model_io import load_model
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.mirror_view import with_mirror_view
    from edgevlm.runtime.preprocess import read_image_bgr

    model_dir, engine_dir = concept_pair
    model, tokenizer = load_model(model_dir)
    names = ("dog", "car", "ball", "horse")
    ks = [model.cfg.concepts.names.index(name) for name in names]
    questions = [f"is there a {name}?" for name in names]
    mirror_probs = np.full((1, len(model.cfg.concepts.names)), 0.5, np.float32)
    mirror_probs[0, ks] = [0.99, 0.01, 0.7, 0.2]

    def expected(plain):
        both = with_mirror_view(plain, mirror_probs)[0]
        return [("yes", pytest.approx(float(both[k]), abs=1e-4)) if both[k] >= 0.5
                else ("no", pytest.approx(1 - float(both[k]), abs=1e-4)) for k in ks]

    # PyTorch: the second encoding is of the mirrored pixels; its probabilities are replaced.
    pixels = load_pixels(PHOTOS[1], model.cfg)
    seen, probs = [], []
    encode, head = model.encoder_features, edgevlm.generate.concept_probs
    monkeypatch.setattr(model, "encoder_features", lambda x: seen.append(x.numpy().copy()) or encode(x))
    monkeypatch.setattr(edgevlm.generate, "concept_probs",
                        lambda m, f: probs.append(head(m, f)) or (probs[0] if len(probs) == 1 else mirror_probs))
    ours = ModelAnswerer(model, tokenizer)(pixels, questions)
    assert len(seen) == 2 and np.array_equal(seen[1], seen[0][..., ::-1])
    assert [(text, p) for text, p, _ in ours] == expected(probs[0])
    # The engine: the same, its second vision run on the mirrored pixels.
    engine = CaptionEngine(engine_dir)
    runs, see = [], engine.see

    def spy(x):  # the mirror image's row (the last: alone, or after the photo's) gets mirror_probs
        runs.append(x.copy())
        sight = see(x)
        return dataclasses.replace(sight, concepts=np.concatenate([sight.concepts[:-1], mirror_probs]))

    engine.see = spy
    theirs = engine.answer_image(read_image_bgr(PHOTOS[1]), questions, abstain_below=0.0)
    assert len(runs) == 1 and len(runs[0]) == 2 and np.array_equal(runs[0][1], runs[0][0][..., ::-1])
    assert [(a.answer, a.probability) for a in theirs] == expected(see(runs[0][:1]).concepts)
    # question_sight's Sight comes back as it is: averaged once, no third view
    pixels1 = runs[0][:1]
    asked = engine.question_sight(pixels1, questions)
    assert engine.question_sight(pixels1, questions, asked) is asked and len(runs) == 2
    runs.clear()
    engine.see = see
    plain_sight = engine.see(pixels1)
    engine.see = spy
    with_sight = engine.question_sight(pixels1, questions, plain_sight)  # narration: the mirror alone, one more run
    assert len(runs) == 1 and np.array_equal(runs[0], pixels1[..., ::-1])
    assert with_sight.views_averaged and with_sight.mirror is None
    assert with_sight.concepts == pytest.approx(with_mirror_view(plain_sight.concepts, mirror_probs))
    runs.clear()
    engine.answer_image(read_image_bgr(PHOTOS[1]), ["what is happening?"], abstain_below=0.0)
    assert len(runs) == 1 and len(runs[0]) == 1  # nothing asked of the head: one view
    seen.clear()
    ModelAnswerer(model, tokenizer)(pixels, ["what is happening?"])
    assert len(seen) == 1  # the same in PyTorch


def test_bench_times_the_same_grounded_caption_as_its_pytorch_peer(concept_pair, tmp_path):
    """`edgevlm bench`'s runtime peer makes the caption the PyTorch peer makes: grounded by
    the concept head's bans (it once captioned without them, so the FP32 engine's ids never
    matched). Every concept banned (ban_below above 1) so that the bans change the caption."""
    import shutil

    from edgevlm.benchmark import runtime_peer, torch_peer
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.preprocess import read_image_bgr

    model_dir, engine_dir = (str(tmp_path / name) for name in ("model", "engine"))
    for source, target, name in ((concept_pair[0], model_dir, "config.json"), (concept_pair[1], engine_dir, "edgevlm.json")):
        shutil.copytree(source, target)
        path = os.path.join(target, name)
        with open(path) as f:
            settings = json.load(f)
        settings["concepts"]["ban_below"] = 1.01
        with open(path, "w") as f:
            json.dump(settings, f)
    image = read_image_bgr(PHOTOS[1])
    engine = CaptionEngine(engine_dir)
    ours, theirs = runtime_peer(engine, 1)(image), torch_peer(model_dir, 1, threads=1)(image)
    assert ours == theirs
    unbanned = engine.generate(engine.see(engine.preprocess(image)[None]).visual, engine.settings(1))[0]
    assert unbanned != ours  # the bans bite: a peer without them would differ


def test_the_existence_threshold_is_written_with_its_rule(concept_pair, tmp_path):
    import shutil

    from edgevlm.evaluation.vqa_eval import write_existence_threshold
    from edgevlm.runtime.engine import CaptionEngine

    _, engine_dir = concept_pair
    assert CaptionEngine(engine_dir).manifest.concepts.rule == ""  # engines from before the rule was recorded
    copy = str(tmp_path / "engine")
    shutil.copytree(engine_dir, copy)
    write_existence_threshold(copy, 0.614, "/data/pope_dev.json", 4356, wrong_cost=2.0)
    concepts = CaptionEngine(copy).manifest.concepts
    assert (concepts.abstain_below, concepts.tuned_on, concepts.tuned_questions) == (0.614, "pope_dev.json", 4356)
    assert concepts.rule == "maximise right - 2 x wrong answers (abstain scores 0)"
