import json
import os

import pytest

from edgevlm.data.coco import load_coco_captions
from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.preprocess import read_image_bgr
from tests.support import make_coco_dataset


def test_reads_images_and_captions(tmp_path):
    path = make_coco_dataset(str(tmp_path), "train", 3)
    items = load_coco_captions(path)
    assert [len(i.captions) for i in items] == [2, 2, 2]
    assert all(os.path.isfile(i.path) for i in items)


def _write(tmp_path, data) -> str:
    path = tmp_path / "captions.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    (tmp_path / "images").mkdir(exist_ok=True)
    return str(path)


@pytest.mark.parametrize(
    "data, message",
    [
        ("{not json", "is not valid JSON"),
        ({"images": []}, "needs top-level 'images' and 'annotations'"),
        ({"images": [{"id": 1}], "annotations": []}, "images[0] needs 'id' and 'file_name'"),
        ({"images": [{"id": 1, "file_name": "gone.jpg"}], "annotations": []}, "file not found"),
    ],
)
def test_malformed_files_name_the_problem(tmp_path, data, message):
    with pytest.raises(EdgeVLMError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_coco_captions(_write(tmp_path, data))


def test_annotation_pointing_at_no_image(tmp_path):
    path = make_coco_dataset(str(tmp_path), "train", 1)
    data = json.load(open(path))
    data["annotations"].append({"id": 99, "image_id": 42, "caption": "a ghost"})
    json.dump(data, open(path, "w"))
    with pytest.raises(EdgeVLMError, match=r"annotations\[2\] \(id 99\) points at image_id 42"):
        load_coco_captions(path)


def test_missing_images_folder(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(EdgeVLMError, match="images folder not found"):
        load_coco_captions(str(path))


def test_corrupt_and_non_image_files(tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for path in (corrupt, text):
        with pytest.raises(EdgeVLMError, match=f"cannot decode image {path}"):
            read_image_bgr(str(path))
    with pytest.raises(EdgeVLMError, match="image not found"):
        read_image_bgr(str(tmp_path / "missing.jpg"))
