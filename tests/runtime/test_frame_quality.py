"""runtime/frame_quality.py: frames with nothing to see are refused with the right issue;
real photos and video frames pass."""

from __future__ import annotations

import glob
import os

import cv2
import numpy as np
import pytest

from edgevlm.data.bad_frames import (BAD_FRAME_ISSUES, PHOTO_KINDS, UNIFORM_KINDS, base_photos, photo_frame,
                                     uniform_frame)
from edgevlm.errors import EdgeVLMError
from edgevlm.paths import sample_images_dir
from edgevlm.runtime.frame_quality import DESCRIPTIONS, ISSUES, FrameQuality, assess_frame

SAMPLE_PHOTOS = sorted(glob.glob(os.path.join(sample_images_dir(), "*.jpg")))


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return base_photos()


def _street_frames(count: int = 4) -> list[np.ndarray]:
    capture = cv2.VideoCapture(os.path.join(sample_images_dir(), "street.mp4"))
    frames = []
    for _ in range(count):
        for _ in range(20):  # every 20th frame: 2 s apart
            ok, frame = capture.read()
        assert ok, "street.mp4 did not decode"
        frames.append(frame)
    capture.release()
    return frames


@pytest.mark.parametrize("kind", UNIFORM_KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_uniform_bad_frames_are_flagged_with_their_issue(kind, seed):
    frame = uniform_frame(kind, np.random.default_rng([UNIFORM_KINDS.index(kind), 500 + seed]))
    quality = assess_frame(frame)
    assert not quality.usable
    assert quality.issue == BAD_FRAME_ISSUES[kind], quality.stats
    assert quality.message == DESCRIPTIONS[quality.issue]


@pytest.mark.parametrize("kind", PHOTO_KINDS)
@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket"])
def test_degraded_photos_are_flagged_with_their_issue(photos, kind, name):
    quality = assess_frame(photo_frame(kind, photos[name]))
    assert (quality.usable, quality.issue) == (False, BAD_FRAME_ISSUES[kind]), quality.stats


@pytest.mark.parametrize("path", SAMPLE_PHOTOS, ids=os.path.basename)
def test_shipped_sample_photos_are_usable(path):
    quality = assess_frame(cv2.imread(path))
    assert quality == FrameQuality(True, None, None, quality.stats)


def test_street_video_frames_are_usable():
    for frame in _street_frames():
        quality = assess_frame(frame)
        assert quality.usable, quality.stats


def test_verdict_does_not_depend_on_resolution(photos):
    # The working copy has a fixed size: the same scene at 4x the pixels gets the same verdict.
    photo = photos["coffee"]
    size = (photo.shape[1] * 4, photo.shape[0] * 4)
    assert assess_frame(cv2.resize(photo, size, interpolation=cv2.INTER_CUBIC)).usable
    # Blur, then enlarge: the same as blurring the enlarged photo, at a fraction of the cost.
    blurred = cv2.resize(photo_frame("blurred_photo", photo), size, interpolation=cv2.INTER_CUBIC)
    assert assess_frame(blurred).issue == "blurred"
    assert assess_frame(np.zeros((1080, 1920, 3), np.uint8)).issue == "dark"
    assert assess_frame(np.full((12, 16, 3), 255, np.uint8)).issue == "bright"  # smaller than the working copy


def test_accepts_grey_and_strided_views(photos):
    photo = photos["chelsea"]
    assert assess_frame(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)).usable
    assert assess_frame(photo[:, ::-1]).usable  # a mirrored view has a negative stride
    assert assess_frame(np.zeros((48, 64), np.uint8)).issue == "dark"
    assert assess_frame(np.full((48, 64, 1), 255, np.uint8)).issue == "bright"


@pytest.mark.parametrize("bad", [np.zeros((48, 64, 3), np.float32), np.zeros((0, 64, 3), np.uint8),
                                 np.zeros((48, 64, 4), np.uint8), np.zeros(10, np.uint8),
                                 np.zeros((0, 0), np.uint8)])
def test_rejects_arrays_that_are_not_images(bad):
    with pytest.raises(EdgeVLMError):
        assess_frame(bad)


def test_every_issue_has_a_sentence_and_the_result_is_frozen():
    assert set(DESCRIPTIONS) == set(ISSUES) == set(BAD_FRAME_ISSUES.values())
    assert all(text.endswith(".") and text[0].isupper() for text in DESCRIPTIONS.values())
    quality = assess_frame(np.zeros((48, 64, 3), np.uint8))
    assert set(quality.stats) >= {"mean_luma", "dark_fraction", "bright_fraction", "spread", "sharpness"}
    with pytest.raises(AttributeError):
        quality.usable = True
