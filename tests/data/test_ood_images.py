"""edgevlm/data/ood_images.py: the out-of-domain set is written whole, deterministically,
with every group filled and every "nothing" frame refused by assess_frame."""

from __future__ import annotations

import json
import os
import sys

import cv2
import pytest

from edgevlm.data import ood_images, skimage_samples
from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.frame_quality import ISSUES, assess_frame
from edgevlm.scripts import ood_images as ood_images_script


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ood") / "set")
    entries = ood_images.write_ood_set(out)
    return out, entries


def test_writes_every_listed_file_and_nothing_else(written):
    out, entries = written
    with open(os.path.join(out, "ood.json"), encoding="utf-8") as f:
        assert json.load(f) == entries
    files = [e["file"] for e in entries]
    assert len(set(files)) == len(files)
    assert sorted(os.listdir(out)) == sorted(files + ["ood.json"])
    for entry in entries:
        assert set(entry) - {"issue"} == {"file", "group", "source", "licence"}
        assert all(isinstance(entry[key], str) and entry[key] for key in ("source", "licence"))


def test_no_group_is_empty(written):
    _, entries = written
    sizes = {group: sum(e["group"] == group for e in entries) for group in ood_images.GROUPS}
    pytest.importorskip("skimage")
    assert all(sizes.values()), sizes
    assert 40 <= sizes["synthetic"] <= 60


def test_synthetic_group_is_byte_for_byte_deterministic(written):
    out, _ = written
    again = ood_images.synthetic_scenes()
    assert again, "no synthetic scenes"
    for item in again:
        with open(os.path.join(out, item.name + ".jpg"), "rb") as f:
            assert f.read() == ood_images.encode_jpeg(item.image), item.name


def test_nothing_frames_are_refused_after_jpeg(written):
    out, entries = written
    nothing = [e for e in entries if e["group"] == "nothing"]
    assert {e["issue"] for e in nothing} == set(ISSUES)
    for entry in nothing:
        quality = assess_frame(cv2.imread(os.path.join(out, entry["file"])))
        assert quality.issue == entry["issue"], (entry["file"], quality.stats)


def test_skimage_group_has_no_people_and_needs_no_download(monkeypatch, tmp_path):
    assert not {"astronaut", "camera", "lfw_subset", "retina", "skin"} & set(skimage_samples.SKIMAGE_IMAGES)
    fetchers = pytest.importorskip("skimage.data._fetchers")
    if not hasattr(fetchers, "_image_fetcher"):
        pytest.skip("scikit-image's private fetcher moved; cannot intercept downloads")

    class NoDownload:
        abspath = str(tmp_path)  # an empty cache: only files inside the package count

        def fetch(self, name):
            raise AssertionError(f"scikit-image tried to download {name}")

    monkeypatch.setattr(fetchers, "_image_fetcher", NoDownload())
    assert len(skimage_samples.skimage_images()) == len(skimage_samples.SKIMAGE_IMAGES)


def test_skimage_missing_leaves_that_group_empty(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "skimage", None)  # import skimage now raises ImportError
    assert skimage_samples.skimage_images() == []
    assert "scikit-image is not installed" in caplog.text


def test_refuses_to_replace_a_folder_that_is_not_an_ood_set(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(EdgeVLMError, match="refusing to replace"):
        ood_images.write_ood_set(str(tmp_path))
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_cli_needs_a_folder_or_the_check(capsys):
    with pytest.raises(SystemExit):
        ood_images_script.main([])
    assert "OUT_DIR" in capsys.readouterr().err
