import json
import os

import numpy as np
import torch

from edgevlm.models.captioner import Captioner
from edgevlm.training.trainer import caption_loss


def test_loss_falls_on_a_few_samples(tiny_config):
    torch.manual_seed(0)
    model = Captioner(tiny_config).train()
    features = torch.randn(3, tiny_config.vision.channels, 2, 2)
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0], [2, 10, 3, 0, 0], [2, 11, 12, 13, 3]])
    owners = torch.tensor([0, 1, 2, 2])
    params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    losses = []
    for _ in range(60):
        loss = caption_loss(model, features, ids, owners, pad_id=0, label_smoothing=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_train_command_writes_checkpoints_and_resumes(tiny_dataset, tmp_path):
    from click.testing import CliRunner

    from edgevlm.cli.main import cli

    out = str(tmp_path / "run")
    args = ["train", "--data", tiny_dataset, "--out", out, "--cache-dir", str(tmp_path / "cache"),
            "--decoder-d-model", "32", "--decoder-n-layers", "1", "--decoder-n-heads", "2", "--decoder-d-ff", "64",
            "--images-per-batch", "2", "--warmup-steps", "1", "--min-word-freq", "1"]
    result = CliRunner().invoke(cli, args + ["--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ["best", "checkpoint.pt", "epoch-1", "history.json", "tokenizer.json"]
    assert not [n for n in os.listdir(tmp_path / "cache") if n.startswith(".tmp")]
    state = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)
    assert state["epoch"] == 1
    result = CliRunner().invoke(cli, args + ["--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    history = json.load(open(os.path.join(out, "history.json")))
    assert [row["epoch"] for row in history] == [1, 2]
    assert np.isfinite([row["train_loss"] for row in history]).all()


def test_resume_without_checkpoint_is_a_clear_error(tiny_dataset, tmp_path):
    from click.testing import CliRunner

    from edgevlm.cli.main import cli

    result = CliRunner().invoke(cli, ["train", "--data", tiny_dataset, "--out", str(tmp_path / "new"), "--resume",
                                      "--cache-dir", str(tmp_path / "cache"), "--decoder-d-model", "32",
                                      "--decoder-n-heads", "2", "--decoder-n-layers", "1", "--min-word-freq", "1"])
    assert result.exit_code == 1
    assert "error: --resume: no checkpoint.pt in" in result.output


def _train_first_model(tiny_dataset, tmp_path):
    """-> (common train args, run folder of a one-epoch tiny model)."""
    from click.testing import CliRunner

    from edgevlm.cli.main import cli

    base = ["--data", tiny_dataset, "--cache-dir", str(tmp_path / "cache"), "--images-per-batch", "3",
            "--warmup-steps", "1", "--epochs", "1"]
    first = str(tmp_path / "first")
    result = CliRunner().invoke(cli, ["train", "--out", first, "--decoder-d-model", "32", "--decoder-n-layers", "1",
                                      "--decoder-n-heads", "2", "--decoder-d-ff", "64", "--min-word-freq", "1", *base])
    assert result.exit_code == 0, result.output
    return base, first


def test_finetune_top_blocks_from_a_trained_model(tiny_dataset, tmp_path):
    from click.testing import CliRunner

    from edgevlm.cli.main import cli
    from edgevlm.model_io import load_model

    base, first = _train_first_model(tiny_dataset, tmp_path)
    tuned = str(tmp_path / "tuned")
    result = CliRunner().invoke(cli, ["train", "--out", tuned, "--init-from", os.path.join(first, "best"),
                                      "--finetune-from-block", "15", "--encoder-lr-scale", "1.0", "--lr", "1e-2", *base])
    assert result.exit_code == 0, result.output
    before, _ = load_model(os.path.join(first, "best"))
    after, _ = load_model(os.path.join(tuned, "best"))
    changed = lambda name: not torch.equal(before.state_dict()[name], after.state_dict()[name])  # noqa: E731
    assert changed("encoder._blocks.15._project_conv.weight") and changed("encoder._conv_head.weight")
    assert not changed("encoder._blocks.14._project_conv.weight") and not changed("encoder._conv_stem.weight")
    assert open(os.path.join(first, "tokenizer.json")).read() == open(os.path.join(tuned, "tokenizer.json")).read()


def test_self_critical_training_runs_from_a_trained_model(tiny_dataset, tmp_path):
    from click.testing import CliRunner

    from edgevlm.cli.main import cli

    base, first = _train_first_model(tiny_dataset, tmp_path)
    out = str(tmp_path / "scst")
    result = CliRunner().invoke(cli, ["train", "--out", out, "--init-from", os.path.join(first, "best"),
                                      "--scst-samples", "3", "--scst-max-len", "6", *base])
    assert result.exit_code == 0, result.output
    history = json.load(open(os.path.join(out, "history.json")))
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])


def test_mirrored_text_swaps_left_and_right_only(tiny_dataset):
    from edgevlm.tokenizer_training import train_tokenizer
    from edgevlm.training.trainer import mirror_id_map

    tokenizer = train_tokenizer(["a dog on the left", "a cat on the right", "a bird"], 1)
    mapping = mirror_id_map(tokenizer)
    left, right = tokenizer.encode("left")[0], tokenizer.encode("right")[0]
    assert mapping[left] == right and mapping[right] == left
    others = [i for i in range(tokenizer.vocab_size) if i not in (left, right)]
    assert (mapping[others] == others).all()
    one_sided = train_tokenizer(["a dog on the left"], 1)  # no "right": nothing to swap with
    assert (mirror_id_map(one_sided) == np.arange(one_sided.vocab_size)).all()


def test_flip_augment_and_moving_average(tiny_dataset, tmp_path):
    """Mirrored features are cached beside the plain ones (and are not a copy of them); the
    saved model is the moving average, not the raw weights; resume restores the average."""
    from click.testing import CliRunner

    from edgevlm.cli.main import cli
    from edgevlm.model_io import load_model

    out, cache = str(tmp_path / "run"), tmp_path / "cache"
    args = ["train", "--data", tiny_dataset, "--out", out, "--cache-dir", str(cache), "--decoder-d-model", "32",
            "--decoder-n-layers", "1", "--decoder-n-heads", "2", "--decoder-d-ff", "64", "--images-per-batch", "2",
            "--warmup-steps", "1", "--min-word-freq", "1", "--lr", "1e-2", "--flip-augment", "true",
            "--ema-decay", "0.5"]
    result = CliRunner().invoke(cli, args + ["--epochs", "1"])
    assert result.exit_code == 0, result.output
    train_caches = sorted(cache.glob("features-train-*.npy"))
    assert len(train_caches) == 2 and len(list(cache.glob("features-dev-*.npy"))) == 1
    plain, mirrored = (np.load(p).astype(np.float32) for p in train_caches)
    assert plain.shape == mirrored.shape and not np.allclose(plain, mirrored)
    state = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)
    saved, _ = load_model(os.path.join(out, "epoch-1"))
    name = "projector.proj.0.weight"
    averaged = state["ema"][f"module.{name}"]
    assert torch.allclose(saved.state_dict()[name], averaged)
    assert not torch.allclose(state["model"][name], averaged)
    result = CliRunner().invoke(cli, args + ["--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert [row["epoch"] for row in json.load(open(os.path.join(out, "history.json")))] == [1, 2]
    no_average = [a for a in args if a not in ("--ema-decay", "0.5")]
    result = CliRunner().invoke(cli, no_average + ["--epochs", "3", "--resume", "--ema-decay", "0.9"])
    assert result.exit_code == 0, result.output
    torch.save({**torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True), "ema": None},
               os.path.join(out, "checkpoint.pt"))
    result = CliRunner().invoke(cli, args + ["--epochs", "4", "--resume"])
    assert result.exit_code == 1
    assert "holds no moving average (it was trained without --ema-decay); resume without --ema-decay" in result.output


def test_moving_average_warms_up_from_a_random_start():
    """Early updates follow the weights (decay (1+n)/(10+n)); later ones use the set decay."""
    from edgevlm.training.trainer import warmed_up_ema

    average = warmed_up_ema(0.998)
    start, now = torch.zeros(3), torch.ones(3)
    assert torch.allclose(average(start, now, torch.tensor(0)), torch.full((3,), 0.9))  # decay 1/10
    assert torch.allclose(average(start, now, torch.tensor(90)), torch.full((3,), 1 - 91 / 100))
    assert torch.allclose(average(start, now, torch.tensor(100_000)), torch.full((3,), 0.002))


def test_fresh_decoder_keeps_the_encoder_and_retrains_the_rest(tiny_dataset, tmp_path):
    from click.testing import CliRunner

    from edgevlm.cli.main import cli
    from edgevlm.model_io import load_model

    base, first = _train_first_model(tiny_dataset, tmp_path)
    out = str(tmp_path / "fresh")
    result = CliRunner().invoke(cli, ["train", "--out", out, "--init-from", os.path.join(first, "best"),
                                      "--fresh-decoder", *base])
    assert result.exit_code == 0, result.output
    before, _ = load_model(os.path.join(first, "best"))
    after, _ = load_model(os.path.join(out, "best"))
    b, a = before.state_dict(), after.state_dict()
    assert all(torch.equal(b[n], a[n]) for n in b if n.startswith("encoder."))
    # a decoder trained one epoch from random weights is not the first model's decoder moved one epoch on
    assert not torch.allclose(b["decoder.tok_emb.weight"], a["decoder.tok_emb.weight"], atol=0.05)
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "x"), "--fresh-decoder", *base])
    assert result.exit_code == 1 and "--fresh-decoder keeps the encoder of --init-from DIR" in result.output
