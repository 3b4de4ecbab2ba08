import os

import pytest
import torch

from edgevlm.models.efficientnet_lite import EfficientNetLite0, load_pretrained, pretrained_weights_path
from edgevlm.runtime.preprocess import preprocess_bgr, read_image_bgr
from tests.support import SAMPLES

ESPRESSO = 967
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


@pytest.fixture(scope="module")
def encoder():
    return load_pretrained()


def test_weights_match_every_key():
    state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    assert set(state) == set(EfficientNetLite0().state_dict())


def _top3(encoder, name):
    pixels = torch.from_numpy(preprocess_bgr(read_image_bgr(os.path.join(SAMPLES, name))))[None]
    with torch.no_grad():
        return set(encoder(pixels)[0].topk(3).indices.tolist())


def test_coffee_photo_ranks_espresso(encoder):
    assert ESPRESSO in _top3(encoder, "coffee.jpg")


def test_cat_photo_ranks_a_cat(encoder):
    assert _top3(encoder, "chelsea.jpg") & CAT_CLASSES


def test_feature_taps_have_documented_shapes(encoder):
    x = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        assert encoder.features(x, "head").shape == (1, 1280, 7, 7)
        assert encoder.features(x, "block15").shape == (1, 320, 7, 7)
        assert encoder.features(x, "block10").shape == (1, 112, 14, 14)
