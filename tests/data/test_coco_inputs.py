"""COCO caption files from users (issue 16): size, structure and types are checked, each
problem one line naming the file and the entry."""

import json

import pytest

from edgevlm.data import coco
from edgevlm.data.coco import load_coco_captions
from edgevlm.errors import EdgeVLMError


def _captions(tmp_path, data) -> str:
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("images, annotations, message", [
    ([{"id": [1], "file_name": "a.jpg"}], [], r"images\[0\]: 'id' must be a number or string, not \[1\]"),
    ([{"id": True, "file_name": "a.jpg"}], [], r"images\[0\]: 'id' must be a number or string"),
    ([{"id": 1, "file_name": 7}], [], r"images\[0\] \(id 1\): 'file_name' must be a file name"),
    ([{"id": 1, "file_name": ""}], [], r"images\[0\] \(id 1\): 'file_name' must be a file name"),
    ([{"id": 1, "file_name": "a.jpg"}], [{"image_id": {"x": 1}, "caption": "a dog"}],
     r"annotations\[0\] \(id None\) points at image_id \{'x': 1\}, which is not in 'images'"),
    ([{"id": 1, "file_name": "a.jpg"}], [{"image_id": 1, "caption": ["a dog"]}],
     r"annotations\[0\] needs 'image_id' and a 'caption' string"),
])
def test_types_are_checked_with_one_line_naming_the_entry(tmp_path, images, annotations, message):
    path = _captions(tmp_path, {"images": images, "annotations": annotations})
    with pytest.raises(EdgeVLMError, match=message):
        load_coco_captions(path, check_files=False)


def test_a_captions_file_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    path = _captions(tmp_path, {"images": [], "annotations": []})
    monkeypatch.setattr(coco, "MAX_CAPTIONS_BYTES", 10)
    with pytest.raises(EdgeVLMError, match=r"is 33 bytes, over the 10 bytes limit for this file; expected COCO caption format"):
        load_coco_captions(path, check_files=False)


def test_string_ids_still_work(tmp_path):
    path = _captions(tmp_path, {"images": [{"id": "a", "file_name": "a.jpg"}],
                                "annotations": [{"image_id": "a", "caption": " a dog "}]})
    assert load_coco_captions(path, check_files=False)[0].captions == ("a dog",)
