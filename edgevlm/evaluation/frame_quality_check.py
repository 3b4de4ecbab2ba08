"""Measure ``edgevlm.runtime.frame_quality``: how often it wrongly flags real photos and video
frames, how often it catches bad frames, how strong a degradation must be before it fires,
and how long one VGA frame takes. The thresholds in frame_quality were read off this report.

    python -m edgevlm.scripts.ood_images --check-quality [--data DIR]
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter

import cv2
import numpy as np

from edgevlm.data.bad_frames import (BAD_FRAME_ISSUES, PHOTO_KINDS, UNIFORM_KINDS, blur_photo, photo_frame,
                                     scale_photo, uniform_frame, uniform_rng)
from edgevlm.data.ood_image import FRAME_H, FRAME_W
from edgevlm.data.skimage_samples import skimage_images
from edgevlm.data.synthetic_scenes import synthetic_scenes
from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.frame_quality import assess_frame

log = logging.getLogger(__name__)


def dev_photos(data_dir: str) -> list[tuple[str, np.ndarray]]:
    """(file name, (224, 224, 3) uint8 BGR) for every Flickr8k dev photo under data_dir."""
    captions = os.path.join(data_dir, "flickr8k", "captions_dev.json")
    if not os.path.isfile(captions):
        raise EdgeVLMError(f"{captions} not found; pass --data pointing at the shared data folder")
    with open(captions, encoding="utf-8") as f:
        names = [entry["file_name"] for entry in json.load(f)["images"]]
    photos = []
    for name in names:
        image = cv2.imread(os.path.join(data_dir, "flickr8k", "images", name), cv2.IMREAD_COLOR)
        if image is None:
            raise EdgeVLMError(f"cannot read dev photo {name} under {data_dir}/flickr8k/images")
        photos.append((name, image))
    return photos


def video_frames(path: str, count: int = 50) -> list[tuple[str, np.ndarray]]:
    """``count`` frames spread evenly over a video -> (name#frame, (H, W, 3) uint8 BGR)."""
    capture = cv2.VideoCapture(path)
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if not capture.isOpened() or total <= 0:
        raise EdgeVLMError(f"cannot read video {path}")
    frames = []
    for index in np.linspace(0, total - 1, count).astype(int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = capture.read()
        if ok:
            frames.append((f"{os.path.basename(path)}#{index}", frame))
    capture.release()
    return frames


def _flag_report(named: list[tuple[str, np.ndarray]]) -> dict:
    """Real images, all of which should be usable -> count, false positives and which."""
    verdicts = [(name, assess_frame(image)) for name, image in named]
    tripped = [{"file": name, "issue": q.issue} for name, q in verdicts if not q.usable]
    return {"images": len(named), "flagged": len(tripped), "rate": round(len(tripped) / max(len(named), 1), 4),
            "tripped": tripped}


def _detection_report(images, expected: str) -> dict:
    """Bad frames, all of which should be flagged with ``expected`` -> the share that are."""
    issues = Counter(assess_frame(image).issue for image in images)
    n = sum(issues.values())
    return {"expected": expected, "frames": n, "detected": round(issues[expected] / n, 4),
            "unusable": round(1 - issues[None] / n, 4), "issues": {str(k): v for k, v in issues.most_common()}}


def _ms_per_frame(image: np.ndarray) -> float:
    """Milliseconds assess_frame takes on ``image``: the best of 5 batches of 100, because
    other work on the machine only ever adds time."""
    batches = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(100):
            assess_frame(image)
        batches.append((time.perf_counter() - start) / 100)
    return round(min(batches) * 1000, 3)


def check_quality(data_dir: str, frames_per_video: int = 50, seeds: int = 200) -> dict:
    """Run assess_frame over the dev photos, frames of the sample videos, and bad frames
    made from every dev photo and ``seeds`` seeds of each uniform kind -> the report."""
    log.info("dev photos and video frames (should all be usable)")
    photos = dev_photos(data_dir)
    report = {"dev_photos": _flag_report(photos), "videos": {}}
    for name in ("vtest.avi", "bikes.mp4"):
        report["videos"][name] = _flag_report(video_frames(os.path.join(data_dir, "video", name), frames_per_video))
    log.info("bad frames (should all be flagged)")
    bad = {kind: _detection_report((photo_frame(kind, p) for _, p in photos), BAD_FRAME_ISSUES[kind])
           for kind in PHOTO_KINDS}
    for kind in UNIFORM_KINDS:
        # Seeds from 1000 up: not the frames written into the set.
        frames = (uniform_frame(kind, uniform_rng(kind, 1000 + seed)) for seed in range(seeds))
        bad[kind] = _detection_report(frames, BAD_FRAME_ISSUES[kind])
    report["bad_frames"] = bad
    # For information: the drawn and skimage images are not bad frames, but some (a smooth
    # gradient, a silhouette on white) rightly have nothing to caption.
    report["ood_groups"] = {group: dict(Counter(str(assess_frame(item.image).issue) for item in items))
                            for group, items in (("skimage", skimage_images()), ("synthetic", synthetic_scenes()))}
    # How strong must each degradation of a real photo be before it is flagged? -> unusable rate.
    log.info("sweeps of darkening, brightening and blurring the dev photos")
    sweeps = {"dark": ((0.05, 0.1, 0.15, 0.2), scale_photo), "bright": ((2.0, 4.0, 8.0, 16.0), scale_photo),
              "blurred": ((0.01, 0.02, 0.03, 0.04), blur_photo)}
    report["sweeps"] = {f"{issue}: {'sigma/side' if issue == 'blurred' else 'gain'} {x}":
                        _detection_report((make(p, x) for _, p in photos), issue)["unusable"]
                        for issue, (values, make) in sweeps.items() for x in values}
    report["ms_per_640x480_frame"] = _ms_per_frame(cv2.resize(photos[0][1], (FRAME_W, FRAME_H)))
    return report
