"""Outputs complete or absent (issue 16): atomic folders keep a user's files, nothing is
left staged after an error, and an unwritable output fails before any work."""

import os

import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import atomic_dir, check_writable, read_json


def _write(folder, files: dict) -> None:
    for name, text in files.items():
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)


def test_replacing_a_folder_keeps_files_the_writer_does_not_write(tmp_path):
    out = tmp_path / "engine"
    out.mkdir()
    _write(out, {"model.onnx": "old", "edgevlm.json": "old", "README.md": "my notes"})
    (out / "my-photos").mkdir()
    _write(out / "my-photos", {"a.txt": "kept too"})
    with atomic_dir(str(out)) as tmp:
        _write(tmp, {"model.onnx": "new", "edgevlm.json": "new"})
    assert sorted(os.listdir(out)) == ["README.md", "edgevlm.json", "model.onnx", "my-photos"]
    assert (out / "model.onnx").read_text() == "new" and (out / "README.md").read_text() == "my notes"
    assert (out / "my-photos" / "a.txt").read_text() == "kept too"
    assert os.listdir(tmp_path) == ["engine"]  # no staging or .old folder left


def test_a_failed_write_leaves_the_old_folder_as_it_was_and_nothing_staged(tmp_path):
    out = tmp_path / "engine"
    out.mkdir()
    _write(out, {"model.onnx": "old", "README.md": "my notes"})
    inode = os.stat(out).st_ino
    with pytest.raises(RuntimeError), atomic_dir(str(out)) as tmp:
        _write(tmp, {"model.onnx": "half"})
        raise RuntimeError("export failed")
    assert os.stat(out).st_ino == inode and (out / "model.onnx").read_text() == "old"
    assert os.listdir(tmp_path) == ["engine"]


def test_check_writable_fails_up_front_with_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(EdgeVLMError, match=f"--out {afile}/engine: {afile} is a file, not a folder"):
        check_writable(str(afile / "engine"))
    with pytest.raises(EdgeVLMError, match=f"--out {afile} exists and is not a folder"):
        check_writable(str(afile), inside=True)
    check_writable(str(tmp_path / "new" / "deeper" / "engine"))  # a writable ancestor is enough
    assert sorted(os.listdir(tmp_path)) == ["afile"]  # the probe leaves nothing behind


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_check_writable_refuses_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    try:
        with pytest.raises(EdgeVLMError, match=f"--out {locked}/engine: cannot write in {locked}"):
            check_writable(str(locked / "engine"))
    finally:
        os.chmod(locked, 0o755)


def test_check_writable_refuses_a_place_nobody_can_write():
    """/proc takes no new entries, not even from root."""
    with pytest.raises(EdgeVLMError, match="--out /proc/engine: cannot write in /proc .*; choose a folder you can write to"):
        check_writable("/proc/engine")


def test_read_json_size_depth_and_folder_are_clear_errors(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(EdgeVLMError, match="is nested too deeply to be a question file"):
        read_json(str(path), "a question file")
    path.write_text("[1, 2, 3]")
    with pytest.raises(EdgeVLMError, match=r"is 9 bytes, over the 4 bytes limit for this file; expected a list"):
        read_json(str(path), "a list", max_bytes=4)
    assert read_json(str(path), max_bytes=9) == [1, 2, 3]
    with pytest.raises(EdgeVLMError, match=f"cannot read {tmp_path}"):
        read_json(str(tmp_path))


def test_an_interrupt_while_staging_removes_the_staged_file_or_folder(tmp_path):
    """What SIGTERM becomes in the command (a KeyboardInterrupt subclass) cleans up like Ctrl-C."""
    from edgevlm.cli.main import Terminated
    from edgevlm.fileio import atomic_path

    (tmp_path / "checkpoint.pt").write_text("old")
    with pytest.raises(Terminated), atomic_path(str(tmp_path / "checkpoint.pt")) as tmp:
        _write(tmp_path, {os.path.basename(tmp): "half"})
        raise Terminated()
    with pytest.raises(KeyboardInterrupt), atomic_dir(str(tmp_path / "best")) as tmp:
        _write(tmp, {"model.safetensors": "half"})
        raise KeyboardInterrupt()
    assert os.listdir(tmp_path) == ["checkpoint.pt"] and (tmp_path / "checkpoint.pt").read_text() == "old"


def test_a_signal_during_the_writability_probe_leaves_no_probe_folder(tmp_path, monkeypatch):
    import signal
    import tempfile

    from edgevlm import fileio

    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp_then_signal(*args, **kwargs):
        made = real_mkdtemp(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # Ctrl-C between making the probe and removing it
        return made

    monkeypatch.setattr(fileio.tempfile, "mkdtemp", mkdtemp_then_signal)
    # Ctrl-C as an interactive process gets it. pytest started as a background job of a
    # non-interactive shell (`make test &`) inherits SIGINT ignored, Python keeps it ignored
    # (rightly: so does the command), and the test saw no KeyboardInterrupt (stop 32: its
    # handler was SIG_IGN there).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            fileio.probe_writable(str(tmp_path))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert os.listdir(tmp_path) == []
