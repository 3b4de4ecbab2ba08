"""VQA: vocabulary extension, prompts, the answer loss, ONNX answers equal to PyTorch's,
scoring and abstention, and the `ask` / `eval --vqa` commands on a tiny engine."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgevlm.cli.main import cli
from edgevlm.errors import EdgeVLMError
from edgevlm.metrics.vqa_metrics import choose_threshold, normalize_answer, score_answers
from edgevlm.generate import answer_from_visual
from edgevlm.model_io import load_model
from edgevlm.runtime.engine import NOT_SURE, CaptionEngine
from edgevlm.runtime.preprocess import read_image_bgr
from edgevlm.tokenizer_training import add_words, train_tokenizer
from edgevlm.training.trainer import answer_loss
from tests.support import CAPTIONS, SAMPLES, make_video

PHOTOS = [os.path.join(SAMPLES, n) for n in ("coffee.jpg", "chelsea.jpg", "astronaut.jpg")]
QUESTIONS = ["is there a dog?", "what color is the shirt?", "how many children are in the water?", "where is the man riding?"]


def test_added_words_keep_old_ids_and_are_whole_words():
    base = train_tokenizer(CAPTIONS, 1)
    grown = add_words(base, ["yes", "dog"])
    assert grown.vocab_size == base.vocab_size + 2  # "yes" and [SEP]; "dog" was known
    assert grown.encode("a dog runs") == base.encode("a dog runs")
    yes = grown.tokenizer.token_to_id("yes")
    assert grown.encode("yes") == [yes] and yes not in grown.encode("eyes")  # no substring match
    prompt = grown.question_prompt("Is there a DOG?", 20)
    assert prompt == [grown.bos_id] + grown.encode("is there a dog") + [grown.sep_id]
    with pytest.raises(EdgeVLMError, match="not trained to answer questions"):
        base.question_prompt("is there a dog?", 20)
    with pytest.raises(EdgeVLMError, match="has no words"):
        grown.question_prompt("?!", 20)


def test_answer_loss_reads_only_the_answer_tokens(tiny_config):
    from edgevlm.models.captioner import Captioner

    torch.manual_seed(0)
    model = Captioner(tiny_config).eval()
    cross_k, cross_v = model.decoder.cross_kv(model.projector(torch.randn(1, tiny_config.vision.channels, 2, 2)))
    ids = torch.tensor([[2, 5, 6, 7, 4, 9, 3]])  # bos q q q sep | answer eos
    prefix = torch.tensor([5])
    loss = answer_loss(model, cross_k, cross_v, ids, prefix, torch.tensor([0]), pad_id=0)
    logits, _, _ = model.decoder(ids[:, :-1], cross_k, cross_v, prefix_len=prefix)
    expected = torch.nn.functional.cross_entropy(logits[0, 4:], ids[0, 5:])  # sep -> answer, answer -> eos
    torch.testing.assert_close(loss, expected)


def test_onnx_answers_equal_pytorch(tiny_engine_master, tiny_model_master):
    engine = CaptionEngine(tiny_engine_master)
    # No concept head: "how many children ..." too is the decoder's alone, as before heads.
    assert engine.manifest.concepts is None
    model, tokenizer = load_model(tiny_model_master)
    banned = engine.manifest.generation.banned_ids
    capacity = model.cfg.decoder.max_len
    for path in PHOTOS:
        image = read_image_bgr(path)
        ours = engine.answer_image(image, QUESTIONS, abstain_below=0.0)
        visual, _ = model.encode(torch.from_numpy(engine.preprocess(image)[None]))
        for question, answer in zip(QUESTIONS, ours):
            prompt = np.array([tokenizer.question_prompt(question, capacity)])
            theirs = answer_from_visual(model, visual, prompt, banned)[0]
            assert answer.answer == tokenizer.decode(theirs.ids)
            assert answer.probability == pytest.approx(theirs.probability, rel=1e-3, abs=1e-6)


def test_low_probability_answers_become_not_sure(tiny_engine_master):
    engine = CaptionEngine(tiny_engine_master)
    image = read_image_bgr(PHOTOS[0])
    confident = engine.answer_image(image, QUESTIONS[:1], abstain_below=0.0)[0]
    assert not confident.abstained and confident.text == confident.answer
    doubtful = engine.answer_image(image, QUESTIONS[:1], abstain_below=min(1.0, confident.probability + 1e-6))[0]
    assert doubtful.abstained and doubtful.text == NOT_SURE and doubtful.answer == confident.answer


def test_a_captioning_only_engine_says_it_cannot_answer(tmp_path):
    from edgevlm.config import DecoderConfig, ModelConfig, PreprocessConfig
    from edgevlm.export.onnx_export import export_engine
    from edgevlm.model_io import save_model
    from edgevlm.models.captioner import Captioner

    tokenizer = train_tokenizer(CAPTIONS, 1)
    cfg = ModelConfig(decoder=DecoderConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_layers=1, n_heads=2,
                                            d_ff=32, max_len=12), preprocess=PreprocessConfig(image_size=64))
    save_model(Captioner(cfg), tokenizer, str(tmp_path / "model"))
    export_engine(str(tmp_path / "model"), str(tmp_path / "engine"))
    engine = CaptionEngine(str(tmp_path / "engine"))
    assert not engine.answers_questions
    with pytest.raises(EdgeVLMError, match="answers no questions"):
        engine.answer_image(read_image_bgr(PHOTOS[0]), ["is there a dog?"])


def test_scores_exact_match_per_type_balanced_yes_no_and_abstention():
    questions = [
        {"question_id": 1, "answers": ["yes"], "type": "yesno"},
        {"question_id": 2, "answers": ["no"], "type": "yesno"},
        {"question_id": 3, "answers": ["no"], "type": "yesno"},
        {"question_id": 4, "answers": ["two"], "type": "number"},
        {"question_id": 5, "answers": ["grey"], "type": "color"},
    ]
    answers = {1: ("yes", 0.9), 2: ("yes", 0.4), 3: ("no", 0.8), 4: ("2", 0.7), 5: ("The gray.", 0.2)}
    report = score_answers(questions, answers)
    assert report["accuracy"] == pytest.approx(4 / 5)
    assert report["by_type"] == {"color": 1.0, "number": 1.0, "yesno": pytest.approx(2 / 3)}
    assert report["yesno_balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    abstaining = score_answers(questions, answers, threshold=0.5)
    assert abstaining["abstention_rate"] == pytest.approx(2 / 5) and abstaining["answered_accuracy"] == 1.0
    assert abstaining["accuracy"] == pytest.approx(3 / 5)
    assert normalize_answer("Two dogs.") == "two dogs" and normalize_answer("3") == "three"
    # right at 0.9, 0.8, 0.7; wrong at 0.4; right at 0.2: best to answer down to 0.7 (+3) or all (+3):
    # ties keep the stricter threshold, which says less that is wrong.
    assert choose_threshold(questions, answers) == pytest.approx(0.7)


def _questions_file(tmp_path, with_answers=False, copies=1):
    for name in ("coffee.jpg", "chelsea.jpg"):
        os.makedirs(tmp_path / "images", exist_ok=True)
        shutil.copy(os.path.join(SAMPLES, name), tmp_path / "images" / name)
    entries = [{"question_id": 10 + i, "image": image, "question": q}
               for i, (image, q) in enumerate([("coffee.jpg", "is there a dog?"), ("chelsea.jpg", "what color is the cat?"),
                                               ("coffee.jpg", "how many cups are there?")])]
    if with_answers:
        for entry, (answer, kind) in zip(entries, [("no", "yesno"), ("brown", "color"), ("one", "number")]):
            entry.update(answers=[answer], type=kind)
    entries = [dict(e, question_id=e["question_id"] + 100 * copy) for copy in range(copies) for e in entries]
    path = tmp_path / "questions.json"
    path.write_text(json.dumps(entries))
    return str(path), entries


def test_ask_a_photo_and_a_questions_file(tiny_engine_master, tmp_path):
    result = CliRunner().invoke(cli, ["ask", PHOTOS[0], "is there a dog?", "--engine", tiny_engine_master, "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["question"] == "is there a dog?" and isinstance(record["answer"], str) and 0 <= record["probability"] <= 1
    path, entries = _questions_file(tmp_path)
    result = CliRunner().invoke(cli, ["ask", "--json", "--questions", path, "--engine", tiny_engine_master])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["question_id"] for line in lines] == [e["question_id"] for e in entries]  # file order kept
    engine = CaptionEngine(tiny_engine_master)
    expected = engine.answer_image(read_image_bgr(PHOTOS[0]), ["is there a dog?", "how many cups are there?"])
    assert [lines[0]["answer"], lines[2]["answer"]] == [a.text for a in expected]


def test_ask_about_the_newest_frame_of_a_video(tiny_engine_master, tmp_path):
    video = make_video(str(tmp_path / "clip.mp4"), seconds=1.0)
    result = CliRunner().invoke(cli, ["ask", video, "is there a dog?", "--engine", tiny_engine_master, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["image"] == f"{video}@0.90s"  # the last of 10 frames


@pytest.mark.parametrize("args, message", [
    (["ask", "nothing.jpg", "is there a dog?"], "source not found: nothing.jpg"),
    (["ask", os.path.join(SAMPLES, "coffee.jpg")], "give a SOURCE and a QUESTION"),
    (["ask", "--questions", "missing.json"], "questions file not found: missing.json"),
])
def test_ask_errors_are_one_line(tiny_engine_master, args, message):
    result = CliRunner().invoke(cli, args + ["--engine", tiny_engine_master])
    assert result.exit_code == 1 and f"error: {message}" in result.output


def test_ask_questions_file_with_a_bad_entry_or_image(tiny_engine_master, tmp_path):
    path = tmp_path / "q.json"
    twice = {"question_id": 1, "image": PHOTOS[0], "question": "is there a dog?"}
    path.write_text(json.dumps([twice, twice]))
    result = CliRunner().invoke(cli, ["ask", "--questions", str(path), "--engine", tiny_engine_master])
    assert result.exit_code == 1 and "entry [1]: \"question_id\" 1 must be a number or string, unique" in result.output
    path.write_text(json.dumps([dict(twice, question="???")]))
    result = CliRunner().invoke(cli, ["ask", "--questions", str(path), "--engine", tiny_engine_master])
    assert result.exit_code == 1 and '"question" must be a string with words' in result.output
    path.write_text(json.dumps([{"question_id": 1, "question": "is there a dog?"}]))
    result = CliRunner().invoke(cli, ["ask", "--questions", str(path), "--engine", tiny_engine_master])
    assert result.exit_code == 1 and 'entry [0] needs "question_id", "image" and "question"' in result.output
    path.write_text(json.dumps([{"question_id": 1, "image": "gone.jpg", "question": "is there a dog?"}]))
    result = CliRunner().invoke(cli, ["ask", "--questions", str(path), "--engine", tiny_engine_master])
    assert result.exit_code == 1 and "image 'gone.jpg' not found" in result.output and "--images" in result.output


def test_eval_vqa_reports_and_tunes_abstention(tiny_engine_dir, tiny_model_master, tmp_path):
    path, _ = _questions_file(tmp_path, with_answers=True)
    result = CliRunner().invoke(cli, ["eval", "--vqa", path, "--engine", tiny_engine_dir, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["questions"] == 3 and set(report["by_type"]) == {"yesno", "color", "number"}
    for key in ("accuracy", "yesno_balanced_accuracy", "abstention_rate"):
        assert 0.0 <= report[key] <= 1.0
    torch_report = json.loads(CliRunner().invoke(cli, ["eval", "--vqa", path, "--model", tiny_model_master, "--json"]).output)
    assert torch_report["by_type"] == report["by_type"]  # the engine answers as the PyTorch model
    result = CliRunner().invoke(cli, ["eval", "--vqa", path, "--engine", tiny_engine_dir, "--tune-abstention"])
    assert result.exit_code == 1 and "--tune-abstention needs at least 100 questions" in result.output
    result = CliRunner().invoke(cli, ["eval", "--vqa", path, "--tune-abstention"])
    assert result.exit_code == 1 and "name it with --engine DIR" in result.output
    many, _ = _questions_file(tmp_path, with_answers=True, copies=34)
    result = CliRunner().invoke(cli, ["eval", "--vqa", many, "--engine", tiny_engine_dir, "--tune-abstention"])
    assert result.exit_code == 0, result.output
    manifest = json.load(open(os.path.join(tiny_engine_dir, "edgevlm.json")))
    assert manifest["vqa"]["tuned_questions"] == 102
    assert manifest["vqa"]["rule"] == "maximise right - 2 x wrong answers (abstain scores 0)"  # the default cost
    result = CliRunner().invoke(cli, ["eval", "--vqa", many, "--engine", tiny_engine_dir, "--tune-abstention",
                                      "--wrong-cost", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.load(open(os.path.join(tiny_engine_dir, "edgevlm.json")))["vqa"]["rule"].startswith("maximise right - 1 x")
    tuned = json.loads(result.output)
    assert {"all", "decoder"} <= set(tuned["calibration"]) and tuned["abstention_rule"].startswith("maximise right - 1 x")
    for cost in ("3", "2"):  # given, even at the default's value, it needs --tune-abstention
        result = CliRunner().invoke(cli, ["eval", "--vqa", many, "--engine", tiny_engine_dir, "--wrong-cost", cost])
        assert result.exit_code == 1 and "give --tune-abstention too" in result.output
    result = CliRunner().invoke(cli, ["eval", "--vqa", many, "--engine", tiny_engine_dir, "--tune-abstention",
                                      "--wrong-cost", "nan"])
    assert result.exit_code == 1 and "--wrong-cost must be a finite number > 0, not nan" in result.output
    assert CaptionEngine(tiny_engine_dir).abstain_below == pytest.approx(manifest["vqa"]["abstain_below"])


def test_eval_needs_exactly_one_of_data_or_vqa():
    result = CliRunner().invoke(cli, ["eval"])
    assert result.exit_code == 1 and "give --data CAPTIONS.json" in result.output


def test_multitask_training_learns_answers_and_keeps_captioning(tiny_dataset, tmp_path):
    out = str(tmp_path / "run")
    args = ["train", "--data", tiny_dataset, "--out", out, "--cache-dir", str(tmp_path / "cache"),
            "--decoder-d-model", "32", "--decoder-n-layers", "1", "--decoder-n-heads", "2", "--decoder-d-ff", "64",
            "--images-per-batch", "2", "--warmup-steps", "1", "--min-word-freq", "1", "--epochs", "1",
            "--vqa-weight", "1", "--contrastive-weight", "0.1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    history = json.load(open(os.path.join(out, "history.json")))
    assert {"dev_greedy_CIDEr", "dev_vqa_accuracy", "dev_vqa_yesno_balanced_accuracy"} <= set(history[0])
    model, tokenizer = load_model(os.path.join(out, "best"))
    assert tokenizer.sep_id is not None and model.cfg.sep_id == tokenizer.sep_id
    assert tokenizer.encode("yes") != [tokenizer.unk_id]
    state = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)
    assert state["contrastive"] is not None
    result = CliRunner().invoke(cli, args[:-6] + ["--epochs", "2", "--resume"])  # without the VQA objective
    assert result.exit_code == 1 and "was trained with vqa_weight=1.0; resume with --vqa-weight 1.0" in result.output
    result = CliRunner().invoke(cli, args[:-6] + ["--epochs", "2", "--resume", "--vqa-weight", "1", "--contrastive-weight", "0.1"])
    assert result.exit_code == 0, result.output
    assert [row["epoch"] for row in json.load(open(os.path.join(out, "history.json")))] == [1, 2]


def test_the_shipped_engine_answers_about_a_sample_photo():
    """The shipped multi-task INT8 engine: a person is there, a dog is not, and the
    abstention threshold tuned on dev is in its manifest."""
    astronaut = os.path.join(SAMPLES, "astronaut.jpg")
    answers = {}
    for question in ("is there a person?", "is there a dog?"):
        result = CliRunner().invoke(cli, ["ask", astronaut, question, "--json"])
        assert result.exit_code == 0, result.output
        answers[question] = json.loads(result.output)["answer"]
    assert answers == {"is there a person?": "yes", "is there a dog?": "no"}
    engine = CaptionEngine(os.path.join(os.path.dirname(SAMPLES), "default_engine"))
    assert engine.answers_questions and 0.0 < engine.abstain_below < 1.0


def test_an_answer_without_eos_has_probability_zero():
    from edgevlm.runtime.search import answer_search

    class NeverEnds:  # always prefers token 5, never eos (3)
        def prefill(self, prompts):
            return self.step(None, 0)

        def step(self, tokens, position):
            logits = np.zeros((1, 8), np.float32)
            logits[0, 5] = 10.0
            return logits

    answer = answer_search(NeverEnds(), np.array([[2, 6, 4]]), eos_id=3, max_new_tokens=3)[0]
    assert answer.ids == [5, 5, 5] and answer.probability == 0.0
