"""edgevlm narrate end to end on a tiny model and generated videos."""

import json
import os
import signal
import subprocess
import sys
import time
import wave

import numpy as np
import pytest

from edgevlm.runtime.narration.speech import Speech, find_espeak
from tests.support import make_video


def _narrate(*args, **kwargs):
    if "input" not in kwargs:  # hermetic: never the terminal pytest runs in (narrate reads questions from stdin)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", "edgevlm.cli.main", "narrate", *args],
                          capture_output=True, text=True, timeout=120, **kwargs)


def test_still_video_is_narrated_exactly_once(tiny_engine_master, tmp_path):
    video = make_video(str(tmp_path / "still.avi"), seconds=10.0, fps=10, still=True)
    events = tmp_path / "events.jsonl"
    result = _narrate(video, "--engine", tiny_engine_master, "--tts", "none", "--events", str(events))
    assert result.returncode == 0, result.stderr
    narration = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(narration) == 1 and narration[0].startswith("[    0.00s] ")
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = [line["event"] for line in lines]
    assert kinds.count("frame") == 100 and kinds.count("caption") == 1 and kinds.count("spoken") == 1
    assert kinds.count("skip_unchanged") == 99 and kinds[-1] == "summary"
    assert all("t" in line and "wall" in line for line in lines)
    summary = json.loads(result.stdout.splitlines()[-1].removeprefix("summary: "))
    assert {key: lines[-1][key] for key in summary} == summary  # printed and logged alike
    assert summary["frames_skipped_unchanged"] == 99 and summary["utterances"] == 1


def test_outputs_are_complete(tiny_engine_master, tmp_path):
    video = make_video(str(tmp_path / "moving.avi"), seconds=3.0, fps=10)
    subs, srt, out = tmp_path / "n.vtt", tmp_path / "n.srt", tmp_path / "n.mp4"
    result = _narrate(video, "--engine", tiny_engine_master, "--tts", "none", "--subtitles", str(subs),
                      "--video-out", str(out))
    assert result.returncode == 0, result.stderr
    text = subs.read_text()
    assert text.startswith("WEBVTT\n\n00:00:00.000 --> ")
    import cv2

    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".part") or ".part." in n]
    result = _narrate(video, "--engine", tiny_engine_master, "--tts", "none", "--subtitles", str(srt))
    assert srt.read_text().startswith("1\n00:00:00,000 --> ")


def test_bad_subtitle_name_is_refused(tiny_engine_master, tmp_path):
    video = make_video(str(tmp_path / "v.avi"), seconds=1.0)
    result = _narrate(video, "--engine", tiny_engine_master, "--subtitles", str(tmp_path / "x.txt"))
    assert result.returncode == 1 and "use a .vtt or .srt file name" in result.stderr


@pytest.mark.skipif(find_espeak() is None, reason="espeak-ng is not installed (CI installs it)")
def test_espeak_writes_a_real_wav(tmp_path):
    speech = Speech(play=False)
    path = str(tmp_path / "hello.wav")
    assert speech.synthesize("a dog runs on the grass", path)
    with wave.open(path) as wav:
        assert wav.getnframes() / wav.getframerate() > 0.5  # at least half a second of speech


def test_sigterm_stops_cleanly_with_complete_outputs(tiny_engine_master, tmp_path):
    video = make_video(str(tmp_path / "long.avi"), seconds=120.0, fps=10)
    events, subs = tmp_path / "events.jsonl", tmp_path / "n.vtt"
    process = subprocess.Popen([sys.executable, "-m", "edgevlm.cli.main", "narrate", video, "--engine", tiny_engine_master,
                                "--tts", "none", "--realtime", "--events", str(events), "--subtitles", str(subs)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (not events.exists() or "caption" not in events.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    lines = [json.loads(line) for line in events.read_text().splitlines()]  # every line whole
    assert lines[-1]["event"] == "summary" and lines[-1]["stream_seconds"] < 100
    assert subs.read_text().startswith("WEBVTT")
    assert stdout.splitlines()[-1].startswith("summary: ")


def test_a_still_photo_video_is_narrated_once_by_the_shipped_engine(tmp_path):
    import cv2

    from tests.support import SAMPLES

    photo = cv2.resize(cv2.imread(os.path.join(SAMPLES, "astronaut.jpg")), (320, 240))
    path = str(tmp_path / "still_photo.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(100):  # 10 s of a still scene, with a camera's sensor noise on every frame
        noisy = photo.astype(np.int16) + rng.normal(0, 3, photo.shape).astype(np.int16)
        writer.write(noisy.clip(0, 255).astype(np.uint8))
    writer.release()
    result = _narrate(path, "--tts", "none")
    assert result.returncode == 0, result.stderr
    assert len([line for line in result.stdout.splitlines() if line.startswith("[")]) == 1


def test_video_out_keeps_real_time_when_frames_were_skipped(tmp_path):
    from edgevlm.runtime.narration.outputs import CaptionedVideo

    video = CaptionedVideo(str(tmp_path / "live.mp4"), fps=10.0)
    image = np.zeros((48, 64, 3), np.uint8)
    for t in (0.0, 0.5, 1.0):  # a live source where inference kept only every fifth frame
        video.write_at(image, "a caption", t)
    video.close()
    assert video.frames_written == 11  # 1.0 s at 10 fps, frame 0 included
    assert os.path.isfile(tmp_path / "live.mp4") and not os.path.exists(tmp_path / "live.mp4.part.mp4")
