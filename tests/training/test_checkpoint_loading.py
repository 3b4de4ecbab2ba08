"""Checkpoints from users (issue 16): every bad checkpoint.pt is one line of ours; a pickle
carrying code is refused without running it, and never with torch's advice to load it
unsafely."""

import os

import pytest
import torch
from click.testing import CliRunner

from edgevlm.cli.main import cli
from edgevlm.errors import EdgeVLMError
from edgevlm.training.trainer import CHECKPOINT_KEYS, load_checkpoint
from tests.support import PickledCode

FIX = "start without --resume, or use a new --out"


def _plain_checkpoint(**changes) -> dict:
    state = {"model": {"w": torch.zeros(2)}, "optimizer": {}, "scheduler": {}, "epoch": 1, "best": 0.1,
             "history": [], "config": {}, "settings": {}, "contrastive": None}
    state.update(changes)
    return state


def test_a_pickle_that_would_run_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "code-ran"
    path = str(tmp_path / "checkpoint.pt")
    torch.save(_plain_checkpoint(config=PickledCode(str(marker))), path)
    with pytest.raises(EdgeVLMError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message == (f"{path} is not a plain-tensor checkpoint (it holds pickled code, refused for safety); "
                       f"edgevlm writes only tensors and plain data: {FIX}")
    assert "weights_only" not in message and "\n" not in message
    assert not marker.exists()


def test_resume_from_a_code_carrying_checkpoint_is_one_line_and_runs_nothing(tiny_dataset, tmp_path):
    """Through the command: refused before the dataset or the features are touched."""
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "code-ran"
    torch.save(_plain_checkpoint(model=PickledCode(str(marker))), out / "checkpoint.pt")
    result = CliRunner().invoke(cli, ["train", "--data", tiny_dataset, "--out", str(out), "--resume",
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {out / 'checkpoint.pt'} is not a plain-tensor checkpoint (it holds "
                                          f"pickled code, refused for safety); edgevlm writes only tensors and plain "
                                          f"data: {FIX}"]
    assert not marker.exists() and not (tmp_path / "cache").exists()


def test_empty_truncated_and_foreign_files_are_clear_errors(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"")
    with pytest.raises(EdgeVLMError, match=r"is empty \(0 bytes\): an interrupted copy, not a checkpoint"):
        load_checkpoint(str(path))
    torch.save(_plain_checkpoint(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgeVLMError, match=r"is truncated or corrupt \(not a complete torch checkpoint\)"):
        load_checkpoint(str(path))
    path.write_bytes(b"hello, this is not a checkpoint")
    with pytest.raises(EdgeVLMError, match=r"is not a torch checkpoint \(KeyError\)"):
        load_checkpoint(str(path))
    torch.save([1, 2, 3], str(path))
    with pytest.raises(EdgeVLMError, match="holds a list, not a checkpoint of edgevlm train"):
        load_checkpoint(str(path))


@pytest.mark.parametrize("missing", CHECKPOINT_KEYS)
def test_a_missing_entry_is_named(tmp_path, missing):
    path = str(tmp_path / "checkpoint.pt")
    state = _plain_checkpoint()
    del state[missing]
    torch.save(state, path)
    with pytest.raises(EdgeVLMError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == f"{path} is not a checkpoint of edgevlm train: it has no {missing!r} entry; {FIX}"


def test_an_empty_dict_names_the_first_missing_entry_and_a_wrong_type_is_named(tmp_path):
    path = str(tmp_path / "checkpoint.pt")
    torch.save({}, path)
    with pytest.raises(EdgeVLMError, match="it has no 'model' entry"):
        load_checkpoint(path)
    torch.save(_plain_checkpoint(config="tiny"), path)
    with pytest.raises(EdgeVLMError, match="its 'config' entry is a str, not a dict"):
        load_checkpoint(path)
    torch.save(_plain_checkpoint(), path)
    assert load_checkpoint(path)["epoch"] == 1
    assert os.path.getsize(path) > 0
