"""Every output narrate writes is checked before any work starts: a folder it cannot write
is one line naming the path and the fix, exit 1, and nothing else written.

Tests run as root here, and root ignores a folder's mode bits (chmod 555 does not stop it).
So the read-only folder is made read-only in the way this machine enforces: chmod 555 where
that binds (a normal user), else the immutable attribute (chattr +i, which root respects on
ext4); where neither binds the test is skipped, saying so. The up-front check itself tries
to create and remove a file there, the same operation the outputs will do, so it is right
for root, read-only mounts and ACLs alike."""

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.narration.outputs import check_outputs
from edgevlm.runtime.narration.speech import find_espeak
from tests.support import make_video


def _can_write(folder: str) -> bool:
    try:
        with open(os.path.join(folder, ".probe"), "w"):
            pass
        os.remove(os.path.join(folder, ".probe"))
        return True
    except OSError:
        return False


@pytest.fixture()
def read_only_dir(tmp_path):
    """A folder this process really cannot write (see the module docstring)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    undo = lambda: os.chmod(folder, 0o755)  # noqa: E731
    if _can_write(str(folder)):  # root: mode bits do not bind
        os.chmod(folder, 0o755)
        chattr = shutil.which("chattr")
        done = chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode == 0
        if not done or _can_write(str(folder)):
            if done:
                subprocess.run([chattr, "-i", str(folder)], check=True)
            pytest.skip("cannot make a folder this user cannot write here (root ignores chmod; chattr +i unavailable)")
        undo = lambda: subprocess.run([chattr, "-i", str(folder)], check=True)  # noqa: E731
    try:
        yield str(folder)
    finally:
        undo()  # or pytest cannot clean tmp_path up


def _narrate(*args):
    return subprocess.run([sys.executable, "-m", "edgevlm.cli.main", "narrate", *args, "--no-questions"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("option", ["--audio-out", "--events", "--subtitles", "--video-out"])
def test_an_output_in_a_read_only_folder_is_refused_before_any_work(option, read_only_dir, tiny_engine_master,
                                                                    tmp_path):
    video = make_video(str(tmp_path / "v.avi"), seconds=1.0)
    target = {"--audio-out": os.path.join(read_only_dir, "wav"), "--events": os.path.join(read_only_dir, "e.jsonl"),
              "--subtitles": os.path.join(read_only_dir, "n.vtt"), "--video-out": os.path.join(read_only_dir, "n.mp4")}
    events = tmp_path / "events.jsonl"  # a writable output beside it: must not be started either
    extra = [] if option == "--events" else ["--events", str(events)]
    result = _narrate(video, "--engine", tiny_engine_master, "--tts", "none", option, target[option], *extra)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {option} {target[option]}: cannot ")
    assert "choose a folder you can write to" in lines[0]
    assert result.stdout == "" and not events.exists()  # nothing narrated, nothing written
    assert os.listdir(read_only_dir) == []


def test_a_path_under_a_regular_file_is_refused(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(EdgeVLMError, match=r"^--audio-out .*: cannot create .*\(Not a directory\); choose a folder"):
        check_outputs(audio_out=str(not_a_folder / "wav"))
    with pytest.raises(EdgeVLMError, match=r"^--audio-out .*: is a file; give a folder"):
        check_outputs(audio_out=str(not_a_folder))
    with pytest.raises(EdgeVLMError, match=r"^--events .*: is a folder; give a file name"):
        check_outputs(events=str(tmp_path))
    check_outputs(str(tmp_path / "a" / "wav"), str(tmp_path / "b" / "e.jsonl"))  # missing folders are made
    assert os.path.isdir(tmp_path / "a" / "wav") and os.listdir(tmp_path / "a" / "wav") == []


@pytest.mark.skipif(find_espeak() is None, reason="espeak-ng is not installed (make system-deps installs it)")
def test_summary_says_speech_only_when_speech_was_made(tiny_engine_master, tmp_path):
    video = make_video(str(tmp_path / "v.avi"), seconds=1.0)
    # --no-speak and no --audio-out: espeak-ng is there, but no speech is produced
    result = _narrate(video, "--engine", tiny_engine_master, "--no-speak")
    summary = json.loads(result.stdout.splitlines()[-1].removeprefix("summary: "))
    assert result.returncode == 0 and summary["speech"] is False and summary["voiced"] == 0
    wavs = tmp_path / "wav"
    result = _narrate(video, "--engine", tiny_engine_master, "--no-speak", "--audio-out", str(wavs))
    summary = json.loads(result.stdout.splitlines()[-1].removeprefix("summary: "))
    assert summary["speech"] is True and summary["voiced"] == len(os.listdir(wavs)) >= 1
